"""Train a reward model on preference pairs: our K-way loop, or TRL's RewardTrainer.

Both minimise the same loss over the same token sequences,

    loss = mean over pairs of -log sigmoid(r(chosen) - r(rejected) - margin),

and differ in the forward passes. TRL forwards both sides of every pair, so a prompt with K
ranked completions and its C(K,2) pairs costs K(K-1) forwards. The K-way loop forwards each
distinct completion of a prompt once per step and scores all of that prompt's pairs from
those K rewards, as InstructGPT did: for K = 4, 4 forwards instead of 12.

train_reward_model(config, reporter) -> result dict. The K-way loop checkpoints every
`checkpoint_every` steps (trainable weights, optimiser, scheduler, step) and resumes from
the last checkpoint in `output_dir` when started again; TRL's trainer resumes from its own.
"""

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from . import checkpoints
from .config import RewardTrainingConfig
from .data import (
    PromptGroup,
    batches_of_groups,
    encode,
    end_token,
    group_by_prompt,
    read_preferences,
)
from .loading import add_lora, load_reward_model, load_tokenizer, save_model
from .progress import Cancelled, Reporter
from .scoring import RewardScorer, evaluate_pairs, pad

CHECKPOINT = "checkpoint"
MODEL_DIR = "model"


@dataclass
class EncodedGroup:
    sequences: list[list[int]]
    pairs: list[tuple[int, int, float]]


def encode_groups(groups: list[PromptGroup], tokenizer, max_length: int
                  ) -> tuple[list[EncodedGroup], int]:
    """Tokenize each completion once; drop pairs with a sequence over max_length (as TRL)."""
    encoded, dropped = [], 0
    for group in groups:
        sequences = [encode(tokenizer, group.prompt, c) for c in group.completions]
        pairs = [(c, r, m) for c, r, m in group.pairs
                 if len(sequences[c]) <= max_length and len(sequences[r]) <= max_length]
        dropped += len(group.pairs) - len(pairs)
        if pairs:
            used = sorted({i for c, r, _ in pairs for i in (c, r)})
            renumber = {old: new for new, old in enumerate(used)}
            encoded.append(EncodedGroup([sequences[i] for i in used],
                                        [(renumber[c], renumber[r], m) for c, r, m in pairs]))
    return encoded, dropped


def step_schedule(groups: list[EncodedGroup], config: RewardTrainingConfig) -> list[list[int]]:
    """Every step's groups, for all epochs: shuffled per epoch from the seed, so a resumed
    run sees exactly the batches the first run would have."""
    schedule = []
    for epoch in range(math.ceil(config.epochs)):
        order = list(range(len(groups)))
        random.Random(config.seed * 1000 + epoch).shuffle(order)
        shuffled = [groups[i] for i in order]
        batches = [[order[i] for i in batch]
                   for batch in batches_of_groups(shuffled, config.batch_size)]
        if epoch + 1 > config.epochs:  # a fractional last epoch
            batches = batches[:max(1, round(len(batches) * (config.epochs - epoch)))]
        schedule += batches
    return schedule


def kway_loss(rewards, pairs, center_coefficient: float | None = None):
    """Mean pairwise loss from one reward per sequence; pairs index into `rewards`.

    >>> import torch
    >>> rewards = torch.tensor([2.0, 0.0, 1.0])
    >>> loss, accuracy, margin = kway_loss(rewards, [(0, 1, 0.0), (2, 1, 0.0)])
    >>> round(loss.item(), 4), accuracy, margin
    (0.2201, 1.0, 1.5)
    """
    import torch
    import torch.nn.functional as F

    chosen = torch.tensor([c for c, _, _ in pairs], device=rewards.device)
    rejected = torch.tensor([r for _, r, _ in pairs], device=rewards.device)
    margins = torch.tensor([m for _, _, m in pairs], device=rewards.device, dtype=rewards.dtype)
    diff = rewards[chosen] - rewards[rejected]
    loss = -F.logsigmoid(diff - margins).mean()
    if center_coefficient:
        loss = loss + center_coefficient * ((rewards[chosen] + rewards[rejected]) ** 2).mean()
    return loss, (diff > 0).float().mean().item(), diff.mean().item()


