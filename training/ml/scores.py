"""Rated completions for a regression reward model: read, split, measure. Pure Python.

The data contract, as an export of a rate project writes it (`scores.jsonl`), one line per
rated completion:

    {"prompt": "2+2?", "completion": " 4", "score": 0.5, "votes": 3, "spread": 0.25,
     "aspects": {}, "split": "train"}

`prompt` and `completion` are strings or message lists (as the pairs of train.jsonl), `score`
is the labelers' mean normalised to [-1, 1]. Only `prompt`, `completion` and `score` are
required; `split` ("train" or "test") is optional, and rows without one are split by prompt
(split_scores), so no prompt is on both sides.
"""

import json
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .data import DataError, Text, is_text, parse_json_line

SPLITS = ("train", "test")


@dataclass(frozen=True)
class ScoreRow:
    prompt: Text
    completion: Text
    score: float
    split: str | None = None
    prompt_key: str = ""  # rows with equal keys share a prompt


def read_scores(path: str | Path) -> list[ScoreRow]:
    """Read a scores JSONL file; raise DataError naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if line.strip():
                rows.append(_score_row(parse_json_line(path, line_number, line), path,
                                       line_number))
    if not rows:
        raise DataError(f"{path.name}: no scored rows")
    return rows


def _score_row(value: dict, path: Path, line_number: int) -> ScoreRow:
    where = f"{path.name}, line {line_number}"
    for name in ("prompt", "completion"):
        if not is_text(value.get(name)):
            raise DataError(f"{where}, field '{name}': missing, or not a string or message list")
    score = value.get("score")
    if not is_score(score):
        raise DataError(f"{where}, field 'score': {_shown(score)} is not a number in [-1, 1]")
    split = value.get("split")
    if split is not None and split not in SPLITS:
        raise DataError(f"{where}, field 'split': must be \"train\" or \"test\"")
    prompt_key = json.dumps(value["prompt"], ensure_ascii=False, sort_keys=True)
    return ScoreRow(value["prompt"], value["completion"], float(score), split, prompt_key)


def is_score(value: object) -> bool:
    """A finite number in [-1, 1] (a bool is not a number here).

    >>> is_score(0.5), is_score(-1), is_score(1.5), is_score(True), is_score("0.5")
    (True, True, False, False, False)
    """
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and -1 <= value <= 1)


def _shown(value: object) -> str:
    return "missing" if value is None else json.dumps(value)[:40]


def split_scores(rows: Sequence[ScoreRow], held_out_fraction: float = 0.1,
                 seed: int = 0) -> tuple[list[ScoreRow], list[ScoreRow]]:
    """Return (train, held out): a row's own split where it has one, else its prompt's,
    `held_out_fraction` of those prompts drawn from `seed` (at least one when the fraction
    is above 0 and there are two prompts or more).

    >>> rows = [ScoreRow(f"p{n % 10}", "c", 0.0, prompt_key=f"p{n % 10}") for n in range(40)]
    >>> train, test = split_scores(rows, 0.2, seed=1)
    >>> len(train), len(test), {r.prompt for r in train} & {r.prompt for r in test}
    (32, 8, set())
    """
    unsplit = sorted({row.prompt_key for row in rows if row.split is None})
    count = round(len(unsplit) * held_out_fraction)
    if held_out_fraction > 0 and len(unsplit) > 1:
        count = max(count, 1)
    held_out = set(random.Random(seed).sample(unsplit, count))
    train, test = [], []
    for row in rows:
        in_test = row.split == "test" or (row.split is None and row.prompt_key in held_out)
        (test if in_test else train).append(row)
    return train, test


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson correlation; None when either side has no spread (or fewer than 2 values).

    >>> pearson([1, 2, 3], [2, 4, 7]) > 0.99, pearson([1, 1], [0, 1])
    (True, None)
    """
    if len(xs) < 2:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    var_x = sum((x - mean_x) ** 2 for x in xs)
    var_y = sum((y - mean_y) ** 2 for y in ys)
    if var_x == 0 or var_y == 0:
        return None
    return cov / math.sqrt(var_x * var_y)


def mean_squared_error(predictions: Sequence[float], targets: Sequence[float]) -> float | None:
    """Mean squared error; None for no values.

    >>> mean_squared_error([0.5, -1.0], [1.0, -1.0])
    0.125
    """
    if not targets:
        return None
    return sum((p - t) ** 2 for p, t in zip(predictions, targets, strict=True)) / len(targets)


def score_pairs(rows: Sequence[ScoreRow]) -> list[tuple[int, int]]:
    """Return (higher, lower) row indexes for every two rows of one prompt with different
    scores: the pairs a regression model should order as the labelers did.

    >>> rows = [ScoreRow("p", "a", 1.0, prompt_key="p"), ScoreRow("p", "b", -1.0, prompt_key="p"),
    ...         ScoreRow("p", "c", 1.0, prompt_key="p"), ScoreRow("q", "d", 0.0, prompt_key="q")]
    >>> score_pairs(rows)
    [(0, 1), (2, 1)]
    """
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_prompt[row.prompt_key].append(index)
    pairs = []
    for indexes in by_prompt.values():
        for n, i in enumerate(indexes):
            for j in indexes[n + 1:]:
                if rows[i].score != rows[j].score:
                    pairs.append((i, j) if rows[i].score > rows[j].score else (j, i))
    return pairs


def held_out_metrics(rows: Sequence[ScoreRow], predictions: Sequence[float]) -> dict:
    """Pearson, MSE and pair accuracy (ties count as wrong) of predictions for `rows`.

    >>> rows = [ScoreRow("p", "a", 1.0, prompt_key="p"), ScoreRow("p", "b", -1.0, prompt_key="p")]
    >>> held_out_metrics(rows, [0.5, -0.5])
    {'rows': 2, 'pearson': 1.0, 'mse': 0.25, 'pairs': 1, 'pair_accuracy': 1.0}
    """
    targets = [row.score for row in rows]
    pairs = score_pairs(rows)
    correct = sum(predictions[higher] > predictions[lower] for higher, lower in pairs)
    return {"rows": len(rows), "pearson": pearson(predictions, targets),
            "mse": mean_squared_error(predictions, targets), "pairs": len(pairs),
            "pair_accuracy": correct / len(pairs) if pairs else None}
