"""A rate project's export on disk: preference pairs from scores, and the scores themselves.
Pure Python: no Django, no database.

The caller streams prompts with their ratings in prompt order (see annotate.exporters, whose
split, row forms, Parquet and manifest writers this reuses). Files:
  train.jsonl, test.jsonl   TRL's preference format, one row per pair of kept completions
                            (annotate.rating_data.rated_pairs); `margin` is the difference of
                            the two mean scores, in scale units, for RewardTrainer's margin:
      {"prompt": "What is 2+2?", "chosen": "4.", "rejected": "5.", "margin": 2.5, ...}
  scores.jsonl              one line per kept completion, its score normalised to [-1, 1]:
      {"prompt": "What is 2+2?", "completion": "4.", "score": 0.75, "votes": 3,
       "spread": 1.0, "aspects": {"overall": 0.75}, "split": "train", ...}
  rankings.jsonl            every rating used: its tiers and its scores.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .content import prompt_key
from .exporters import (
    PromptForExport,
    RankingForExport,
    dumps,
    is_test_prompt,
    judgments_section,
    prompt_value,
    ranking_row,
    response_value,
)
from .rating_data import CompletionScore, RatedPair, completion_scores, rated_pairs
from .ratings import normalised
from .winrates import WinRates

SCORES_FILE = "scores.jsonl"
RATING_DATA_FILES = ("train.jsonl", "test.jsonl", "rankings.jsonl", SCORES_FILE)


@dataclass(frozen=True, slots=True)
class RatingRules:
    """Which completions an export keeps, and the scale their scores are normalised from."""

    min_votes: int
    max_spread: float
    scale_min: int
    scale_max: int

    def unit(self, score: float) -> float:
        return round(normalised(score, scale_min=self.scale_min, scale_max=self.scale_max), 6)


def rated_pair_row(prompt: PromptForExport, pair: RatedPair,
                   scores: dict[int, CompletionScore], conversational: bool) -> dict[str, Any]:
    """Return one TRL preference row for a pair of rated completions of `prompt`."""
    chosen, rejected = scores[pair.chosen], scores[pair.rejected]
    return {
        "prompt_id": prompt.prompt_id,
        "external_id": prompt.external_id,
        "prompt": prompt_value(prompt, conversational),
        "chosen": response_value(prompt.completions[pair.chosen], conversational),
        "rejected": response_value(prompt.completions[pair.rejected], conversational),
        "chosen_id": pair.chosen,
        "rejected_id": pair.rejected,
        "margin": round(pair.margin, 6),
        "chosen_score": round(chosen.mean, 6),
        "rejected_score": round(rejected.mean, 6),
        "chosen_votes": chosen.votes,
        "rejected_votes": rejected.votes,
    }


def score_row(prompt: PromptForExport, score: CompletionScore, split: str, rules: RatingRules,
              conversational: bool) -> dict[str, Any]:
    """Return one line of scores.jsonl: a kept completion and its normalised scores."""
    return {
        "prompt_id": prompt.prompt_id,
        "external_id": prompt.external_id,
        "completion_id": score.completion_id,
        "prompt": prompt_value(prompt, conversational),
        "completion": response_value(prompt.completions[score.completion_id], conversational),
        "score": rules.unit(score.mean),
        "votes": score.votes,
        "spread": round(score.spread, 6),
        "aspects": {aspect: rules.unit(mean) for aspect, mean in score.aspects.items()},
        "split": split,
    }


@dataclass
class RatingExportCounts:
    prompts: int = 0
    prompts_with_pairs: int = 0
    rankings: int = 0  # ratings used
    pairs: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    scores: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    completions_rated: int = 0
    left_out_few_votes: int = 0  # rated completions with fewer than min_votes labelers
    left_out_spread: int = 0  # ... with enough votes, but a spread above max_spread
    distinct_prompts: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    prompts_in_both: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "pairs": dict(self.pairs), "scores": dict(self.scores),
                "distinct_prompts": dict(self.distinct_prompts)}


class RatingExportWriter:
    """Write a rate project's data files into `directory`, prompt by prompt."""

    def __init__(self, directory: Path, *, conversational: bool, test_fraction: float,
                 seed: int, rules: RatingRules):
        self.conversational = conversational
        self.test_fraction = test_fraction
        self.seed = seed
        self.rules = rules
        self.counts = RatingExportCounts()
        directory.mkdir(parents=True, exist_ok=True)
        self._files = {name: (directory / name).open("w", encoding="utf-8")
                       for name in RATING_DATA_FILES}
        self._keys: dict[str, set[str]] = {"train": set(), "test": set()}

    def add_prompt(self, prompt: PromptForExport, ratings: Sequence[RankingForExport]) -> None:
        self.counts.prompts += 1
        self.counts.rankings += len(ratings)
        for rating in ratings:
            self._files["rankings.jsonl"].write(dumps(ranking_row(prompt, rating)))
        scores = completion_scores([rating.scores for rating in ratings if rating.scores])
        kept = self._kept(scores)
        if not kept:
            return
        # By the prompt's content, as ranking exports split: copies of a prompt share a side.
        key = prompt_key(prompt.text, prompt.messages)
        split = "test" if is_test_prompt(key, self.test_fraction, self.seed) else "train"
        for score in kept:
            row = score_row(prompt, score, split, self.rules, self.conversational)
            self._files[SCORES_FILE].write(dumps(row))
            self.counts.scores[split] += 1
        self._write_pairs(prompt, kept, split, key)

    def _kept(self, scores: list[CompletionScore]) -> list[CompletionScore]:
        rules = self.rules
        self.counts.completions_rated += len(scores)
        few_votes = [s for s in scores if s.votes < rules.min_votes]
        self.counts.left_out_few_votes += len(few_votes)
        kept = [s for s in scores if s.kept(min_votes=rules.min_votes,
                                           max_spread=rules.max_spread)]
        self.counts.left_out_spread += len(scores) - len(few_votes) - len(kept)
        return kept

    def _write_pairs(self, prompt: PromptForExport, kept: list[CompletionScore], split: str,
                     key: str) -> None:
        pairs = rated_pairs(kept, min_votes=self.rules.min_votes,
                            max_spread=self.rules.max_spread)
        if not pairs:
            return
        self.counts.prompts_with_pairs += 1
        self._keys[split].add(key[:32])
        by_id = {score.completion_id: score for score in kept}
        for pair in pairs:
            row = rated_pair_row(prompt, pair, by_id, self.conversational)
            self._files[f"{split}.jsonl"].write(dumps(row))
            self.counts.pairs[split] += 1

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self.counts.distinct_prompts = {split: len(keys) for split, keys in self._keys.items()}
        self.counts.prompts_in_both = len(self._keys["train"] & self._keys["test"])


