"""Generation never fails because of what a model wrote: control bytes are cleaned, empty and
repeated completions are sampled again, and a prompt still short of K is skipped and reported."""

import io
import json
import shutil

import pytest

from annotate import importers
from annotate import services as annotate_services
from annotate.models import Completion, Prompt
from training.ml.config import ConfigError
from training.ml.generate import (
    MAX_REPORTED_SKIPS,
    GenerationConfig,
    draw_completions,
    generate_completions,
    policy_sampler,
)
from training.ml.progress import RecordingReporter
from training.ml.text import clean_text

CONTROL_BYTES = "\x00\x01\x07\x08\x0b\x0c\r\x1b\x1f"
KEPT = "ab \n\t"
UNWANTED = {chr(code) for code in range(32)} - {"\n", "\t"}


def write_prompts(path, prompts):
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return str(path)


def config_for(tmp_path, policy, prompts, **overrides):
    return GenerationConfig(**{
        "policy": str(policy), "prompts_file": write_prompts(tmp_path / "prompts.jsonl", prompts),
        "output_file": str(tmp_path / "generated.jsonl"), "k": 4, "max_new_tokens": 12,
        "temperature": 1.0, "top_p": 1.0, "batch_size": 8, **overrides})


def biased_policy(tiny_models, folder, allowed: str, *, eos: bool):
    """A randomly initialised byte-level causal LM that samples uniformly from the tokens of
    `allowed` (and EOS if `eos`): its LM head's weights are zero and its bias rules out the
    rest. Phi, because its LM head has a bias."""
    import torch
    from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_models["policy"] / name, folder / name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = {i for char in allowed for i in tokenizer(char, add_special_tokens=False)["input_ids"]}
    assert len(ids) == len(allowed)  # one byte-level token per character
    if eos:
        ids.add(tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = PhiForCausalLM(PhiConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.fill_(-1e4)
        model.lm_head.bias[sorted(ids)] = 0.0
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def control_byte_policy(tiny_models, tmp_path_factory):
    return biased_policy(tiny_models, tmp_path_factory.mktemp("ctl") / "policy",
                         CONTROL_BYTES + KEPT, eos=True)


@pytest.fixture(scope="module")
def silent_policy(tiny_models, tmp_path_factory):
    """Only ever writes EOS: every completion is empty."""
    return biased_policy(tiny_models, tmp_path_factory.mktemp("eos") / "policy", "", eos=True)


# --- the pure parts -----------------------------------------------------------------------


def test_clean_text_drops_control_characters_but_keeps_newlines_and_tabs():
    assert clean_text("a\x00b") == "ab"
    assert clean_text("\x1b[31mred\x1b[0m") == "[31mred[0m"
    assert clean_text("line\r\nnext\tcell\x07\x08\x0b\x0c\x1f") == "line\nnext\tcell"
    assert clean_text("\x00\x01\x02") == ""
    assert clean_text("plain text, é and 漢字 \U0001f600") == "plain text, é and 漢字 \U0001f600"


def test_clean_text_replaces_lone_surrogates_and_joins_pairs():
    assert clean_text("a\ud800b") == "a\ufffdb"
    assert clean_text("\udfff") == "\ufffd"
    assert clean_text("\ud83d\ude00") == "\U0001f600"  # a pair, as a decoder may leave it
    json.dumps(clean_text("x\ud800\x00y")).encode("utf-8")  # storable, encodable


def test_the_doctests_of_generation_and_text_pass():
    import doctest

    from training.ml import generate, text

    for module in (generate, text):
        failed, attempted = doctest.testmod(module)
        assert attempted and not failed


def fixed_sampler(outputs):
    """A sampler that answers each call with the next list of texts per prompt."""
    calls = iter(outputs)
    return lambda prompts, n: [list(texts)[:n] for texts in next(calls)]


def test_empty_and_repeated_samples_are_drawn_again():
    sample = fixed_sampler([
        [["a", "", "a", "\x00"], ["w", "x", "y", "z"]],
        [["b", " \n", "b"]],  # only the first prompt is short, by 3
        [["a"]],  # short by 2: a repeat
        [["\x1bc"]],  # the last try, cleaned
    ])
    drawn, resampled = draw_completions(["p", "q"], sample, k=4, max_resamples=3)
    assert [d.texts for d in drawn] == [["a", "b", "c"], ["w", "x", "y", "z"]]
    assert (drawn[0].empty, drawn[0].duplicates, drawn[0].cleaned) == (3, 3, 1)
    assert resampled == 3 + 2 + 2  # then the first prompt is short, and skipped


def test_a_prompt_still_short_after_the_last_try_is_reported():
    sample = fixed_sampler([[["a", "a", "", "b"]], [["a", "b"]]])
    (drawn,), resampled = draw_completions(["p"], sample, k=4, max_resamples=1)
    assert (drawn.texts, drawn.empty, drawn.duplicates, resampled) == (["a", "b"], 1, 3, 2)
    assert drawn.shortfall_reason(4, 1) == (
        "2 of 4 distinct non-empty completions after 1 re-samples (1 empty, 3 duplicates)")


def test_max_resamples_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="max_resamples"):
        GenerationConfig(policy="p", prompts_file="f", output_file="o", max_resamples=-1)
    with pytest.raises(ConfigError, match="max_resamples"):
        GenerationConfig.from_dict({"policy": "p", "prompts_file": "f", "output_file": "o",
                                    "max_resamples": 1.5})
    assert GenerationConfig(policy="p", prompts_file="f", output_file="o").max_resamples == 3


def test_the_skipped_list_in_the_result_is_capped_and_the_file_has_them_all(tmp_path):
    count = MAX_REPORTED_SKIPS + 5
    config = config_for(tmp_path, "unused", [f"question {n}" for n in range(count)],
                        batch_size=7, max_resamples=2)
    result = generate_completions(config, RecordingReporter(),
                                  sample=lambda prompts, n: [[""] * n for _ in prompts])
    assert (result["written"], result["skipped"]) == (0, count)
    assert len(result["skipped_prompts"]) == MAX_REPORTED_SKIPS
    lines = [json.loads(line) for line in open(result["skipped_file"])]
    assert [line["prompt"] for line in lines] == [f"question {n}" for n in range(count)]
    assert lines[-1]["number"] == count


# --- real models --------------------------------------------------------------------------


def test_the_biased_policy_really_writes_control_bytes(control_byte_policy, tmp_path):
    config = config_for(tmp_path, control_byte_policy, ["Say something:"])
    (texts,) = policy_sampler(config, config.policy)(["Say something:"], 8)
    written = "".join(texts)
    assert "\x00" in written and "\x1b" in written


@pytest.mark.django_db
def test_control_bytes_are_cleaned_and_every_line_imports(control_byte_policy, project,
                                                          tmp_path):
    prompts = [f"Question {n}: say something" for n in range(6)]
    config = config_for(tmp_path, control_byte_policy, prompts)
    reporter = RecordingReporter()
    result = generate_completions(config, reporter)

    assert (result["written"], result["prompts"], result["skipped"]) == (6, 6, 0)
    assert result["completions"] == 24 and result["cleaned"] > 0
    assert result["skipped_prompts"] == [] and result["skipped_file"] == ""
    with open(config.output_file, "rb") as binary:
        rows = list(importers.parse_prompts(binary, file_format="jsonl",
                                            completions_per_prompt=4, max_bytes=10**8))
    assert [type(row) for row in rows] == [importers.PromptRow] * 6

    with open(config.output_file, "rb") as binary:
        record = annotate_services.prompts_import(project=project, binary=binary,
                                                  filename="generated.jsonl")
    assert (record.prompt_count, record.completion_count) == (6, 24)
    texts = list(Completion.objects.filter(prompt__source_import=record)
                 .values_list("text", flat=True))
    assert all(text.strip() and not UNWANTED & set(text) for text in texts)
    assert any("\n" in text or "\t" in text for text in texts)  # kept, not cleaned away
    for prompt in Prompt.objects.filter(source_import=record):
        texts = list(prompt.completions.values_list("text", flat=True))
        assert len(set(texts)) == 4  # distinct within a prompt


def test_a_policy_that_only_writes_eos_skips_its_prompts_and_says_why(silent_policy,
                                                                      tmp_path):
    config = config_for(tmp_path, silent_policy, ["What is two and two?"], max_resamples=2,
                        min_new_tokens=0)  # a policy allowed to stop at once
    result = generate_completions(config, RecordingReporter())

    assert (result["written"], result["completions"], result["skipped"]) == (0, 0, 1)
    assert result["resampled"] == 4 * 2
    (skipped,) = result["skipped_prompts"]
    assert skipped == {"number": 1, "prompt": "What is two and two?", "reason": (
        "0 of 4 distinct non-empty completions after 2 re-samples (12 empty, 0 duplicates)")}
    assert open(config.output_file).read() == ""
    (line,) = open(result["skipped_file"]).read().splitlines()
    assert json.loads(line) == skipped


def test_a_silent_prompt_is_skipped_while_the_others_are_written(tmp_path, project):
    """A fake sampler stands in for a policy that answers one prompt with nothing."""
    prompts = ["Tell me a joke", "Stay quiet", "Name a colour"]

    def sample(batch, n):
        return [["", "\x00"] * n if prompt == "Stay quiet" else
                [f"{prompt} #{i}" for i in range(n)] for prompt in batch]

    config = config_for(tmp_path, "unused", prompts, model_name="fake-policy")
    result = generate_completions(config, RecordingReporter(), sample=sample)

    assert (result["written"], result["skipped"], result["resampled"]) == (2, 1, 12)
    assert [s["prompt"] for s in result["skipped_prompts"]] == ["Stay quiet"]
    record = annotate_services.prompts_import(
        project=project, binary=io.BytesIO(open(config.output_file, "rb").read()),
        filename="generated.jsonl")
    assert list(Prompt.objects.filter(source_import=record).values_list("text", flat=True)) == [
        "Tell me a joke", "Name a colour"]


@pytest.mark.slow
@pytest.mark.django_db
def test_a_generation_job_with_the_demos_random_policy_succeeds(project, var_dir, catalog):
    """The report: the untrained tiny policy wrote NUL bytes and the whole job failed."""
    from training import services
    from training.models import Round

    from .conftest import import_policy_prompts, request_job

    import_policy_prompts(project, 6)
    job, _ = request_job(project, "generate", params={"max_new_tokens": 24, "temperature": 1.0},
                         base=catalog["policy"], dispatch=False)
    services.job_run_and_rounds_advance(job.id)
    job.refresh_from_db()

    assert job.status == "succeeded", job.error
    assert job.result["written"] + job.result["skipped"] == 6
    texts = Completion.objects.filter(
        prompt__source_import=Round.objects.get(generation_job=job).prompt_import
    ).values_list("text", flat=True)
    assert len(texts) == 4 * job.result["written"] and not any(UNWANTED & set(t) for t in texts)
