"""Supervised fine-tuning with TRL's SFTTrainer: the policy learns to write the completions.

The data is JSONL, one example a line, in any of these forms (one form per file):

    {"prompt": "2+2?", "completion": " 4"}
    {"prompt": [{"role": "user", "content": "2+2?"}],
     "completion": [{"role": "assistant", "content": "4"}]}
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
    {"prompt": "2+2?", "chosen": " 4", "rejected": " 5", "prompt_id": 7, ...}

A demonstrate project's export writes the first two forms (annotate.sft_export), one line per
demonstration. A `messages` line is its last turn (the assistant's) completing the turns before
it. Preference rows (an export's train.jsonl) give one example per prompt: its best-ranked
completion (see best_completions). The loss is on the completion only. Chats go through the
tokenizer's chat template (as generation reads them); plain text is prompt + completion + EOS.
"""

from pathlib import Path

from .data import DataError, group_by_prompt, parse_json_line, read_preferences
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

METRICS = {"loss": "loss", "mean_token_accuracy": "token_accuracy", "entropy": "entropy",
           "learning_rate": "learning_rate"}


class SFTTrainingConfig(FineTuneConfig):
    """SFT's settings are FineTuneConfig's."""


def best_completions(groups) -> list[dict]:
    """One example per prompt: the completion that wins the most of its pairs net of those
    it loses (the first seen of equals), e.g. the top of a ranking.

    >>> from training.ml.data import PromptGroup
    >>> best_completions([PromptGroup("Q", ["b", "a", "c"], [(1, 0, 0.0), (1, 2, 0.0),
    ...                                                       (0, 2, 0.0)])])
    [{'prompt': 'Q', 'completion': 'a'}]
    """
    examples = []
    for group in groups:
        net = [0] * len(group.completions)
        for chosen, rejected, _ in group.pairs:
            net[chosen] += 1
            net[rejected] -= 1
        best = max(range(len(net)), key=lambda i: (net[i], -i))
        examples.append({"prompt": group.prompt, "completion": group.completions[best]})
    return examples


def read_examples(path: str | Path) -> list[dict]:
    """{"prompt", "completion"} examples from a file in any of the module's forms; DataError
    naming the file, line and field of the first bad line."""
    path = Path(path)
    first = _first_row(path)
    if "chosen" in first:
        return best_completions(group_by_prompt(read_preferences(path)))
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                where = f"{path.name}, line {number}"
                examples.append(_example(parse_json_line(path, number, line), where))
    chat = isinstance(examples[0]["prompt"], list)
    for number, example in enumerate(examples, 1):
        if isinstance(example["prompt"], list) != chat:
            raise DataError(f"{path.name}: example {number} is "
                            f"{'text' if chat else 'a chat'} and example 1 is not; give one "
                            "form per file")
    return examples


def _first_row(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                return parse_json_line(path, number, line)
    raise DataError(f"{path.name}: no examples")


def _example(value: dict, where: str) -> dict:
    if "messages" in value:
        messages = value["messages"]
        if not _is_chat(messages) or len(messages) < 2:
            raise DataError(f"{where}, field 'messages': must be a list of two or more "
                            "{role, content} turns")
        if messages[-1]["role"] != "assistant":
            raise DataError(f"{where}, field 'messages': the last turn must be the "
                            "assistant's (it is what the model learns to write)")
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    prompt, completion = value.get("prompt"), value.get("completion")
    if isinstance(prompt, str) and isinstance(completion, str) and completion.strip():
        return {"prompt": prompt, "completion": completion}
    if _is_chat(prompt) and _is_chat(completion) and completion:
        return {"prompt": prompt, "completion": completion}
    missing = next((name for name in ("prompt", "completion") if name not in value), None)
    if missing:
        raise DataError(f"{where}, field '{missing}': missing (give prompt and completion, or "
                        "messages)")
    raise DataError(f"{where}, field 'completion': prompt and completion must both be text "
                    "(a non-empty completion) or both message lists")


def _is_chat(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str)
        and isinstance(m.get("content"), str) for m in value)


def train_sft(config: SFTTrainingConfig, reporter: Reporter) -> dict:
    """Fine-tune the policy on the examples; report the held-out loss before and after."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    train_rows, held_out = train_and_held_out(config, read_examples)
    model, tokenizer, peft_config = load_policy(config)
    check_template(train_rows + held_out, tokenizer, Path(config.train_file).name,
                   "examples", "prompts and completions")
    use_threads(config, model)
    reporter.log(f"{len(train_rows)} examples to train on, {len(held_out)} held out")
    progress = bridge(reporter, config, METRICS)
    trainer = SFTTrainer(
        model=model, args=trl_arguments(SFTConfig, config, completion_only_loss=True),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(held_out) if held_out else None,
        processing_class=tokenizer, peft_config=peft_config, callbacks=[progress])
    before = _held_out_loss(trainer, held_out)
    result = train(trainer, progress, reporter, config)
    after = _held_out_loss(trainer, held_out)
    saved = save_policy(trainer.model, tokenizer, config)
    return {**result, "policy_dir": saved["model"], "merged_dir": saved.get("merged"),
            "is_adapter": is_adapter(saved["model"]),
            "train_examples": len(train_rows),
            "eval": {"examples": len(held_out), "loss_before": before, "loss_after": after}}


def _held_out_loss(trainer, held_out: list) -> float | None:
    """The mean loss per completion token on the held-out examples (None: none held out)."""
    if not held_out:
        return None
    return round(float(trainer.evaluate()["eval_loss"]), 6)


def report_lines(result: dict) -> list[str]:
    evaluation = result.get("eval") or {}
    lines = [f"SFT: {result['steps']} steps on {result['train_examples']} examples, "
             f"training loss {result['train_loss']:.4f}"]
    if evaluation.get("examples"):
        lines.append(f"Held-out loss on {evaluation['examples']} examples: "
                     f"{evaluation['loss_before']:.4f} before, {evaluation['loss_after']:.4f} "
                     "after")
    return lines