def train_reward_model(config: RewardTrainingConfig, reporter: Reporter) -> dict:
    """Train, save the model under output_dir/model, evaluate on eval_file; return the result."""
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train = _train_kway if config.method == "kway" else _train_trl
    model, tokenizer, stats = train(config, reporter, output)
    train_seconds = time.perf_counter() - started
    saved = save_model(model, tokenizer, output / MODEL_DIR,
                              merge_adapter=config.merge_adapter, extra=config.as_dict())
    loop = stats["loop_seconds"]
    result = {"model_dir": saved["model"], "merged_dir": saved.get("merged"), **stats,
              "train_seconds": round(train_seconds, 3),
              "pairs_per_second": round(stats["pairs_seen"] / loop, 2) if loop else None}
    if config.eval_file:
        reporter.log(f"evaluating on {config.eval_file}")
        scorer = RewardScorer.load(saved["model"], batch_size=config.eval_batch_size)
        result["eval"] = evaluate_pairs(scorer, read_preferences(config.eval_file),
                                        max_length=config.max_length)
    return result


def _prepare_model(config: RewardTrainingConfig, tokenizer):
    model = load_reward_model(config.base_model, tokenizer=tokenizer,
                              load_in_4bit=config.load_in_4bit, trainable=True)
    if config.lora and not hasattr(model, "peft_config"):
        model = add_lora(model, r=config.lora_r, alpha=config.lora_alpha,
                         dropout=config.lora_dropout, quantized=config.load_in_4bit)
    return model


def _disable_dropout(model) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


# --- the K-way loop ---------------------------------------------------------------------------


def _train_kway(config: RewardTrainingConfig, reporter: Reporter, output: Path):
    import torch
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16" if bf16 else "no")
    tokenizer = load_tokenizer(config.base_model)
    groups, dropped = encode_groups(
        group_by_prompt(read_preferences(config.train_file), config.use_margin), tokenizer,
        config.max_length)
    if not groups:
        raise ValueError(f"no pairs left to train on: all {dropped} are over max_length "
                         f"{config.max_length}")
    if dropped:
        reporter.log(f"dropped {dropped} pairs longer than max_length {config.max_length}")
    schedule = step_schedule(groups, config)
    world, rank = accelerator.num_processes, accelerator.process_index
    total = len(schedule) // world or 1
    model = _prepare_model(config, tokenizer)
    _disable_dropout(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adamw(trainable, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total),
                                                total)
    state = checkpoints.load(output / CHECKPOINT, checkpoints.trainable_parameters({"": model}))
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
    if start:
        reporter.log(f"resuming from the checkpoint at step {start} of {total}")
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    pairs_seen = 0
    loop_started = time.perf_counter()
    for step in range(start + 1, total + 1):
        batch = [groups[i] for i in schedule[(step - 1) * world + rank]]
        sequences, pairs = [], []
        for group in batch:
            offset = len(sequences)
            sequences += group.sequences
            pairs += [(offset + c, offset + r, m) for c, r, m in group.pairs]
        input_ids, attention = pad(sequences, tokenizer.pad_token_id, accelerator.device)
        with accelerator.autocast():
            rewards = model(input_ids=input_ids, attention_mask=attention).logits[:, 0].float()
            loss, accuracy, margin = kway_loss(rewards, pairs, config.center_rewards_coefficient)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        pairs_seen += len(pairs) * world
        metrics = {"loss": loss.item(), "accuracy": accuracy, "margin": margin,
                   "learning_rate": scheduler.get_last_lr()[0], "pairs": len(pairs),
                   "sequences": len(sequences)}
        keep_going = reporter.step(step, total, metrics) if accelerator.is_main_process else True
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                path = checkpoints.save(
                    output / CHECKPOINT,
                    checkpoints.trainable_parameters({"": accelerator.unwrap_model(model)}),
                    step=step, optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict())
                reporter.checkpoint(step, str(path))
        if not _all_keep_going(accelerator, keep_going):
            raise Cancelled(f"stopped after step {step} of {total}")
    accelerator.wait_for_everyone()
    stats = {"steps": total, "resumed_from_step": start, "pairs_seen": pairs_seen,
             "loop_seconds": round(time.perf_counter() - loop_started, 3),
             "train_pairs": sum(len(g.pairs) for g in groups), "dropped_pairs": dropped,
             "forwards_per_pair": round(sum(len(g.sequences) for g in groups)
                                        / sum(len(g.pairs) for g in groups), 4)}
    return accelerator.unwrap_model(model), tokenizer, stats


