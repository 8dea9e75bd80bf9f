"""What SFT (training.ml.sft) and DPO (training.ml.dpo) share: the settings, loading the
policy (a catalog model gets a new LoRA adapter, a saved adapter goes on training), TRL's
arguments for a CPU or a GPU, progress and cancel through our reporter, resuming, saving.

Both run TRL's own trainers; what is ours is only the data (read and checked here, with the
file, line and field of a bad row) and the evaluation on held-out data before and after.
"""

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import check_run, last_trainer_checkpoint, read_run, write_run
from .config import LR_SCHEDULERS, ConfigError, JsonConfig
from .data import DataError
from .loading import is_adapter, load_tokenizer, require_safetensors, save_model
from .progress import Cancelled, Reporter, quiet, trainer_callback

CHECKPOINTS = "checkpoints"
RESUMABLE_CHANGES = ("threads", "checkpoint_every", "eval_batch_size")  # a resumed run may differ


@dataclass(frozen=True)
class FineTuneConfig(JsonConfig):
    """Train a causal LM (`policy`: a name, a folder or a saved LoRA adapter) on `train_file`,
    judged on `eval_file`, or on `eval_fraction` of the training rows held out when there is
    none. A saved adapter is trained further (its `lora_*` settings are its own)."""

    policy: str
    train_file: str
    output_dir: str
    eval_file: str | None = None
    eval_fraction: float = 0.1  # of the training rows, held out when there is no eval_file
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    merge_adapter: bool = False
    epochs: float = 1.0
    batch_size: int = 8
    learning_rate: float = 1e-4
    max_length: int = 512  # tokens of prompt + completion; longer ones lose their end
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50  # optimiser steps between checkpoints (0: never)
    eval_batch_size: int = 32
    threads: int | None = None  # None: one for a tiny model, else torch's default (all)

    def problems(self) -> list[str]:
        """Every bad setting, in words (a subclass adds its own)."""
        checks = [
            (bool(self.policy.strip()), "policy: give a model name or a local path"),
            (0 < self.epochs <= 100, "epochs: must be above 0 and at most 100"),
            (1 <= self.batch_size <= 4096, "batch_size: must be between 1 and 4096"),
            (1 <= self.eval_batch_size <= 4096, "eval_batch_size: must be between 1 and 4096"),
            (0 < self.learning_rate < 1, "learning_rate: must be above 0 and below 1"),
            (8 <= self.max_length <= 131072, "max_length: must be between 8 and 131072"),
            (0 <= self.eval_fraction < 1, "eval_fraction: must be at least 0 and below 1"),
            (not self.lora or (1 <= self.lora_r <= 1024 and self.lora_alpha > 0),
             "lora_r: must be between 1 and 1024, lora_alpha above 0"),
            (0 <= self.lora_dropout < 1, "lora_dropout: must be at least 0 and below 1"),
            (not self.merge_adapter or self.lora, "merge_adapter: needs lora"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio: must be at least 0 and below 1"),
            (self.lr_scheduler_type in LR_SCHEDULERS,
             f"lr_scheduler_type: must be one of {', '.join(LR_SCHEDULERS)}"),
            (0 <= self.max_grad_norm <= 1e6, "max_grad_norm: must be 0 (no clipping) or more"),
            (self.checkpoint_every >= 0, "checkpoint_every: must be 0 (never) or more"),
            (self.threads is None or 1 <= self.threads <= 256,
             "threads: must be between 1 and 256"),
        ]
        return [message for ok, message in checks if not ok]

    def __post_init__(self):
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))


def train_and_held_out(config: "FineTuneConfig", read) -> tuple[list, list]:
    """The training rows and the held-out ones: `eval_file` read the same way when given,
    else `eval_fraction` of the training rows."""
    rows = read(config.train_file)
    if config.eval_file:
        return rows, read(config.eval_file)
    return split_held_out(rows, config.eval_fraction, config.seed)


def split_held_out(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, held out): `fraction` of the rows (at least one, if any is asked and there
    are two or more) drawn with `seed`, both in their first order.

    >>> split_held_out(list("abcdefghij"), 0.2, seed=0)
    (['a', 'b', 'c', 'd', 'e', 'f', 'h', 'i'], ['g', 'j'])
    >>> split_held_out(["a"], 0.5, seed=0), split_held_out(list("ab"), 0.0, seed=0)
    ((['a'], []), (['a', 'b'], []))
    """
    count = min(max(round(len(rows) * fraction), 1), len(rows) - 1) if fraction else 0
    held = set(random.Random(seed).sample(range(len(rows)), max(count, 0)))
    return ([row for i, row in enumerate(rows) if i not in held],
            [row for i, row in enumerate(rows) if i in held])


def load_policy(config: FineTuneConfig):
    """(model, tokenizer, peft_config): a saved adapter loads trainable on its base (TRL is
    given no peft_config then); another model gets `peft_config`, a new LoRA, if `lora`."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(config.policy)
    if is_adapter(config.policy):
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(config.policy, is_trainable=True)
        return model, tokenizer, None
    require_safetensors(config.policy)
    model = AutoModelForCausalLM.from_pretrained(config.policy, use_safetensors=True)
    peft_config = None
    if config.lora:
        from peft import LoraConfig, TaskType

        peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r,
                                 lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules="all-linear")
    return model, tokenizer, peft_config


