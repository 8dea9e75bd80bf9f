"""PPO on tiny models built offline: it learns, it resumes exactly, and the reward model
may read another tokenizer than the policy."""

import json
import math
import re

import pytest
import torch

from training.ml.config import ConfigError
from training.ml.policy import Models, PolicyTrainingConfig, score_texts
from training.ml.ppo import train_policy
from training.ml.progress import Cancelled, RecordingReporter

pytestmark = pytest.mark.slow


def ppo_config(setup, out, **overrides) -> PolicyTrainingConfig:
    values = dict(policy=setup["policy"], reward_model=setup["reward"],
                  prompts_file=setup["prompts"], output_dir=str(out), total_episodes=320,
                  batch_size=16, mini_batch_size=8, learning_rate=3e-3, kl_coef=0.05,
                  response_length=16, temperature=1.0, checkpoint_every=0, threads=2)
    return PolicyTrainingConfig(**values | overrides)


def test_ppo_raises_the_reward_and_beats_the_reference(ppo_setup, tmp_path):
    reporter = RecordingReporter()
    result = train_policy(ppo_config(ppo_setup, tmp_path), reporter)
    rewards = [metrics["reward"] for _, _, metrics in reporter.steps]
    assert len(rewards) == 20
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 1.0
    for name in ("kl", "entropy", "policy_loss", "value_loss", "clip_fraction",
                 "response_length", "rlhf_reward"):
        assert name in reporter.steps[-1][2]
    evaluation = result["eval"]
    assert evaluation["policy_reward"] > evaluation["reference_reward"]
    assert evaluation["win_rate"] > 0.5 and evaluation["kl"] > 0
    assert len(evaluation["samples"]) == 8 and {"prompt", "policy", "reference"} <= set(
        evaluation["samples"][0])
    assert (tmp_path / "policy" / "adapter_config.json").is_file()  # LoRA by default


