"""Direct preference optimisation with TRL's DPOTrainer, on preference pairs.

The data is TRL's preference JSONL, as an export's train.jsonl and test.jsonl hold it (see
training.ml.data): prompt, chosen and rejected, as text or as message lists (chats go
through the tokenizer's chat template). Other columns (ids, margin) are not used.

The reference is the policy as it starts: with LoRA, the base with the adapter disabled
(`ref_model=None`); a saved adapter trained further is its own reference (TRL keeps a frozen
copy of it); without LoRA, TRL keeps a frozen copy of the model.

The held-out score is the implied preference accuracy: the fraction of held-out pairs where
the policy's log-ratio to the reference, log pi(y|x) - log pi_ref(y|x), is higher for the
chosen completion than for the rejected one (TRL's eval "rewards/accuracies").
"""

from dataclasses import dataclass
from pathlib import Path

from .data import read_preferences
from .finetune import (
    FineTuneConfig,
    bridge,
    check_template,
    load_policy,
    save_policy,
    train,
    train_and_held_out,
    trl_arguments,
    use_threads,
)
from .loading import is_adapter
from .progress import Reporter

METRICS = {"loss": "loss", "rewards/accuracies": "accuracy", "rewards/margins": "margin",
           "rewards/chosen": "chosen_reward", "rewards/rejected": "rejected_reward",
           "learning_rate": "learning_rate"}


@dataclass(frozen=True)
class DPOTrainingConfig(FineTuneConfig):
    learning_rate: float = 5e-5
    beta: float = 0.1  # how far from the reference the policy may go (higher: less far)

    def problems(self) -> list[str]:
        found = super().problems()
        if not 0 < self.beta <= 100:
            found.append("beta: must be above 0 and at most 100")
        return found


def read_pairs(path: str | Path) -> list[dict]:
    """{"prompt", "chosen", "rejected"} rows of a TRL preference file (DataError naming the
    file, line and field of a bad one)."""
    return [{"prompt": row.prompt, "chosen": row.chosen, "rejected": row.rejected}
            for row in read_preferences(path)]


def train_dpo(config: DPOTrainingConfig, reporter: Reporter) -> dict:
    """Train the policy on the pairs; report the held-out implied preference accuracy."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    train_rows, held_out = train_and_held_out(config, read_pairs)
    model, tokenizer, peft_config = load_policy(config)
    check_template(train_rows, tokenizer, Path(config.train_file).name, "pairs", "pairs")
    use_threads(config, model)
    reporter.log(f"{len(train_rows)} pairs to train on, {len(held_out)} held out")
    progress = bridge(reporter, config, METRICS)
    trainer = DPOTrainer(
        model=model, ref_model=None, args=trl_arguments(DPOConfig, config, beta=config.beta),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(held_out) if held_out else None,
        processing_class=tokenizer, peft_config=peft_config, callbacks=[progress])
    before = _held_out(trainer, held_out)
    result = train(trainer, progress, reporter, config)
    after = _held_out(trainer, held_out)
    saved = save_policy(trainer.model, tokenizer, config)
    evaluation = {"pairs": len(held_out)}
    if held_out:
        evaluation |= {"accuracy": after["eval_rewards/accuracies"],
                       "margin": after["eval_rewards/margins"], "loss_before": before["eval_loss"],
                       "loss_after": after["eval_loss"]}
    return {**result, "policy_dir": saved["model"], "merged_dir": saved.get("merged"),
            "is_adapter": is_adapter(saved["model"]),
            "train_pairs": len(train_rows), "eval": evaluation}


def _held_out(trainer, held_out: list) -> dict:
    """TRL's evaluation on the held-out pairs: the DPO loss, the implied preference accuracy
    and the mean margin (each the mean over eval batches of eval_batch_size pairs)."""
    if not held_out:
        return {}
    return {key: round(float(value), 6) for key, value in trainer.evaluate().items()
            if key in ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins")}


def report_lines(result: dict) -> list[str]:
    evaluation = result.get("eval") or {}
    lines = [f"DPO: {result['steps']} steps on {result['train_pairs']} pairs, training loss "
             f"{result['train_loss']:.4f}"]
    if evaluation.get("pairs"):
        lines.append(f"Held-out implied preference accuracy {evaluation['accuracy']:.3f} on "
                     f"{evaluation['pairs']} pairs (margin {evaluation['margin']:.3f}; DPO loss "
                     f"{evaluation['loss_before']:.4f} before, {evaluation['loss_after']:.4f} "
                     "after)")
    return lines