def rating_content_hash(directory: Path) -> str:
    """Return the sha256 of a rate export's data files, in a fixed order."""
    digest = hashlib.sha256()
    for name in RATING_DATA_FILES:
        digest.update(name.encode() + b"\0")
        with (directory / name).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def why_no_rated_pairs(counts: dict[str, Any], params: dict[str, Any]) -> str:
    """Say why a rate export kept no pair, from its counts (RatingExportCounts.as_dict).

    >>> why_no_rated_pairs({"rankings": 4, "completions_rated": 6, "left_out_few_votes": 2,
    ...     "left_out_spread": 1, "scores": {"train": 3, "test": 0}},
    ...     {"min_votes": 2, "max_spread": 1.5})
    'of 6 completions rated, 2 have fewer than 2 ratings (min_votes) and 1 a spread above 1.5 \
(max_spread); the 3 kept have equal mean scores within each prompt, so no pair prefers one'
    """
    if not counts["rankings"]:
        return "the project has no ratings yet"
    kept = counts["scores"]["train"] + counts["scores"]["test"]
    accounts = (f"of {counts['completions_rated']} completions rated, "
                f"{counts['left_out_few_votes']} have fewer than {params['min_votes']} ratings "
                f"(min_votes) and {counts['left_out_spread']} a spread above "
                f"{params['max_spread']:g} (max_spread)")
    if kept:
        return (f"{accounts}; the {kept} kept have equal mean scores within each prompt, so no "
                "pair prefers one")
    return f"{accounts}: lower min_votes, raise max_spread or collect more ratings"


