"""Preference rows from TRL JSONL, grouped by prompt, and the token sequences a reward model reads.

The data contract is TRL's preference format, as annotate.exporters writes it:

    {"prompt": "2+2?", "chosen": " 4", "rejected": " 5", "margin": 0.33,
     "prompt_id": 7, "chosen_id": 31, "rejected_id": 32}

`prompt`, `chosen` and `rejected` are strings, or message lists for chats (the prompt's turns,
then one assistant message each). `margin`, the ids and `subset` (RewardBench's layout) are
optional. Every (prompt, response) becomes one token sequence exactly as TRL's RewardTrainer
builds it, so the K-way trainer, TRL's trainer and scoring all read the same tokens.
"""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Text = str | list[dict[str, Any]]


class DataError(ValueError):
    """A preference file that cannot be read; the message names the file, line and field."""


@dataclass(frozen=True)
class PreferenceRow:
    prompt: Text
    chosen: Text
    rejected: Text
    margin: float = 0.0
    subset: str | None = None
    prompt_key: str = ""  # rows with equal keys share a prompt
    chosen_key: str = ""
    rejected_key: str = ""


@dataclass
class PromptGroup:
    """One prompt, its distinct completions, and its pairs as (chosen, rejected, margin)."""

    prompt: Text
    completions: list[Text] = field(default_factory=list)
    pairs: list[tuple[int, int, float]] = field(default_factory=list)


def read_preferences(path: str | Path) -> list[PreferenceRow]:
    """Read a TRL preference JSONL file; raise DataError naming the first bad line."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if line.strip():
                rows.append(_row(_parse(path, line_number, line), path, line_number))
    if not rows:
        raise DataError(f"{path.name}: no preference rows")
    return rows


def _parse(path: Path, line_number: int, line: str) -> dict:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name}, line {line_number}: invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path.name}, line {line_number}: expected a JSON object")
    return value


def _row(value: dict, path: Path, line_number: int) -> PreferenceRow:
    where = f"{path.name}, line {line_number}"
    for name in ("chosen", "rejected"):
        if not _is_text(value.get(name)):
            raise DataError(f"{where}, field '{name}': missing, or not a string or message list")
    prompt = value.get("prompt", [] if isinstance(value["chosen"], list) else "")
    if not _is_text(prompt):
        raise DataError(f"{where}, field 'prompt': not a string or message list")
    if isinstance(prompt, list) != isinstance(value["chosen"], list) or isinstance(
        value["chosen"], list
    ) != isinstance(value["rejected"], list):
        raise DataError(f"{where}: prompt, chosen and rejected must all be text or all chats")
    margin = value.get("margin", 0.0)
    if not isinstance(margin, int | float) or isinstance(margin, bool):
        raise DataError(f"{where}, field 'margin': must be a number")
    # Without a prompt column each row stands alone (the prompt is inside chosen/rejected).
    prompt_key = _key(value, "prompt_id", prompt) if "prompt" in value else f"row:{line_number}"
    return PreferenceRow(
        prompt=prompt, chosen=value["chosen"], rejected=value["rejected"], margin=float(margin),
        subset=value.get("subset"), prompt_key=prompt_key,
        chosen_key=_key(value, "chosen_id", value["chosen"]),
        rejected_key=_key(value, "rejected_id", value["rejected"]),
    )


def _is_text(value: object) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    )


def _key(value: dict, id_field: str, text: Text) -> str:
    if value.get(id_field) is not None:
        return f"id:{value[id_field]}"
    return "text:" + json.dumps(text, ensure_ascii=False, sort_keys=True)


def group_by_prompt(rows: Sequence[PreferenceRow], use_margin: bool = True) -> list[PromptGroup]:
    """Group pairs by prompt, each distinct completion once, in first-seen order.

    >>> rows = [PreferenceRow("Q", "a", "b", 1.0, prompt_key="1", chosen_key="a", rejected_key="b"),
    ...         PreferenceRow("Q", "a", "c", 0.5, prompt_key="1", chosen_key="a", rejected_key="c"),
    ...         PreferenceRow("Q", "b", "c", 0.0, prompt_key="1", chosen_key="b", rejected_key="c")]
    >>> (group,) = group_by_prompt(rows)
    >>> group.completions, group.pairs
    (['a', 'b', 'c'], [(0, 1, 1.0), (0, 2, 0.5), (1, 2, 0.0)])
    """
    groups: dict[str, PromptGroup] = {}
    indexes: dict[str, dict[str, int]] = {}
    for row in rows:
        group = groups.setdefault(row.prompt_key, PromptGroup(row.prompt))
        index = indexes.setdefault(row.prompt_key, {})
        for key, text in ((row.chosen_key, row.chosen), (row.rejected_key, row.rejected)):
            if key not in index:
                index[key] = len(group.completions)
                group.completions.append(text)
        margin = row.margin if use_margin else 0.0
        group.pairs.append((index[row.chosen_key], index[row.rejected_key], margin))
    return list(groups.values())


def end_token(tokenizer) -> str | None:
    """The token TRL appends to plain-text sequences: EOS, else SEP (BERT-like models)."""
    return tokenizer.eos_token or getattr(tokenizer, "sep_token", None)


def reward_text(tokenizer, prompt: Text, response: Text) -> str:
    """Return the text a reward model reads for (prompt, response), as TRL renders it."""
    if isinstance(prompt, list) or isinstance(response, list):
        return tokenizer.apply_chat_template(_messages(prompt, response), tokenize=False)
    text = prompt + response
    eos = end_token(tokenizer)
    return text if eos is None or text.endswith(eos) else text + eos


def encode(tokenizer, prompt: Text, response: Text) -> list[int]:
    """Return the token ids of (prompt, response), exactly as TRL's RewardTrainer makes them."""
    if isinstance(prompt, list) or isinstance(response, list):
        encoded = tokenizer.apply_chat_template(_messages(prompt, response), tokenize=True,
                                                return_dict=True)
        return list(encoded["input_ids"])
    return list(tokenizer(text=reward_text(tokenizer, prompt, response))["input_ids"])


def _messages(prompt: Text, response: Text) -> list[dict]:
    prompt_turns = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    reply = response if isinstance(response, list) else [
        {"role": "assistant", "content": response}]
    return [*prompt_turns, *reply]


def batches_of_groups(groups: Sequence[PromptGroup], pairs_per_batch: int) -> Iterator[list[int]]:
    """Yield lists of group indexes holding at most `pairs_per_batch` pairs (one group at least).

    >>> groups = [PromptGroup("p", ["a", "b"], [(0, 1, 0.0)] * n) for n in (3, 3, 6, 1)]
    >>> list(batches_of_groups(groups, 6))
    [[0, 1], [2], [3]]
    """
    batch, pairs = [], 0
    for index, group in enumerate(groups):
        if batch and pairs + len(group.pairs) > pairs_per_batch:
            yield batch
            batch, pairs = [], 0
        batch.append(index)
        pairs += len(group.pairs)
    if batch:
        yield batch
