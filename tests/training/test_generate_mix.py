"""A generation step mixes sources within each prompt's K completions (issue 16, item 3): the
new policy, the previous round's policy and a reference each write their share, every
completion stored with the model that wrote it, so that labelers' rankings judge them."""

import io
import json

import pytest

from annotate import services as annotate_services
from annotate.models import Completion
from config.errors import Invalid
from training.ml.config import ConfigError
from training.ml.generate import GenerationConfig, generate_completions
from training.ml.progress import RecordingReporter

from .conftest import request_job
from .test_generate_text import config_for

PROMPTS = ["Tell me a joke", "Name a colour", "Say hi"]


def writes(tag: str):
    """A fake policy: numbered answers that say who wrote them."""
    def sample(batch, n):
        return [[f"{tag}: {prompt} #{i}" for i in range(n)] for prompt in batch]
    return sample


def mixed_config(tmp_path, **overrides) -> GenerationConfig:
    return config_for(tmp_path, "new", PROMPTS, **{
        "model_name": "policy-r2", "previous_policy": "old", "previous_name": "policy-r1",
        "previous_count": 1, "reference_policy": "ref", "reference_name": "tiny/policy",
        "reference_count": 1, **overrides})


def test_each_model_writes_its_share_of_each_prompt(tmp_path, project):
    config = mixed_config(tmp_path)
    result = generate_completions(config, RecordingReporter(), samplers={
        "new": writes("new"), "old": writes("old"), "ref": writes("ref")})
    assert result["sources"] == [{"slot": "base", "model": "policy-r2", "count": 2},
                                 {"slot": "previous", "model": "policy-r1", "count": 1},
                                 {"slot": "reference", "model": "tiny/policy", "count": 1}]
    lines = [json.loads(line) for line in open(config.output_file)]
    assert [[(c["model"], c["text"].split(":")[0]) for c in line["completions"]]
            for line in lines] == [[("policy-r2", "new"), ("policy-r2", "new"),
                                    ("policy-r1", "old"), ("tiny/policy", "ref")]] * 3
    record = annotate_services.prompts_import(
        project=project, binary=io.BytesIO(open(config.output_file, "rb").read()),
        filename="generated.jsonl")
    models = Completion.objects.filter(prompt__source_import=record).values_list(
        "model_name", flat=True)
    assert sorted(set(models)) == ["policy-r1", "policy-r2", "tiny/policy"]


def test_a_repeat_of_another_models_answer_is_drawn_again(tmp_path):
    """The reference first repeats what the policy wrote: a prompt's completions stay
    distinct, and the reference draws again."""
    answers = iter([["same"], ["own"]])
    config = config_for(tmp_path, "new", ["Q"], k=2, reference_policy="ref",
                        reference_name="ref", reference_count=1)
    result = generate_completions(config, RecordingReporter(), samplers={
        "new": lambda batch, n: [["same"] * n for _ in batch],
        "ref": lambda batch, n: [next(answers) for _ in batch]})
    (line,) = [json.loads(line) for line in open(config.output_file)]
    assert [c["text"] for c in line["completions"]] == ["same", "own"]
    assert result["resampled"] == 1


def test_a_model_that_cannot_write_its_share_skips_the_prompt_and_is_named(tmp_path):
    config = mixed_config(tmp_path, max_resamples=1)
    result = generate_completions(config, RecordingReporter(), samplers={
        "new": writes("new"), "old": lambda batch, n: [[""] * n for _ in batch],
        "ref": writes("ref")})
    assert (result["written"], result["skipped"]) == (0, 3)
    assert result["skipped_prompts"][0]["reason"].endswith("(policy-r1 fell short)")


def test_the_config_refuses_a_mix_it_cannot_write(tmp_path):
    with pytest.raises(ConfigError, match="previous_count: 1 completions need a previous"):
        config_for(tmp_path, "new", PROMPTS, previous_count=1).sources()
    with pytest.raises(ConfigError, match="4 leaves the policy none of the 4 completions"):
        mixed_config(tmp_path, previous_count=2, reference_count=2).sources()
    with pytest.raises(ConfigError, match="reference_count: must be a whole number"):
        config_for(tmp_path, "new", PROMPTS, reference_count=-1)


@pytest.mark.django_db
def test_a_generation_request_names_what_its_mix_lacks(project, catalog, var_dir):
    with pytest.raises(Invalid, match="^models.reference: choose the reference policy"):
        request_job(project, "generate", base=catalog["policy"],
                    params={"reference_count": 1})
    with pytest.raises(Invalid, match="^previous_count: say how many"):
        request_job(project, "generate", base=catalog["policy"], previous=catalog["policy"])
    with pytest.raises(Invalid, match="^previous_count \\+ reference_count: 4 leaves"):
        request_job(project, "generate", base=catalog["policy"], previous=catalog["policy"],
                    reference=catalog["policy"],
                    params={"previous_count": 2, "reference_count": 2})
    job, _ = request_job(project, "generate", base=catalog["policy"],
                         reference=catalog["policy"], params={"reference_count": 1},
                         dispatch=False)
    assert job.other_models["reference"]["shown"] == "policy"
    from training.kinds import KINDS

    config = KINDS["generate"].prepare(job, var_dir)
    assert config.reference_policy == config.policy and config.reference_count == 1
    assert config.previous_policy == "" and config.previous_count == 0
