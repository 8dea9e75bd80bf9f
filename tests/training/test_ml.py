"""The training core (training.ml) on tiny models built offline: no Django, no hub."""

import json
import os
import subprocess
import sys

import pytest

from training.ml import data
from training.ml.config import ConfigError, RewardTrainingConfig
from training.ml.progress import Cancelled, RecordingReporter
from training.ml.synthetic import preference_rows, write_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Learnable pairs: more "helpful" is better. K=4 (6 pairs a prompt), plain text."""
    folder = tmp_path_factory.mktemp("synthetic")
    return {
        "train": write_rows(folder / "train.jsonl", preference_rows(48, k=4, seed=1)),
        "test": write_rows(folder / "test.jsonl",
                           preference_rows(16, k=4, seed=2, first_id=1000)),
    }


def config(tiny_models, synthetic, out, **overrides) -> RewardTrainingConfig:
    values = dict(base_model=str(tiny_models["reward"]), train_file=str(synthetic["train"]),
                  eval_file=str(synthetic["test"]), output_dir=str(out), epochs=3,
                  batch_size=24, learning_rate=3e-3, checkpoint_every=0, threads=2)
    return RewardTrainingConfig(**values | overrides)


def test_the_training_core_does_not_import_django():
    code = ("import sys, training.ml.reward, training.ml.run, training.ml.scoring; "
            "print('django' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_a_bad_config_names_every_bad_field():
    with pytest.raises(ConfigError) as caught:
        RewardTrainingConfig(base_model=" ", train_file="t", output_dir="o", method="dpo",
                             epochs=0, load_in_4bit=True)
    message = str(caught.value)
    for field in ("base_model", "method", "epochs", "load_in_4bit"):
        assert field in message
    with pytest.raises(ConfigError, match="unknown fields: epoch"):
        RewardTrainingConfig.from_dict({"base_model": "m", "train_file": "t",
                                        "output_dir": "o", "epoch": 2})


def test_a_bad_preference_file_names_the_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n'
                    '{"prompt": "q", "chosen": "a"}\n')
    with pytest.raises(data.DataError, match=r"bad.jsonl, line 2, field 'rejected'"):
        data.read_preferences(path)
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b", "margin": "x"}\n')
    with pytest.raises(data.DataError, match=r"line 1, field 'margin'"):
        data.read_preferences(path)
    path.write_text("not json\n")
    with pytest.raises(data.DataError, match=r"line 1: invalid JSON"):
        data.read_preferences(path)


def test_sequences_are_the_ones_trl_builds(tiny_models):
    """Our encode() against TRL's own preprocessing, plain and conversational."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["reward"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["reward"])
    plain = {"prompt": ["Why is the sky blue?"], "chosen": [" Light scatters."],
             "rejected": [" No idea."]}
    chat = {"prompt": [[{"role": "user", "content": "Hi?"}]],
            "chosen": [[{"role": "assistant", "content": "Hello!"}]],
            "rejected": [[{"role": "assistant", "content": "Go away."}]]}
    for columns in (plain, chat):
        args = RewardConfig(output_dir="/tmp/unused", bf16=False, use_cpu=True, report_to=[],
                            activation_checkpointing=False)
        trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                processing_class=tokenizer)
        row = trainer.train_dataset[0]
        assert data.encode(tokenizer, columns["prompt"][0], columns["chosen"][0]).ids == (
            row["chosen_ids"])
        assert data.encode(tokenizer, columns["prompt"][0], columns["rejected"][0]).ids == (
            row["rejected_ids"])


