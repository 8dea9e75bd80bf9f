"""Train a reward model on preference pairs: our K-way loop, or TRL's RewardTrainer.

Both minimise the same loss over the same token sequences,

    loss = mean over pairs of -log sigmoid(r(chosen) - r(rejected) - margin),

and differ in the forward passes. TRL forwards both sides of every pair, so a prompt with K
ranked completions and its C(K,2) pairs costs K(K-1) forwards. The K-way loop forwards each
distinct completion of a prompt once per step and scores all of that prompt's pairs from
those K rewards, as InstructGPT did: for K = 4, 4 forwards instead of 12.

Both read the same tokens (data.encode: one rendering, pairs over max_length truncated, none
dropped) and optimise as transformers' Trainer does (AdamW without decay on biases and norms,
gradients clipped at max_grad_norm, warmup then the chosen schedule).

train_reward_model(config, reporter) -> result dict; report_lines(result) says it in words.
The K-way loop checkpoints every `checkpoint_every` steps (trainable weights, optimiser,
scheduler, step, and the run's settings) and resumes from the last checkpoint in
`output_dir` when started again with the same settings, refusing one of another run; TRL's
trainer does the same with its own checkpoints. A finished run deletes its checkpoints
unless `keep_checkpoints`.

`method="regression"` trains on rated completions instead (training.ml.regression), through
the same entry point, saving and evaluation.
"""