def rating_dataset_card(*, project_name: str, criterion: str, params: dict[str, Any],
                        rules: RatingRules, aspects: Sequence[str], counts: RatingExportCounts,
                        data_hash: str, conversational: bool,
                        judged: WinRates | None = None) -> str:
    """Return the README.md of a rate export: what its files hold and how it was made."""
    form = "conversational (message lists)" if conversational else "plain text"
    scored = f"on {', '.join(aspects)}, each" if aspects else "once, as `overall`,"
    splits = [split for split in ("train", "test") if counts.pairs[split]] or ["train"]
    files = ", ".join(f'"{split}": "{split}.jsonl"' for split in splits)
    return f"""# {project_name}: preference pairs from ratings

Human ratings from rlhf-studio. Labelers scored every completion of a prompt by
**{criterion}** {scored} a whole number from {rules.scale_min} to {rules.scale_max}. A
labeler's score for a completion is the mean over its aspects; a completion's mean score is
the mean over its labelers. A completion is kept when at least {rules.min_votes} labelers
rated it and their scores differ by at most {rules.max_spread:g} (highest minus lowest, in
scale units){"; labelers below the gold accuracy threshold left out"
if params.get("exclude_flagged") else ""}. Every two kept completions of a prompt with
different mean scores make a pair, the higher chosen.

## Files
- `train.jsonl`, `test.jsonl`: TRL preference format ({form}): `prompt`, `chosen`,
  `rejected`, plus `margin` (chosen's mean score minus rejected's, in scale units: on this
  {rules.scale_min}-{rules.scale_max} scale a margin lies between 0 and
  {rules.scale_max - rules.scale_min}; RewardTrainer's margin loss reads it),
  `chosen_score`, `rejected_score` (the mean scores, scale units), `chosen_votes`,
  `rejected_votes`, `prompt_id`, `external_id`, `chosen_id`, `rejected_id`.
- `train.parquet`, `test.parquet`, `hf_dataset/` (`datasets.load_from_disk`), when asked
  for: the same rows.
- `scores.jsonl`: one line per kept completion, for regression-style reward models:
  `prompt` and `completion` (in the form of the pairs), `score` (the mean score normalised
  to [-1, 1]: {rules.scale_min} is -1, {rules.scale_max} is 1), `aspects` (each aspect's
  mean, normalised the same way), `votes` (labelers who rated it), `spread` (their highest
  score minus their lowest, in scale units), `split` ("train" or "test", the pairs' split),
  `prompt_id`, `external_id`, `completion_id`.
- `rankings.jsonl`: every rating used, one per line, labelers pseudonymised: `scores`
  (`{{"<completion id>": {{"<aspect>": score}}}}`) and the `tiers` they imply.
- `manifest.json`: every other file with its size, record count and SHA-256, and the counts.

The split is by prompt content, so copies of one prompt are on one side: test share
{params["test_fraction"]}, seed {params["seed"]}; {counts.distinct_prompts["train"]} distinct
prompts with pairs in train, {counts.distinct_prompts["test"]} in test,
{counts.prompts_in_both} in both.

## Counts
| what | count |
|---|---|
| prompts | {counts.prompts} |
| prompts with at least one pair | {counts.prompts_with_pairs} |
| ratings used | {counts.rankings} |
| completions rated | {counts.completions_rated} |
| left out: fewer than {rules.min_votes} ratings | {counts.left_out_few_votes} |
| left out: spread above {rules.max_spread:g} | {counts.left_out_spread} |
| scores in train / test | {counts.scores["train"]} / {counts.scores["test"]} |
| pairs in train | {counts.pairs["train"]} |
| pairs in test | {counts.pairs["test"]} |
{judgments_section(judged)}
Data files sha256: `{data_hash}`

Load it:
```python
from datasets import load_dataset
pairs = load_dataset("json", data_files={{{files}}})
scores = load_dataset("json", data_files="scores.jsonl")
```
"""