def test_the_kway_loss_is_the_pairwise_loss_with_fewer_forwards(tiny_models, synthetic):
    """One forward per completion gives exactly the loss of TRL's two forwards per pair."""
    import torch
    import torch.nn.functional as F

    from training.ml.loading import load_reward_model, load_tokenizer
    from training.ml.reward import encode_groups, kway_loss
    from training.ml.scoring import pad

    tokenizer = load_tokenizer(str(tiny_models["reward"]))
    model = load_reward_model(str(tiny_models["reward"]), tokenizer=tokenizer).eval()
    rows = data.read_preferences(synthetic["train"])[:12]  # two prompts, 6 pairs each
    groups, dropped = encode_groups(data.group_by_prompt(rows), tokenizer, 1024)
    assert dropped == 0 and [len(g.sequences) for g in groups] == [4, 4]
    sequences = [s.ids for g in groups for s in g.sequences]
    pairs = [(c + 4 * n, r + 4 * n, m) for n, g in enumerate(groups) for c, r, m in g.pairs]
    with torch.no_grad():
        ids, mask = pad(sequences, tokenizer.pad_token_id, "cpu")
        kway, _, _ = kway_loss(model(input_ids=ids, attention_mask=mask).logits[:, 0], pairs)
        chosen = [data.encode(tokenizer, r.prompt, r.chosen).ids for r in rows]
        rejected = [data.encode(tokenizer, r.prompt, r.rejected).ids for r in rows]
        ids, mask = pad(chosen + rejected, tokenizer.pad_token_id, "cpu")
        rewards = model(input_ids=ids, attention_mask=mask).logits[:, 0]
        pairwise = -F.logsigmoid(rewards[:12] - rewards[12:]).mean()
    assert len(sequences) == 8 and len(chosen + rejected) == 24  # 8 forwards instead of 24
    assert kway.item() == pytest.approx(pairwise.item(), abs=1e-5)


@pytest.mark.parametrize("method", ["kway", "trl"])
def test_a_reward_model_learns_a_learnable_preference(method, tiny_models, synthetic, tmp_path):
    from training.ml.reward import train_reward_model

    reporter = RecordingReporter()
    result = train_reward_model(config(tiny_models, synthetic, tmp_path, method=method),
                                reporter)
    assert result["eval"]["pairs"] == 96
    assert result["eval"]["accuracy"] >= 0.9  # chance is 0.5
    assert result["eval"]["mean_margin"] > 0
    assert reporter.steps[-1][0] == reporter.steps[-1][1] == result["steps"]
    assert reporter.steps[-1][2]["loss"] < reporter.steps[0][2]["loss"]
    assert (tmp_path / "model" / "config.json").is_file()
    saved = json.loads((tmp_path / "model" / "training_config.json").read_text())
    assert saved["method"] == method
    assert result["forwards_per_pair"] == pytest.approx(2.0 if method == "trl" else 4 / 6, abs=1e-3)


def test_a_stopped_run_resumes_from_its_checkpoint_to_the_same_weights(tiny_models, synthetic,
                                                                      tmp_path):
    import torch

    from training.ml.reward import train_reward_model
    from training.ml.scoring import RewardScorer

    settings = dict(epochs=1, batch_size=12, checkpoint_every=2, eval_file=None)
    whole = train_reward_model(config(tiny_models, synthetic, tmp_path / "whole", **settings),
                               RecordingReporter())
    interrupted = config(tiny_models, synthetic, tmp_path / "cut", **settings)
    with pytest.raises(Cancelled):
        train_reward_model(interrupted, RecordingReporter(stop_after=3))
    reporter = RecordingReporter()
    resumed = train_reward_model(interrupted, reporter)
    assert resumed["resumed_from_step"] == 2 and reporter.steps[0][0] == 3
    assert any("resuming" in message for message in reporter.messages)
    a = RewardScorer.load(whole["model_dir"]).model.state_dict()
    b = RewardScorer.load(resumed["model_dir"]).model.state_dict()
    assert all(torch.allclose(a[name], b[name], atol=1e-6) for name in a)


def test_lora_adapters_save_reload_and_merge_to_the_same_scores(tiny_models, synthetic,
                                                                tmp_path):
    from training.ml.reward import train_reward_model
    from training.ml.scoring import RewardScorer

    result = train_reward_model(
        config(tiny_models, synthetic, tmp_path, lora=True, lora_r=8, merge_adapter=True,
               epochs=1, learning_rate=1e-2), RecordingReporter())
    assert (tmp_path / "model" / "adapter_config.json").is_file()
    assert result["merged_dir"] and not (tmp_path / "model" / "merged" / "adapter_config.json"
                                         ).exists()
    items = [("Why?", " the helpful helpful answer."), ("Why?", " a bad answer.")]
    adapter = RewardScorer.load(result["model_dir"]).score(items)
    merged = RewardScorer.load(result["merged_dir"]).score(items)
    assert adapter == pytest.approx(merged, abs=1e-4)
    assert adapter[0] != adapter[1]