import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import checkpoints
from .config import RewardTrainingConfig
from .data import (
    PromptGroup,
    Tokens,
    batches_of_groups,
    encode,
    end_token,
    group_by_prompt,
    read_preferences,
    save_rendering,
)
from .loading import load_tokenizer, save_model
from .optimise import (
    CHECKPOINT,
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
from .progress import Cancelled, Reporter, quiet, trainer_callback
from .scoring import RewardScorer, evaluate_pairs, evaluate_scores, model_inputs, save_output

TRL_CHECKPOINTS = "trl-checkpoints"
MODEL_DIR = "model"
RENDERING_WORDS = {"chat_template": "the tokenizer's chat template",
                   "pair": "pair encoding tokenizer(prompt, response)",
                   "text": "prompt text + response + end token"}


@dataclass
class EncodedGroup:
    sequences: list[Tokens]
    pairs: list[tuple[int, int, float]]


@dataclass(frozen=True)
class Inputs:
    """What training reads, settled before the first step: the rendering and max length
    resolved for this model, and every prompt's sequences."""

    rendering: str
    max_length: int
    model_limit: int | None
    groups: list[EncodedGroup]
    truncated_pairs: int


def encode_groups(groups: list[PromptGroup], tokenizer, max_length: int,
                  rendering: str = "auto") -> tuple[list[EncodedGroup], int]:
    """Tokenize each completion once, truncated to max_length (the prompt cut from the left);
    return the groups and how many pairs have a truncated sequence. No pair is dropped."""
    encoded, truncated = [], 0
    for group in groups:
        sequences = [encode(tokenizer, group.prompt, c, rendering, max_length)
                     for c in group.completions]
        truncated += sum(sequences[c].truncated or sequences[r].truncated
                         for c, r, _ in group.pairs)
        encoded.append(EncodedGroup(sequences, list(group.pairs)))
    return encoded, truncated


def prepare_inputs(config: RewardTrainingConfig, tokenizer, model) -> Inputs:
    """Resolve the rendering, cap max_length at the model's positions, encode the train file."""
    rendering, max_length, limit = resolve_input(config, tokenizer, model)
    groups, truncated = encode_groups(
        group_by_prompt(read_preferences(config.train_file), config.use_margin), tokenizer,
        max_length, rendering)
    return Inputs(rendering, max_length, limit, groups, truncated)


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
    regression = config.method == "regression"
    if regression:
        from .regression import train_regression

        train = train_regression
    else:
        train = _train_kway if config.method == "kway" else _train_trl
    model, tokenizer, stats = train(config, reporter, output)
    train_seconds = time.perf_counter() - started
    saved = save_model(model, tokenizer, output / MODEL_DIR,
                       merge_adapter=config.merge_adapter, extra=config.as_dict())
    for folder in saved.values():
        save_rendering(Path(folder), stats["rendering"], stats["max_length"])
        if regression:
            save_output(folder, "regression", "tanh")
    if not config.keep_checkpoints:
        for name in (CHECKPOINT, TRL_CHECKPOINTS):
            shutil.rmtree(output / name, ignore_errors=True)
    loop, unit = stats["loop_seconds"], "rows" if regression else "pairs"
    result = {"model_dir": saved["model"], "merged_dir": saved.get("merged"), **stats,
              "train_seconds": round(train_seconds, 3),
              f"{unit}_per_second": round(stats[f"{unit}_seen"] / loop, 2) if loop else None}
    return result | _evaluate(config, saved["model"], stats["max_length"], reporter)


def _evaluate(config: RewardTrainingConfig, model_dir: str, max_length: int,
              reporter: Reporter) -> dict:
    """A regression model's held-out scores ("held_out"), and any model's accuracy on the
    eval file's pairs ("eval")."""
    found, scorer = {}, None
    held_out = []
    if config.method == "regression":
        from .regression import held_out_rows

        held_out = held_out_rows(config)
    if held_out:
        reporter.log(f"evaluating on {len(held_out)} held-out rated completions")
        scorer = RewardScorer.load(model_dir, batch_size=config.eval_batch_size)
        found["held_out"] = evaluate_scores(scorer, held_out, max_length=max_length)
    if config.eval_file:
        reporter.log(f"evaluating on {config.eval_file}")
        scorer = scorer or RewardScorer.load(model_dir, batch_size=config.eval_batch_size)
        found["eval"] = evaluate_pairs(scorer, read_preferences(config.eval_file),
                                       max_length=max_length)
    return found


def report_lines(result: dict) -> list[str]:
    """Return the lines a command prints for a training result: what was read, how, and how
    well it did.

    >>> print("\\n".join(report_lines({
    ...     "rendering": "pair", "max_length": 256, "requested_max_length": 1024,
    ...     "model_max_length": 512, "train_pairs": 1821, "truncated_pairs": 394,
    ...     "dropped_pairs": 0, "steps": 228, "resumed_from_step": 0, "pairs_per_second": 12.5,
    ...     "model_dir": "out/model", "eval": {"pairs": 460, "truncated": 83,
    ...     "accuracy": 0.674, "mean_margin": 0.35}})))
    Input: pair encoding tokenizer(prompt, response); max length 256 (asked 1024, model limit 512)
    Trained on 1821 pairs: 394 truncated to 256 tokens, 0 dropped; 228 steps, 12.5 pairs/s
    Held-out: 460 pairs, 83 truncated, 0 skipped; accuracy 0.674, mean margin 0.350
    Model: out/model
    """
    length = f"max length {result['max_length']}"
    asked, limit = result.get("requested_max_length"), result.get("model_max_length")
    if asked and asked != result["max_length"]:
        length += f" (asked {asked}, model limit {limit})"
    rendering = RENDERING_WORDS.get(result["rendering"], result["rendering"])
    lines = [f"Input: {rendering}; {length}"]
    if result.get("method") == "regression":
        lines.append(f"Trained on {result['train_rows']} rated completions of "
                     f"{result['train_prompts']} prompts: {result['truncated_rows']} truncated "
                     f"to {result['max_length']} tokens; {result['steps']} steps, "
                     f"{result.get('rows_per_second')} rows/s (prediction tanh(output))")
    else:
        lines.append(f"Trained on {result['train_pairs']} pairs: {result['truncated_pairs']} "
                     f"truncated to {result['max_length']} tokens, "
                     f"{result.get('dropped_pairs', 0)} dropped; {result['steps']} steps, "
                     f"{result.get('pairs_per_second')} pairs/s")
    if result.get("resumed_from_step"):
        lines.append(f"Resumed from the checkpoint at step {result['resumed_from_step']}")
    if scores := result.get("held_out"):
        lines.append(f"Held-out scores: {scores['rows']} completions, {scores['truncated']} "
                     f"truncated; Pearson {_shown(scores['pearson'])}, MSE "
                     f"{_shown(scores['mse'], 4)}, pair accuracy "
                     f"{_shown(scores['pair_accuracy'])} on {scores['pairs']} pairs")
    held_out = result.get("eval")
    if held_out:
        accuracy = held_out["accuracy"]
        score = (f"accuracy {accuracy:.3f}, mean margin {held_out['mean_margin']:.3f}"
                 if accuracy is not None else "no pairs to score")
        lines.append(f"Held-out: {held_out['pairs']} pairs, {held_out.get('truncated', 0)} "
                     f"truncated, {held_out.get('skipped_too_long', 0)} skipped; {score}")
    lines.append(f"Model: {result['model_dir']}")
    return lines


def _shown(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _input_stats(config: RewardTrainingConfig, inputs: Inputs) -> dict:
    return {"rendering": inputs.rendering, "max_length": inputs.max_length,
            "requested_max_length": config.max_length, "model_max_length": inputs.model_limit,
            "train_pairs": sum(len(g.pairs) for g in inputs.groups),
            "truncated_pairs": inputs.truncated_pairs, "dropped_pairs": 0}


def _log_inputs(reporter: Reporter, config: RewardTrainingConfig, inputs: Inputs) -> None:
    if inputs.max_length < config.max_length:
        reporter.log(f"max_length {config.max_length} is over the model's {inputs.model_limit} "
                     f"positions: using {inputs.max_length}")
    if inputs.truncated_pairs:
        reporter.log(f"truncated {inputs.truncated_pairs} pairs longer than max_length "
                     f"{inputs.max_length} (the prompt cut from the left)")


# --- the K-way loop ---------------------------------------------------------------------------


def _train_kway(config: RewardTrainingConfig, reporter: Reporter, output: Path):
    accelerator = make_accelerator()
    tokenizer = load_tokenizer(config.base_model)
    model = prepare_model(config, tokenizer)
    inputs = prepare_inputs(config, tokenizer, model)
    _log_inputs(reporter, config, inputs)
    groups = inputs.groups
    schedule = step_schedule(groups, config)
    world, rank = accelerator.num_processes, accelerator.process_index
    total = len(schedule) // world or 1
    disable_dropout(model)
    optimizer, scheduler = optimiser_and_schedule(model, config, total)
    run = run_settings(config, inputs)
    start = resume_run(output, model, optimizer, scheduler, run, reporter, total)
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
        with accelerator.autocast():
            rewards = model(**model_inputs(sequences, tokenizer.pad_token_id,
                                           accelerator.device)).logits[:, 0].float()
            loss, accuracy, margin = kway_loss(rewards, pairs, config.center_rewards_coefficient)
        accelerator.backward(loss)
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        learning_rate = scheduler.get_last_lr()[0]  # this step's, as Trainer logs it
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        pairs_seen += len(pairs) * world
        metrics = {"loss": loss.item(), "accuracy": accuracy, "margin": margin,
                   "learning_rate": learning_rate, "pairs": len(pairs),
                   "sequences": len(sequences)}
        keep_going = reporter.step(step, total, metrics) if accelerator.is_main_process else True
        checkpoint_if_due(accelerator, config, output, model, optimizer, scheduler, run,
                          reporter, step, total)
        if not all_keep_going(accelerator, keep_going):
            raise Cancelled(f"stopped after step {step} of {total}")
    accelerator.wait_for_everyone()
    stats = {**_input_stats(config, inputs), "steps": total, "resumed_from_step": start,
             "pairs_seen": pairs_seen,
             "loop_seconds": round(time.perf_counter() - loop_started, 3),
             "forwards_per_pair": round(sum(len(g.sequences) for g in groups)
                                        / sum(len(g.pairs) for g in groups), 4)}
    return accelerator.unwrap_model(model), tokenizer, stats


# --- TRL's RewardTrainer ----------------------------------------------------------------------


def _train_trl(config: RewardTrainingConfig, reporter: Reporter, output: Path):
    """TRL's RewardTrainer on our tokens: pre-tokenized `chosen_ids`/`rejected_ids` (TRL's
    processed-dataset contract), so it reads exactly what the K-way loop and scoring read."""
    import torch
    from trl import RewardConfig, RewardTrainer

    cuda = torch.cuda.is_available()
    tokenizer = load_tokenizer(config.base_model)
    model = prepare_model(config, tokenizer)
    inputs = prepare_inputs(config, tokenizer, model)
    _log_inputs(reporter, config, inputs)
    dataset = _pair_dataset(inputs.groups)
    trl_checkpoints = output / TRL_CHECKPOINTS
    resume = checkpoints.last_trainer_checkpoint(trl_checkpoints)
    run = run_settings(config, inputs)
    if resume:
        checkpoints.check_run(checkpoints.read_run(trl_checkpoints), run, trl_checkpoints)
    checkpoints.write_run(trl_checkpoints, run)
    args = RewardConfig(
        output_dir=str(trl_checkpoints), num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, warmup_steps=float(config.warmup_ratio),
        lr_scheduler_type=config.lr_scheduler_type, max_grad_norm=config.max_grad_norm,
        max_length=inputs.max_length, seed=config.seed,
        center_rewards_coefficient=config.center_rewards_coefficient,
        bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda, report_to=[],
        logging_steps=1, activation_checkpointing=False, disable_dropout=True,
        save_strategy="steps" if config.checkpoint_every else "no",
        save_steps=config.checkpoint_every or 500, save_total_limit=1,
        eos_token=end_token(tokenizer), dataloader_num_workers=0,
        remove_unused_columns=False,
    )

    def step_metrics(logs: dict) -> dict | None:
        if "loss" not in logs:
            return None
        return {k: float(v) for k, v in logs.items()
                if k in ("loss", "accuracy", "margin", "learning_rate")}

    callback = trainer_callback(reporter, step_metrics, str(trl_checkpoints))
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset,
                            processing_class=tokenizer, callbacks=[callback],
                            data_collator=_collator(tokenizer.pad_token_id))
    quiet(trainer)
    if resume:
        reporter.log(f"resuming from {resume}")
    state = trainer.train(resume_from_checkpoint=resume)
    if callback.stopped:
        raise Cancelled(f"stopped after step {trainer.state.global_step}")
    kept = len(trainer.train_dataset)
    stats = {**_input_stats(config, inputs), "steps": trainer.state.global_step,
             "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
             "pairs_seen": round(kept * config.epochs), "forwards_per_pair": 2.0,
             "dropped_pairs": len(dataset) - kept, "train_loss": state.training_loss,
             "loop_seconds": round(state.metrics.get("train_runtime", 0.0), 3)}
    return trainer.model, tokenizer, stats


def _pair_dataset(groups: list[EncodedGroup]):
    """One row per pair: chosen_ids, rejected_ids, margin (and type ids for pair inputs)."""
    from datasets import Dataset

    columns: dict[str, list] = {"chosen_ids": [], "rejected_ids": [], "margin": []}
    typed = any(s.type_ids is not None for g in groups for s in g.sequences)
    if typed:
        columns |= {"chosen_type_ids": [], "rejected_type_ids": []}
    for group in groups:
        for chosen, rejected, margin in group.pairs:
            columns["chosen_ids"].append(group.sequences[chosen].ids)
            columns["rejected_ids"].append(group.sequences[rejected].ids)
            columns["margin"].append(margin)
            if typed:
                columns["chosen_type_ids"].append(group.sequences[chosen].type_ids)
                columns["rejected_type_ids"].append(group.sequences[rejected].type_ids)
    return Dataset.from_dict(columns)


def _collator(pad_token_id: int):
    """TRL's preference collator, plus token type ids when the pairs carry them."""
    from trl.trainer.reward_trainer import DataCollatorForPreference

    class WithTypes(DataCollatorForPreference):
        def torch_call(self, examples):
            batch = super().torch_call(examples)
            if "chosen_type_ids" in examples[0]:
                types = [e["chosen_type_ids"] for e in examples] + [
                    e["rejected_type_ids"] for e in examples]
                width = batch["input_ids"].shape[1]
                batch["token_type_ids"] = batch["input_ids"].new_tensor(
                    [t + [0] * (width - len(t)) for t in types])
            return batch

    return WithTypes(pad_token_id=pad_token_id)