def trl_arguments(args_class, config: FineTuneConfig, **specific):
    """TRL's config for our settings: bf16 only on a GPU that has it, no activation
    checkpointing (TRL's default, slower on small models), a log every step for our
    reporter, checkpoints every `checkpoint_every` steps (the newest kept, for resuming)."""
    import torch

    cuda = torch.cuda.is_available()
    return args_class(
        output_dir=str(Path(config.output_dir) / CHECKPOINTS), num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size, learning_rate=config.learning_rate,
        warmup_steps=float(config.warmup_ratio), lr_scheduler_type=config.lr_scheduler_type,
        max_grad_norm=config.max_grad_norm, max_length=config.max_length, seed=config.seed,
        bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda, report_to=[],
        logging_steps=1, activation_checkpointing=False, dataloader_num_workers=0,
        save_strategy="steps" if config.checkpoint_every else "no",
        save_steps=config.checkpoint_every or 500, save_total_limit=1, **specific)


def use_threads(config: FineTuneConfig, model) -> int:
    from .policy import use_threads as policy_threads

    return policy_threads(config, model)


def bridge(reporter: Reporter, config: FineTuneConfig, renames: dict[str, str]):
    """Our progress callback: a training log's metrics renamed (TRL's name: ours)."""

    def step_metrics(logs: dict) -> dict | None:
        if "loss" not in logs or "train_runtime" in logs:
            return None
        return {ours: float(logs[theirs]) for theirs, ours in renames.items() if theirs in logs}

    return trainer_callback(reporter, step_metrics, str(Path(config.output_dir) / CHECKPOINTS))


def train(trainer, progress, reporter: Reporter, config: FineTuneConfig) -> dict:
    """Run the trainer, from the newest checkpoint of this run if any (one of a run with
    other settings is refused: OtherRunsCheckpoint); Cancelled if the reporter asked to
    stop. Return the run's steps, time and training loss."""
    quiet(trainer)
    folder = Path(config.output_dir) / CHECKPOINTS
    resume = last_trainer_checkpoint(folder)
    run = {k: v for k, v in config.as_dict().items() if k not in RESUMABLE_CHANGES}
    if resume:
        check_run(read_run(folder), run, folder)
        reporter.log(f"resuming from {resume}")
    write_run(folder, run)
    started = time.perf_counter()
    state = trainer.train(resume_from_checkpoint=resume)
    if progress.stopped:
        raise Cancelled(f"stopped after step {trainer.state.global_step} of "
                        f"{trainer.state.max_steps}")
    return {"steps": trainer.state.global_step, "train_loss": state.training_loss,
            "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
            "train_seconds": round(time.perf_counter() - started, 3),
            "loop_seconds": round(state.metrics.get("train_runtime", 0.0), 3)}


def drop_reference_adapter(model) -> None:
    """Delete TRL's "ref" adapter (its frozen copy of the policy for DPO), if it made one."""
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


def save_policy(model, tokenizer, config: FineTuneConfig) -> dict[str, str]:
    """Save the policy (an adapter as an adapter) under output_dir/policy, as the other
    policy trainers do; TRL's frozen "ref" adapter copy, if it made one, is left out. The
    run's checkpoints go: the saved policy is what it made."""
    drop_reference_adapter(model)
    tokenizer.padding_side = "right"
    saved = save_model(model, tokenizer, Path(config.output_dir) / "policy",
                       merge_adapter=config.merge_adapter, extra=config.as_dict())
    shutil.rmtree(Path(config.output_dir) / CHECKPOINTS, ignore_errors=True)  # done with them
    return saved


def check_template(rows: list[dict], tokenizer, where: str, what: str, give: str) -> None:
    """Chats need the tokenizer's chat template: refuse them in one line without one."""
    if rows and isinstance(rows[0]["prompt"], list) and not tokenizer.chat_template:
        raise DataError(f"{where}: the {what} are chats, but the model's tokenizer has no "
                        f"chat template; give plain-text {give}")