def test_a_stopped_run_resumes_from_its_checkpoint_exactly(ppo_setup, tmp_path):
    settings = dict(total_episodes=64, checkpoint_every=2)
    whole_reporter = RecordingReporter()
    whole = train_policy(ppo_config(ppo_setup, tmp_path / "whole", **settings), whole_reporter)
    cut = ppo_config(ppo_setup, tmp_path / "cut", **settings)
    with pytest.raises(Cancelled):
        train_policy(cut, RecordingReporter(stop_after=3))
    reporter = RecordingReporter()
    resumed = train_policy(cut, reporter)
    assert resumed["resumed_from_step"] == 2 and [s for s, _, _ in reporter.steps] == [3, 4]
    # The same rollouts and updates as the run that was never stopped.
    assert reporter.steps[-1][2]["reward"] == pytest.approx(whole_reporter.steps[-1][2]["reward"],
                                                            abs=1e-5)
    from safetensors.torch import load_file

    a = load_file(f"{whole['policy_dir']}/adapter_model.safetensors")
    b = load_file(f"{resumed['policy_dir']}/adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_reward_model_with_another_tokenizer_scores_the_decoded_text(ppo_setup, tmp_path):
    from training.ml.scoring import RewardScorer
    from training.ml.tiny import build_tiny_models

    other = build_tiny_models(tmp_path / "other", vocab_size=300)
    config = ppo_config(ppo_setup, tmp_path / "out", reward_model=str(other["reward"]),
                        total_episodes=32)
    models = Models(config)
    assert not models.same_tokenizer
    prompts = ["Why the", "Good day"]
    texts = [" helpful answer.", " no."]
    ours = score_texts(models, prompts, texts).tolist()
    assert ours == pytest.approx(RewardScorer.load(str(other["reward"])).score(
        list(zip(prompts, texts, strict=True))), abs=1e-5)
    result = train_policy(config, RecordingReporter())
    assert result["steps"] == 2


def test_bad_ppo_settings_name_the_field():
    with pytest.raises(ConfigError) as caught:
        PolicyTrainingConfig(policy="p", reward_model="r", prompts_file="f", output_dir="o",
                             batch_size=16, mini_batch_size=5, clip_range=0, algorithm="sac")
    for field in ("mini_batch_size", "clip_range", "algorithm"):
        assert field in str(caught.value)


@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_trls_rloo_and_grpo_run_on_the_same_reward_model(algorithm, ppo_setup, tmp_path):
    reporter = RecordingReporter()
    result = train_policy(ppo_config(ppo_setup, tmp_path, algorithm=algorithm,
                                     total_episodes=64, num_generations=4), reporter)
    # 64 episodes of 16 responses, each rollout used for ppo_epochs (2) optimiser steps.
    assert result["steps"] == 8 and [s for s, _, _ in reporter.steps] == list(range(1, 9))
    assert {"reward", "kl", "response_length"} <= set(reporter.steps[-1][2])
    assert (tmp_path / "policy" / "adapter_config.json").is_file()
    assert {"policy_reward", "reference_reward", "win_rate", "kl"} <= set(result["eval"])


def test_chat_prompts_get_the_chat_template(ppo_setup, tmp_path):
    from training.ml.policy import encode_prompt
    from training.ml.synthetic import write_rows

    prompts = write_rows(tmp_path / "chat.jsonl", [
        {"prompt": [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": f"Say thing {n}"}]} for n in range(16)])
    config = ppo_config(ppo_setup, tmp_path / "out", prompts_file=str(prompts),
                        total_episodes=16)
    models = Models(config)
    ids = encode_prompt(models.tokenizer, [{"role": "user", "content": "Hi"}], 256)
    assert models.tokenizer.decode(ids).endswith("<|assistant|>")  # the generation prompt
    result = train_policy(config, RecordingReporter())
    assert result["steps"] == 1 and result["eval"]["samples"][0]["prompt"][1]["content"]


def test_a_merged_policy_is_still_judged_against_its_reference(ppo_setup, tmp_path):
    result = train_policy(ppo_config(ppo_setup, tmp_path, total_episodes=64,
                                     merge_adapter=True), RecordingReporter())
    assert (tmp_path / "policy" / "merged" / "config.json").is_file()
    assert not (tmp_path / "policy" / "merged" / "adapter_config.json").exists()
    # Merging happens after the evaluation: the reference is still the base, not the policy.
    assert result["eval"]["kl"] > 0
    assert json.loads((tmp_path / "policy" / "training_config.json").read_text())[
        "merge_adapter"] is True


EVALUATION_FIELDS = ("policy_reward", "reference_reward", "win_rate", "kl", "policy_length",
                     "reference_length")


def assert_filled(evaluation: dict) -> None:
    for name in EVALUATION_FIELDS:
        assert isinstance(evaluation[name], float) and math.isfinite(evaluation[name]), name
    assert 0 <= evaluation["win_rate"] <= 1 and evaluation["policy_length"] > 0
    assert 0 <= evaluation["same_as_reference"] <= evaluation["prompts"]
    for row in evaluation["samples"]:
        assert row["policy"] is not None and row["reference"] is not None
        assert math.isfinite(row["policy_reward"]) and math.isfinite(row["reference_reward"])


def test_the_evaluation_judges_32_prompts_held_out_ones_first(ppo_setup, tmp_path):
    from training.ml.synthetic import policy_prompts, write_rows

    held_out = write_rows(tmp_path / "eval.jsonl", policy_prompts(5, seed=21))
    result = train_policy(ppo_config(ppo_setup, tmp_path / "out", total_episodes=16,
                                     eval_prompts_file=str(held_out)), RecordingReporter())
    evaluation = result["eval"]
    assert (evaluation["prompts"], evaluation["held_out"]) == (32, 5)  # 64 to train on
    assert_filled(evaluation)
    assert [row["held_out"] for row in evaluation["samples"]] == [True] * 5 + [False] * 3


def test_the_evaluation_judges_every_prompt_when_there_are_fewer_than_32(ppo_setup,
                                                                           tmp_path):
    from training.ml.synthetic import policy_prompts, write_rows

    prompts = write_rows(tmp_path / "prompts.jsonl", policy_prompts(10, seed=22))
    result = train_policy(ppo_config(ppo_setup, tmp_path / "out", total_episodes=16,
                                     prompts_file=str(prompts)), RecordingReporter())
    assert (result["eval"]["prompts"], result["eval"]["held_out"]) == (10, 0)
    assert_filled(result["eval"])


def test_a_randomly_initialised_byte_level_policy_trains_and_is_judged(tiny_models, ppo_setup,
                                                                        tmp_path):
    """Models that write clean text hide bugs: this one samples any byte, controls too."""
    from training.ml.synthetic import write_rows

    prompts = write_rows(tmp_path / "mixed.jsonl", [
        {"prompt": [{"role": "user", "content": f"Say thing {n}"}] if n % 2 else
         f"Tell me about {n}"} for n in range(16)])
    config = ppo_config(ppo_setup, tmp_path / "out", policy=str(tiny_models["policy"]),
                        prompts_file=str(prompts), total_episodes=32, response_length=24)
    result = train_policy(config, RecordingReporter())
    evaluation = result["eval"]
    assert result["steps"] == 2 and evaluation["prompts"] == 16
    assert_filled(evaluation)
    texts = [row[side] for row in evaluation["samples"] for side in ("policy", "reference")]
    assert all(not re.search("[\x00-\x08\x0b-\x1f]", text) for text in texts)
    json.dumps(result, allow_nan=False)  # what the job row stores


def test_a_bad_prompt_file_names_the_line_and_field(tmp_path):
    from training.ml.policy import read_prompts

    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "fine"}\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match=r"prompts.jsonl, line 2, field 'prompt'"):
        read_prompts(str(path))
    path.write_text('{"prompt": ""}\n')
    with pytest.raises(ValueError, match=r"line 1, field 'prompt': must be text"):
        read_prompts(str(path))
    path.write_text("\n")
    with pytest.raises(ValueError, match="no prompts"):
        read_prompts(str(path))
