"""Configs for the training code: plain dataclasses, validated before any model is loaded.

A config travels as JSON (from the job row to the training process, and into the saved
model's `training_config.json`), so every field is a plain value.
"""

from dataclasses import asdict, dataclass, fields
from typing import Any

REWARD_METHODS = ("kway", "trl", "regression")
# How a (prompt, response) becomes the model's input; see training.ml.data.choose_rendering.
RENDERINGS = ("auto", "chat_template", "pair", "text")
LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


class ConfigError(ValueError):
    """A config that cannot run; the message names every bad field."""


class JsonConfig:
    """What every config dataclass shares: to and from JSON values, strictly."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build from JSON values; unknown keys are an error, so typos do not vanish."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown fields: {', '.join(unknown)}")
        try:
            return cls(**values)
        except TypeError as exc:  # a missing required field
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class RewardTrainingConfig(JsonConfig):
    """How to train a reward model on TRL preference JSONL (prompt/chosen/rejected).

    `method` "kway" forwards each completion of a prompt once per step and puts all of that
    prompt's pairs into the loss; "trl" runs TRL's RewardTrainer on the same pairs. Both
    minimise -log sigmoid(r_chosen - r_rejected - margin), the margin taken from the file's
    `margin` column when `use_margin` is on. "regression" reads rated completions instead
    (training.ml.scores: `train_file` is a scores.jsonl) and minimises the squared error of
    tanh(output) against each score in [-1, 1], `batch_size` completions a step; rows without
    a split are held out by prompt (`held_out_fraction` of the prompts, drawn from `seed`).

    `rendering` says how a (prompt, response) becomes tokens: "chat_template" (the tokenizer's
    template for chats, TRL's prompt + response + EOS for plain text), "pair" (the pair
    encoding `tokenizer(prompt_text, response)` of BERT-style reward models, with token type
    ids), "text" (prompt text + response + EOS, chats as "User: ...\n\nAssistant: ..."), or
    "auto" (the first of those that fits the tokenizer, see data.choose_rendering). The choice
    made is saved next to the model, so scoring reads exactly what training read.
    `max_length` is capped at the model's positions; longer pairs are truncated (the prompt
    cut from the left), not dropped. Both methods optimise as transformers' Trainer does:
    AdamW, gradients clipped at `max_grad_norm` (0: no clipping), `warmup_ratio` of the steps
    warming up, then `lr_scheduler_type`.
    """

    base_model: str  # a Hugging Face name or a local folder
    train_file: str
    output_dir: str
    eval_file: str | None = None
    method: str = "kway"
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    merge_adapter: bool = False  # also save the adapter merged into the base weights
    load_in_4bit: bool = False  # CUDA only, with LoRA (QLoRA)
    epochs: float = 1.0
    batch_size: int = 8  # pairs per optimiser step (kway: whole prompts up to this many pairs)
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_length: int = 1024  # capped at the model's positions; longer pairs are truncated
    rendering: str = "auto"  # one of RENDERINGS
    max_grad_norm: float = 1.0  # gradient clipping, as Trainer (0: none)
    lr_scheduler_type: str = "linear"  # one of LR_SCHEDULERS, after warmup_ratio of the steps
    keep_checkpoints: bool = False  # keep the run's checkpoints after it finishes
    use_margin: bool = True
    held_out_fraction: float = 0.1  # regression: prompts held out of rows without a split
    center_rewards_coefficient: float | None = None
    seed: int = 0
    checkpoint_every: int = 50  # optimiser steps between checkpoints (0: never)
    eval_batch_size: int = 32
    num_gpus: int = 1  # > 1: the worker runs this under `accelerate launch`
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def __post_init__(self):
        problems = []
        if not self.base_model.strip():
            problems.append("base_model: give a Hugging Face model name or a local path")
        if self.method not in REWARD_METHODS:
            problems.append(f"method: must be one of {', '.join(REWARD_METHODS)}")
        if not 0 < self.epochs <= 100:
            problems.append("epochs: must be above 0 and at most 100")
        if not 1 <= self.batch_size <= 4096:
            problems.append("batch_size: must be between 1 and 4096")
        if not 0 < self.learning_rate < 1:
            problems.append("learning_rate: must be above 0 and below 1")
        if not 8 <= self.max_length <= 131072:
            problems.append("max_length: must be between 8 and 131072")
        if self.lora and not (1 <= self.lora_r <= 1024 and self.lora_alpha > 0):
            problems.append("lora_r: must be between 1 and 1024, lora_alpha above 0")
        if not 0 <= self.lora_dropout < 1:
            problems.append("lora_dropout: must be at least 0 and below 1")
        if self.load_in_4bit and not self.lora:
            problems.append("load_in_4bit: needs lora (4-bit weights cannot be trained directly)")
        if self.merge_adapter and not self.lora:
            problems.append("merge_adapter: needs lora")
        if self.rendering not in RENDERINGS:
            problems.append(f"rendering: must be one of {', '.join(RENDERINGS)}")
        if self.lr_scheduler_type not in LR_SCHEDULERS:
            problems.append(f"lr_scheduler_type: must be one of {', '.join(LR_SCHEDULERS)}")
        if not 0 <= self.max_grad_norm <= 1e6:
            problems.append("max_grad_norm: must be 0 (no clipping) or more")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio: must be at least 0 and below 1")
        if self.checkpoint_every < 0:
            problems.append("checkpoint_every: must be 0 (never) or more")
        if not 0 <= self.held_out_fraction < 1:
            problems.append("held_out_fraction: must be at least 0 and below 1")
        if not 1 <= self.num_gpus <= 64:
            problems.append("num_gpus: must be between 1 and 64")
        if self.threads is not None and not 1 <= self.threads <= 256:
            problems.append("threads: must be between 1 and 256")
        if problems:
            raise ConfigError("; ".join(problems))
