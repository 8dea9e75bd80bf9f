"""A regression reward model: one output per (prompt, completion), prediction tanh(output)
in [-1, 1], trained on the mean squared error against the labelers' normalised score.

It reads rated completions (training.ml.scores, a rate project's scores.jsonl) and otherwise
trains as the pairwise methods of training.ml.reward do: the same rendering and truncation
(data.encode: the prompt cut from the left), AdamW without decay on biases and norms,
clipping at max_grad_norm, warmup then the schedule, checkpoints that belong to a run. The
model folder records the transform (scoring.save_output), so RewardScorer returns
alpha * tanh(output) for it.
"""

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from .config import RewardTrainingConfig
from .data import Tokens, encode
from .loading import load_tokenizer
from .optimise import (
    all_keep_going,
    checkpoint_if_due,
    disable_dropout,
    make_accelerator,
    optimiser_and_schedule,
    prepare_model,
    resolve_input,
    resume_run,
    run_settings,
)
from .progress import Cancelled, Reporter
from .scores import ScoreRow, read_scores, split_scores
from .scoring import model_inputs


@dataclass(frozen=True)
class ScoreInputs:
    """What a regression run reads, settled before the first step."""

    rendering: str
    max_length: int
    model_limit: int | None
    sequences: list[Tokens]
    targets: list[float]
    prompts: int
    truncated_rows: int


def split_rows(config: RewardTrainingConfig) -> tuple[list[ScoreRow], list[ScoreRow]]:
    """The train file's (train, held-out) rows, as every run of this config splits them."""
    return split_scores(read_scores(config.train_file), config.held_out_fraction, config.seed)


def held_out_rows(config: RewardTrainingConfig) -> list[ScoreRow]:
    return split_rows(config)[1]


def prepare_score_inputs(config: RewardTrainingConfig, tokenizer, model) -> ScoreInputs:
    """Encode the train rows as the pairwise methods encode a completion (data.encode)."""
    rendering, max_length, limit = resolve_input(config, tokenizer, model)
    train, _ = split_rows(config)
    if not train:
        raise ValueError(f"{Path(config.train_file).name}: every row is held out; nothing "
                         "to train on")
    sequences = [encode(tokenizer, row.prompt, row.completion, rendering, max_length)
                 for row in train]
    return ScoreInputs(rendering, max_length, limit, sequences, [row.score for row in train],
                       len({row.prompt_key for row in train}),
                       sum(sequence.truncated for sequence in sequences))


def row_schedule(count: int, config: RewardTrainingConfig) -> list[list[int]]:
    """Every step's row indexes for all epochs, `batch_size` a step, shuffled per epoch from
    the seed (a resumed run sees the same batches); a fractional last epoch is cut short.

    >>> from types import SimpleNamespace as C
    >>> [len(b) for b in row_schedule(10, C(epochs=1.5, batch_size=4, seed=0))]
    [4, 4, 2, 4, 4]
    """
    schedule = []
    for epoch in range(math.ceil(config.epochs)):
        order = list(range(count))
        random.Random(config.seed * 1000 + epoch).shuffle(order)
        batches = [order[i:i + config.batch_size] for i in range(0, count, config.batch_size)]
        if epoch + 1 > config.epochs:
            batches = batches[:max(1, round(len(batches) * (config.epochs - epoch)))]
        schedule += batches
    return schedule


def regression_loss(outputs, targets):
    """Mean squared error of tanh(outputs) against targets in [-1, 1]; also the predictions.

    >>> import torch
    >>> loss, predictions = regression_loss(torch.tensor([0.0, 10.0]), torch.tensor([0.5, 1.0]))
    >>> round(loss.item(), 4), predictions.tolist()
    (0.125, [0.0, 1.0])
    """
    import torch

    predictions = torch.tanh(outputs)
    return ((predictions - targets) ** 2).mean(), predictions


def train_regression(config: RewardTrainingConfig, reporter: Reporter, output: Path):
    """Train; return (model, tokenizer, stats) as training.ml.reward's methods do."""
    import torch

    accelerator = make_accelerator()
    tokenizer = load_tokenizer(config.base_model)
    model = prepare_model(config, tokenizer)
    inputs = prepare_score_inputs(config, tokenizer, model)
    if inputs.truncated_rows:
        reporter.log(f"truncated {inputs.truncated_rows} completions longer than max_length "
                     f"{inputs.max_length} (the prompt cut from the left)")
    schedule = row_schedule(len(inputs.sequences), config)
    world, rank = accelerator.num_processes, accelerator.process_index
    total = len(schedule) // world or 1
    disable_dropout(model)
    optimizer, scheduler = optimiser_and_schedule(model, config, total)
    run = run_settings(config, inputs)
    start = resume_run(output, model, optimizer, scheduler, run, reporter, total)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    rows_seen = 0
    loop_started = time.perf_counter()
    for step in range(start + 1, total + 1):
        batch = schedule[(step - 1) * world + rank]
        targets = torch.tensor([inputs.targets[i] for i in batch], device=accelerator.device)
        with accelerator.autocast():
            outputs = model(**model_inputs([inputs.sequences[i] for i in batch],
                                           tokenizer.pad_token_id,
                                           accelerator.device)).logits[:, 0].float()
            loss, predictions = regression_loss(outputs, targets)
        accelerator.backward(loss)
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        rows_seen += len(batch) * world
        metrics = {"loss": loss.item(), "mean_prediction": predictions.mean().item(),
                   "learning_rate": learning_rate, "rows": len(batch)}
        keep_going = reporter.step(step, total, metrics) if accelerator.is_main_process else True
        checkpoint_if_due(accelerator, config, output, model, optimizer, scheduler, run,
                          reporter, step, total)
        if not all_keep_going(accelerator, keep_going):
            raise Cancelled(f"stopped after step {step} of {total}")
    accelerator.wait_for_everyone()
    stats = {"rendering": inputs.rendering, "max_length": inputs.max_length,
             "requested_max_length": config.max_length, "model_max_length": inputs.model_limit,
             "method": "regression", "output": "tanh", "train_rows": len(inputs.sequences),
             "train_prompts": inputs.prompts, "truncated_rows": inputs.truncated_rows,
             "steps": total, "resumed_from_step": start, "rows_seen": rows_seen,
             "loop_seconds": round(time.perf_counter() - loop_started, 3)}
    return accelerator.unwrap_model(model), tokenizer, stats
