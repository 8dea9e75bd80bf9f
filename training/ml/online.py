"""RLOO and GRPO with TRL's own trainers, on the same reward model, prompts and job as PPO.

Both sample `num_generations` responses per prompt and use the group's other rewards as the
baseline instead of a value model. The reward model scores through a callable, on its own
tokenization of (prompt, decoded response), so the EOS it was trained with is there (TRL
decodes completions without special tokens before scoring) and its tokenizer may differ
from the policy's.
"""

import dataclasses
import time
from pathlib import Path

from .checkpoints import last_trainer_checkpoint
from .loading import load_tokenizer
from .policy import (
    CHECKPOINT,
    Models,
    PolicyTrainingConfig,
    RewardModelFunction,
    evaluate_policy,
    evaluation_prompts,
    read_prompts,
    save_policy,
    use_threads,
)
from .progress import Cancelled, Reporter, quiet, trainer_callback


def train_online(config: PolicyTrainingConfig, reporter: Reporter) -> dict:
    """Train with TRL's RLOOTrainer or GRPOTrainer; save, then evaluate as PPO does."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    output = Path(config.output_dir)
    prompts = read_prompts(config.prompts_file)
    held_out = read_prompts(config.eval_prompts_file) if config.eval_prompts_file else []
    policy = AutoModelForCausalLM.from_pretrained(config.policy, use_safetensors=True)
    use_threads(config, policy)
    tokenizer = load_tokenizer(config.policy)
    tokenizer.padding_side = "left"
    trainer_class, config_class = _trl_classes(config.algorithm)
    cuda = torch.cuda.is_available()
    checkpoints = output / CHECKPOINT
    args = config_class(
        # Each batch of generations serves num_iterations optimiser steps: this many steps
        # sample total_episodes responses.
        output_dir=str(checkpoints), max_steps=config.total_steps * config.ppo_epochs,
        per_device_train_batch_size=config.batch_size, num_generations=config.num_generations,
        max_completion_length=config.response_length, temperature=config.temperature,
        learning_rate=config.learning_rate, beta=config.kl_coef, seed=config.seed,
        num_iterations=config.ppo_epochs, logging_steps=1, report_to=[],
        bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda,
        activation_checkpointing=False,
        save_strategy="steps" if config.checkpoint_every else "no",
        save_steps=config.checkpoint_every or 500, save_total_limit=1,
    )
    peft_config = None
    if config.lora:
        from peft import LoraConfig, TaskType

        peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r,
                                 lora_alpha=config.lora_alpha, target_modules="all-linear")
    rollout: dict[str, float] = {}  # logged on the steps that generate; kept for the others

    def step_metrics(logs: dict) -> dict | None:
        if "loss" not in logs:
            return None
        if "reward" in logs:
            rollout.update(reward=logs["reward"], kl=logs.get("kl", 0.0),
                           response_length=logs.get("completions/mean_length", 0.0),
                           reward_std=logs.get("reward_std", 0.0))
        return {**rollout, "policy_loss": logs["loss"], "entropy": logs.get("entropy", 0.0)}

    progress = trainer_callback(reporter, step_metrics, str(checkpoints))
    trainer = trainer_class(
        model=policy,
        reward_funcs=RewardModelFunction(config.reward_model),
        args=args, train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer, peft_config=peft_config, callbacks=[progress])
    quiet(trainer)
    resume = last_trainer_checkpoint(checkpoints)
    if resume:
        reporter.log(f"resuming from {resume}")
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    if progress.stopped:
        raise Cancelled(f"stopped after step {trainer.state.global_step} of "
                        f"{config.total_steps}")
    seconds = time.perf_counter() - started
    saved = save_policy(trainer.model, tokenizer, output / "policy", config)
    policy_dir = saved["model"]
    result = {"policy_dir": policy_dir, "merged_dir": saved.get("merged"),
              "steps": trainer.state.global_step,
              "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
              "train_seconds": round(seconds, 3)}
    reporter.log("evaluating the policy against the reference")
    # The saved adapter on its base: the base with the adapter off is the reference.
    models = Models(dataclasses.replace(config, policy=policy_dir),
                    reference_path=None if config.lora else config.policy)
    judged, held_out_count = evaluation_prompts(held_out, prompts, config.eval_prompts)
    result["eval"] = evaluate_policy(models, judged, config, held_out=held_out_count)
    return result


def _trl_classes(algorithm: str):
    if algorithm == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        return GRPOTrainer, GRPOConfig
    from trl import RLOOConfig, RLOOTrainer

    return RLOOTrainer, RLOOConfig