def _adamw(params, config: RewardTrainingConfig):
    """AdamW as TRL's trainer makes it (transformers' default on torch >= 2.8): the fused
    kernel, which on CPU steps a 22M-parameter model in 14 ms instead of 82."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=config.learning_rate,
                                 weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, lr=config.learning_rate,
                                 weight_decay=config.weight_decay)


def _all_keep_going(accelerator, keep_going: bool) -> bool:
    """Every process stops together (one stopping alone would hang the others)."""
    if accelerator.num_processes == 1:
        return keep_going
    import torch

    flag = torch.tensor([0.0 if keep_going else 1.0], device=accelerator.device)
    return accelerator.reduce(flag, reduction="sum").item() == 0


# --- TRL's RewardTrainer ----------------------------------------------------------------------


def _train_trl(config: RewardTrainingConfig, reporter: Reporter, output: Path):
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    cuda = torch.cuda.is_available()
    tokenizer = load_tokenizer(config.base_model)
    rows = read_preferences(config.train_file)
    columns = {"prompt": [r.prompt for r in rows], "chosen": [r.chosen for r in rows],
               "rejected": [r.rejected for r in rows]}
    if config.use_margin:
        columns["margin"] = [r.margin for r in rows]
    dataset = Dataset.from_dict(columns)
    model = _prepare_model(config, tokenizer)
    trl_checkpoints = output / "trl-checkpoints"
    args = RewardConfig(
        output_dir=str(trl_checkpoints), num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, warmup_steps=float(config.warmup_ratio),
        lr_scheduler_type="linear", max_length=config.max_length, seed=config.seed,
        center_rewards_coefficient=config.center_rewards_coefficient,
        bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda, report_to=[],
        logging_steps=1, activation_checkpointing=False, disable_dropout=True,
        save_strategy="steps" if config.checkpoint_every else "no",
        save_steps=config.checkpoint_every or 500, save_total_limit=1,
        eos_token=end_token(tokenizer), dataloader_num_workers=0,
    )

    class ReportSteps(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                metrics = {k: float(v) for k, v in logs.items()
                           if k in ("loss", "accuracy", "margin", "learning_rate")}
                if not reporter.step(state.global_step, state.max_steps, metrics):
                    control.should_training_stop = True
                    self.cancelled = True

        def on_save(self, args, state, control, **kwargs):
            reporter.checkpoint(state.global_step, str(trl_checkpoints))

    callback = ReportSteps()
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset,
                            processing_class=tokenizer, callbacks=[callback])
    quiet(trainer)
    kept = len(trainer.train_dataset)
    resume = checkpoints.last_trainer_checkpoint(trl_checkpoints)
    if resume:
        reporter.log(f"resuming from {resume}")
    state = trainer.train(resume_from_checkpoint=resume)
    if getattr(callback, "cancelled", False):
        raise Cancelled(f"stopped after step {trainer.state.global_step}")
    steps = trainer.state.global_step
    stats = {"steps": steps, "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
             "pairs_seen": round(kept * config.epochs), "train_pairs": kept,
             "dropped_pairs": len(rows) - kept, "forwards_per_pair": 2.0,
             "train_loss": state.training_loss,
             "loop_seconds": round(state.metrics.get("train_runtime", 0.0), 3)}
    return trainer.model, tokenizer, stats


def quiet(trainer) -> None:
    """Our reporter logs each step: drop Trainer's own printing to stdout."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
