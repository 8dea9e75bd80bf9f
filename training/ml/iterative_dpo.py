"""Iterative (online) DPO on our reward model: the "RLHF Workflow" recipe (Dong et al. 2024).

For each of `iterations`:
1. the policy as it is now samples `num_generations` (K) responses to every training prompt;
2. the reward model scores them (a response without EOS loses `missing_eos_penalty`, as in
   PPO); each prompt's best and worst become a preference pair, and a prompt whose best and
   worst tie gives none;
3. TRL's DPOTrainer trains the policy on those pairs, `ppo_epochs` passes, with
   beta = `kl_coef`;
and the next iteration samples from the policy it made.

The reference is the policy the job started from, in every iteration: with a new LoRA
adapter, the base with the adapter disabled; a saved adapter trained further is judged
against its weights as loaded (TRL's "ref" adapter, set back to them each iteration);
without LoRA, a frozen copy. At the end the policy is judged against the reference as PPO's
is (training.ml.policy.evaluate_policy) and saved.

No checkpoints: a job that stops starts again from its first iteration.
"""

import math
import shutil
import time
from pathlib import Path

from .dpo import METRICS, DPOTrainingConfig
from .finetune import bridge, drop_reference_adapter, train, trl_arguments
from .loading import is_adapter
from .policy import (
    Models,
    PolicyTrainingConfig,
    evaluate_policy,
    evaluation_prompts,
    read_prompts,
    sample,
    save_policy,
    use_threads,
)
from .progress import Reporter


def train_iterative_dpo(config: PolicyTrainingConfig, reporter: Reporter) -> dict:
    """Run `iterations` rounds of sample, pick pairs, train; save the policy under
    output_dir/policy; evaluate it against the reference. The result's "iterations" holds
    each iteration's samples: mean reward, pairs, ties."""
    import torch

    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    prompts = read_prompts(config.prompts_file)
    held_out = read_prompts(config.eval_prompts_file) if config.eval_prompts_file else []
    torch.manual_seed(config.seed)
    models = Models(config, value_model=False)
    use_threads(config, models.policy)
    start = _starting_adapter(models, config)
    steps_per_iteration = config.ppo_epochs * math.ceil(len(prompts) / config.batch_size)
    done, history = 0, []
    started = time.perf_counter()
    for iteration in range(1, config.iterations + 1):
        pairs, summary = preference_pairs(models, prompts, config)
        history.append({"iteration": iteration, **summary})
        reporter.log(f"iteration {iteration} of {config.iterations}: mean reward of the "
                     f"samples {summary['reward']:.4f}; {summary['pairs']} pairs, "
                     f"{summary['ties']} prompts tied")
        if not pairs:
            continue
        total = (done + config.ppo_epochs * math.ceil(len(pairs) / config.batch_size)
                 + (config.iterations - iteration) * steps_per_iteration)
        numbered = NumberedReporter(reporter, done, total,
                                    {"iteration": iteration, "reward": summary["reward"],
                                     "response_length": summary["response_length"]})
        done += _train_on_pairs(models, pairs, config, iteration, numbered, start)["steps"]
    seconds = time.perf_counter() - started
    reporter.log("evaluating the policy against the reference")
    judged, held_out_count = evaluation_prompts(held_out, prompts, config.eval_prompts)
    evaluation = evaluate_policy(models, judged, config, held_out=held_out_count)
    saved = save_policy(models.policy, models.tokenizer, output / "policy", config)
    return {"policy_dir": saved["model"], "merged_dir": saved.get("merged"), "steps": done,
            "resumed_from_step": 0, "train_seconds": round(seconds, 3),
            "iterations": history, "eval": evaluation}