def test_scores_match_a_text_classification_pipeline_and_scale_with_alpha(tiny_models,
                                                                          synthetic, tmp_path):
    from transformers import pipeline

    from training.ml.reward import train_reward_model
    from training.ml.scoring import RewardScorer

    result = train_reward_model(config(tiny_models, synthetic, tmp_path, epochs=1,
                                       eval_file=None), RecordingReporter())
    scorer = RewardScorer.load(result["model_dir"])
    items = [("Say hi.", " helpful hello."), ("Say hi.", " go away."),
             ([{"role": "user", "content": "Hi?"}], [{"role": "assistant", "content": "Yo"}])]
    ours = scorer.score(items)
    pipe = pipeline("text-classification", model=result["model_dir"], function_to_apply="none",
                    device="cpu")
    theirs = [pipe(data.reward_text(scorer.tokenizer, p, r))[0]["score"] for p, r in items]
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert scorer.score(items, alpha=0.5) == pytest.approx([0.5 * s for s in ours], abs=1e-6)


def test_evaluation_reports_accuracy_per_subset(tiny_models, tmp_path):
    from training.ml.scoring import RewardScorer, evaluate_pairs

    path = tmp_path / "bench.jsonl"
    rows = [{"prompt": "Q?", "chosen": " yes.", "rejected": " no.", "subset": "a"},
            {"prompt": "Q?", "chosen": " no.", "rejected": " yes.", "subset": "a"},
            {"prompt": "R?", "chosen": " fine.", "rejected": " bad.", "subset": "b"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scorer = RewardScorer.load(str(tiny_models["reward"]))
    result = evaluate_pairs(scorer, data.read_preferences(path))
    assert result["pairs"] == 3 and set(result["subsets"]) == {"a", "b"}
    # The two "a" pairs are one pair each way round: exactly one of them is right.
    assert result["subsets"]["a"] == {"pairs": 2, "accuracy": 0.5}
    assert result["accuracy"] in (1 / 3, 2 / 3)


def test_pairs_over_max_length_are_truncated_kept_and_counted(tiny_models, synthetic, tmp_path):
    from training.ml.reward import train_reward_model

    long_rows = preference_rows(2, k=2, seed=3, length=200, first_id=500)
    train = write_rows(tmp_path / "mixed.jsonl",
                       [json.loads(line) for line in synthetic["train"].read_text().splitlines()]
                       + long_rows)
    reporter = RecordingReporter()
    result = train_reward_model(config(tiny_models, synthetic, tmp_path, train_file=str(train),
                                       epochs=1, max_length=64, eval_file=None), reporter)
    assert result["dropped_pairs"] == 0 and result["train_pairs"] == 48 * 6 + 2
    assert result["truncated_pairs"] == 2
    assert any("truncated 2 pairs" in message for message in reporter.messages)


def test_4bit_loading_is_refused_without_cuda(tiny_models, synthetic, tmp_path):
    import torch

    from training.ml.reward import train_reward_model

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="load_in_4bit needs a CUDA GPU"):
        train_reward_model(config(tiny_models, synthetic, tmp_path, lora=True,
                                  load_in_4bit=True), RecordingReporter())


def test_doctests_of_the_training_data_contract_pass():
    import doctest

    import annotate.charts
    import training.ml.data
    import training.ml.ppo_core
    import training.ml.reward

    for module in (training.ml.data, training.ml.reward, training.ml.ppo_core, annotate.charts):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__


def test_the_web_process_does_not_import_torch_until_it_scores():
    code = ("import django, sys; django.setup(); import config.urls, training.views, "
            "training.apis, training.services; print('torch' in sys.modules)")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env=env)
    assert result.stdout.strip() == "False"