def preference_pairs(models: Models, prompts: list, config: PolicyTrainingConfig
                     ) -> tuple[list[dict], dict]:
    """Sample K responses to each prompt, score them, and pair each prompt's best with its
    worst: TRL preference rows {"prompt", "chosen", "rejected"} (a chat prompt's responses
    as assistant messages), and a summary of the samples (the reward model's mean score,
    the mean best and worst score, pairs, ties, response length)."""
    k = config.num_generations
    per_call = max(1, config.batch_size // k)  # prompts per generate call
    pairs, rewards, lengths, best, worst, ties = [], [], [], [], [], 0
    models.policy.eval()
    for first in range(0, len(prompts), per_call):
        chunk = prompts[first:first + per_call]
        rollout = sample(models, [p for p in chunk for _ in range(k)], config)
        rewards += rollout.rewards.tolist()
        lengths += rollout.mask.sum(1).tolist()
        scores = rollout.scores.view(len(chunk), k)
        for row, prompt in enumerate(chunk):
            high, low = int(scores[row].argmax()), int(scores[row].argmin())
            if scores[row, high] == scores[row, low]:
                ties += 1
                continue
            best.append(float(scores[row, high]))
            worst.append(float(scores[row, low]))
            texts = rollout.texts[row * k:(row + 1) * k]
            pairs.append({"prompt": prompt, "chosen": _reply(prompt, texts[high]),
                          "rejected": _reply(prompt, texts[low])})
    summary = {"reward": _mean(rewards), "best": _mean(best), "worst": _mean(worst),
               "pairs": len(pairs), "ties": ties, "response_length": _mean(lengths)}
    return pairs, summary


def _reply(prompt, text: str):
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _train_on_pairs(models: Models, pairs: list[dict], config: PolicyTrainingConfig,
                    iteration: int, reporter: Reporter, start: dict | None) -> dict:
    """One DPO pass (TRL's DPOTrainer, as a DPO job runs it) on an iteration's pairs."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    settings = DPOTrainingConfig(
        policy=config.policy, train_file="-",
        output_dir=str(Path(config.output_dir) / f"iteration-{iteration}"), lora=config.lora,
        epochs=config.ppo_epochs, batch_size=config.batch_size,
        learning_rate=config.learning_rate, beta=config.kl_coef,
        max_length=config.max_prompt_length + config.response_length,
        seed=config.seed + iteration, checkpoint_every=0, threads=config.threads)
    drop_reference_adapter(models.policy)  # TRL adds its own: a copy of the policy now
    progress = bridge(reporter, settings, METRICS)
    trainer = DPOTrainer(
        model=models.policy, ref_model=models.reference,
        args=trl_arguments(DPOConfig, settings, beta=settings.beta),
        train_dataset=Dataset.from_list(pairs), processing_class=models.tokenizer,
        callbacks=[progress])
    _reset_reference(models.policy, start)
    try:
        return train(trainer, progress, reporter, settings)
    finally:
        drop_reference_adapter(models.policy)
        shutil.rmtree(settings.output_dir, ignore_errors=True)


def _starting_adapter(models: Models, config: PolicyTrainingConfig) -> dict | None:
    """The weights of the saved adapter the job starts from (the reference is that adapter
    as loaded); None for a new adapter or no adapter."""
    if not is_adapter(config.policy):
        return None
    return {name: parameter.detach().clone()
            for name, parameter in models.policy.named_parameters() if ".default." in name}


def _reset_reference(model, start: dict | None) -> None:
    """TRL made its "ref" adapter a copy of the policy as it is now: make the reference the
    policy the job started from, the adapter as loaded (`start`), or the base with the
    adapter disabled (no "ref" adapter: TRL disables adapters then)."""
    if "ref" not in getattr(model, "peft_config", {}):
        return
    if start is None:
        model.delete_adapter("ref")
        return
    for name, weights in start.items():
        model.get_parameter(name.replace(".default.", ".ref.")).data.copy_(weights)


class NumberedReporter:
    """The job's reporter as one iteration's trainer sees it: its steps numbered after the
    earlier iterations', out of the job's `total`, with the iteration's sample metrics."""

    def __init__(self, reporter: Reporter, offset: int, total: int, extra: dict):
        self.reporter, self.offset, self.total, self.extra = reporter, offset, total, extra

    def step(self, step: int, total: int, metrics: dict[str, float]) -> bool:
        metrics = {**self.extra, **metrics, "policy_loss": metrics.get("loss", 0.0)}
        return self.reporter.step(self.offset + step, max(self.total, self.offset + step),
                                  metrics)

    def log(self, message: str) -> None:
        self.reporter.log(message)

    def checkpoint(self, step: int, path: str) -> None:
        self.reporter.checkpoint(self.offset + step, path)
