"""Preference datasets on disk: TRL JSONL, Parquet, a Hugging Face dataset folder, raw and
consensus rankings JSONL and a dataset card. Pure Python: no Django, no database.

The caller streams prompts (with their rankings) in prompt order; writers hold one prompt at
a time plus a bounded batch, so memory stays flat however large the project. Output bytes
depend only on the rows written: the same rankings and parameters give the same files.

TRL's preference format (trl.RewardTrainer, DPOTrainer), one row per kept pair:
    {"prompt": "What is 2+2?", "chosen": "4.", "rejected": "5.", "margin": 1.0, ...}
or, when any prompt of the export is a chat, the conversational form for every row:
    {"prompt": [{"role": "user", "content": "What is 2+2?"}],
     "chosen": [{"role": "assistant", "content": "4."}], "rejected": [...], ...}
Every row also carries prompt_id (keep a prompt's pairs together), external_id, chosen_id,
rejected_id, votes and agreement.
"""

import hashlib
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from .consensus import ConsensusRanking, PairVerdict
from .content import prompt_key
from .winrates import WinRates

PARQUET_BATCH_ROWS = 5000
DATA_FILES = ("train.jsonl", "test.jsonl", "rankings.jsonl", "consensus.jsonl")
MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class PromptForExport:
    prompt_id: int
    external_id: str
    text: str
    messages: list[dict[str, str]] | None
    completions: dict[int, str]  # completion id -> text


@dataclass(frozen=True, slots=True)
class RankingForExport:
    labeler_id: int | None  # never written out: for weights and exclusions only
    labeler: str  # a pseudonym
    source: str  # "labeler" or "imported"
    tiers: Sequence[Sequence[int]]
    revision: int
    flags: dict[str, list[str]]
    time_spent_ms: int | None
    displayed_order: Sequence[int]
    scores: dict[str, dict[str, int]] | None = None  # a rating's (rate mode), else None


def is_test_prompt(prompt_id: int | str, test_fraction: float, seed: int) -> bool:
    """Put a prompt in the test split by a hash of (seed, its id or content key): no prompt
    in both.

    The split of a prompt never depends on which other prompts exist, so exports of a
    growing project keep their earlier test prompts in test.

    >>> [is_test_prompt(p, 0.5, seed=1) for p in range(6)]
    [False, False, True, False, True, True]
    """
    digest = hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def prompt_value(prompt: PromptForExport, conversational: bool) -> str | list[dict[str, str]]:
    if not conversational:
        return prompt.text
    return prompt.messages or [{"role": "user", "content": prompt.text}]


def response_value(text: str, conversational: bool) -> str | list[dict[str, str]]:
    return [{"role": "assistant", "content": text}] if conversational else text


def preference_row(
    prompt: PromptForExport, verdict: PairVerdict, conversational: bool
) -> dict[str, Any]:
    """Return one TRL preference row for a kept pair of `prompt`."""
    return {
        "prompt_id": prompt.prompt_id,
        "external_id": prompt.external_id,
        "prompt": prompt_value(prompt, conversational),
        "chosen": response_value(prompt.completions[verdict.chosen], conversational),
        "rejected": response_value(prompt.completions[verdict.rejected], conversational),
        "chosen_id": verdict.chosen,
        "rejected_id": verdict.rejected,
        "votes": verdict.votes,
        "agreement": round(verdict.agreement, 6),
        "margin": round(verdict.margin, 6),
    }


def ranking_row(prompt: PromptForExport, ranking: RankingForExport) -> dict[str, Any]:
    """Return one raw-rankings row: what one labeler said about one prompt."""
    return {
        "prompt_id": prompt.prompt_id,
        "external_id": prompt.external_id,
        "labeler": ranking.labeler,
        "source": ranking.source,
        "tiers": [list(tier) for tier in ranking.tiers],
        "revision": ranking.revision,
        "flags": ranking.flags,
        "time_spent_ms": ranking.time_spent_ms,
        "displayed_order": list(ranking.displayed_order),
        # Only a rating has scores: a ranking's row stays as it was.
        **({"scores": ranking.scores} if ranking.scores is not None else {}),
    }


def consensus_row(prompt: PromptForExport, consensus: ConsensusRanking,
                  conversational: bool) -> dict[str, Any]:
    return {
        "prompt_id": prompt.prompt_id,
        "external_id": prompt.external_id,
        "prompt": prompt_value(prompt, conversational),
        "ranking": [list(tier) for tier in consensus.tiers],
        "completions": [
            {"id": completion_id, "text": prompt.completions[completion_id]}
            for tier in consensus.tiers
            for completion_id in tier
        ],
        "rankings_merged": consensus.rankings,
        "method": "ranked-pairs",
    }


# json.dumps(value, ensure_ascii=False, separators=(",", ":")) is this encoder's encode: one
# shared instance spares building an encoder per row, and the bytes are the same.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(row: dict[str, Any]) -> str:
    return _encode(row) + "\n"


def _scalar(value: Any) -> str:
    """A number as json.dumps writes it: an int's repr, a finite float's repr (json's own
    rules, taken directly for the common cases); anything else through the encoder."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return _encode(value)


@lru_cache(maxsize=4096)
def _encoded_name(name: str) -> str:
    """A labeler's pseudonym or a source, encoded once: a few names recur on every row."""
    return _encode(name)


class _PromptRows:
    """One prompt's lines, byte for byte what dumps() writes of ranking_row(),
    preference_row() and consensus_row(): the prompt and each completion are encoded once,
    not once per pair, and the rows are joined from those pieces in the same key order."""

    def __init__(self, prompt: PromptForExport, conversational: bool):
        self.prompt, self.conversational = prompt, conversational
        self.ids = (f'{{"prompt_id":{_scalar(prompt.prompt_id)},'
                    f'"external_id":{_encode(prompt.external_id)}')

    @cached_property
    def head(self) -> str:
        prompt = _encode(prompt_value(self.prompt, self.conversational))
        return f'{self.ids},"prompt":{prompt}'

    @cached_property
    def texts(self) -> dict[int, str]:
        return {completion_id: _encode(text)
                for completion_id, text in self.prompt.completions.items()}

    @cached_property
    def responses(self) -> dict[int, str]:
        if not self.conversational:
            return self.texts
        return {completion_id: f'[{{"role":"assistant","content":{text}}}]'
                for completion_id, text in self.texts.items()}

    def preference(self, verdict: PairVerdict) -> str:
        return (f'{self.head},"chosen":{self.responses[verdict.chosen]},'
                f'"rejected":{self.responses[verdict.rejected]},'
                f'"chosen_id":{_scalar(verdict.chosen)},"rejected_id":{_scalar(verdict.rejected)},'
                f'"votes":{_scalar(verdict.votes)},'
                f'"agreement":{_scalar(round(verdict.agreement, 6))},'
                f'"margin":{_scalar(round(verdict.margin, 6))}}}\n')

    def ranking(self, ranking: RankingForExport) -> str:
        """ranking_row()'s line."""
        scores = "" if ranking.scores is None else f',"scores":{_encode(ranking.scores)}'
        empty = type(ranking.flags) is dict and not ranking.flags  # most rankings' flags
        flags = "{}" if empty else _encode(ranking.flags)
        return (f'{self.ids},"labeler":{_encoded_name(ranking.labeler)},'
                f'"source":{_encoded_name(ranking.source)},'
                f'"tiers":{_encode([list(tier) for tier in ranking.tiers])},'
                f'"revision":{_scalar(ranking.revision)},"flags":{flags},'
                f'"time_spent_ms":{_scalar(ranking.time_spent_ms)},'
                f'"displayed_order":{_encode(list(ranking.displayed_order))}{scores}}}\n')

    def consensus(self, consensus: ConsensusRanking) -> str:
        completions = ",".join(
            f'{{"id":{_scalar(completion_id)},"text":{self.texts[completion_id]}}}'
            for tier in consensus.tiers for completion_id in tier)
        return (f'{self.head},"ranking":{_encode([list(tier) for tier in consensus.tiers])},'
                f'"completions":[{completions}],'
                f'"rankings_merged":{_scalar(consensus.rankings)},"method":"ranked-pairs"}}\n')


WRITE_BUFFER = 1 << 18  # characters held per file before they are encoded and written


class _DigestingFile:
    """A UTF-8 text file written through a buffer, hashed and counted as it is written, so
    the manifest need not read it again."""

    def __init__(self, path: Path):
        self._handle = path.open("wb")
        self._parts: list[str] = []
        self._held = 0
        self._sha256 = hashlib.sha256()
        self.size = self.lines = 0

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._held += len(text)
        if self._held >= WRITE_BUFFER:
            self._flush()

    def _flush(self) -> None:
        data = "".join(self._parts).encode("utf-8")
        self._parts, self._held = [], 0
        self._handle.write(data)
        self._sha256.update(data)
        self.size += len(data)
        self.lines += data.count(b"\n")

    def append(self, source: Path) -> None:
        """Append a file's bytes (a part built elsewhere), hashed and counted as they pass."""
        self._flush()
        with source.open("rb") as handle:
            for data in iter(lambda: handle.read(1 << 20), b""):
                self._handle.write(data)
                self._sha256.update(data)
                self.size += len(data)
                self.lines += data.count(b"\n")

    def close(self) -> tuple[str, int, int]:
        """Write what is held; return the file's sha256, size and lines, as _digest would."""
        try:
            self._flush()
        finally:
            self._handle.close()
        return self._sha256.hexdigest(), self.size, self.lines


@dataclass
class ExportCounts:
    prompts: int = 0
    prompts_with_pairs: int = 0
    rankings: int = 0
    pairs: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    agreement_histogram: list[int] = field(default_factory=lambda: [0] * 5)  # 0.5-0.6 ... 0.9-1
    # Distinct prompt contents with pairs in each split, and in both (always 0: checked).
    distinct_prompts: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    prompts_in_both: int = 0

    def count_pair(self, split: str, agreement: float) -> None:
        self.pairs[split] += 1
        self.agreement_histogram[min(4, int((agreement - 0.5) * 10))] += 1


class ExportWriter:
    """Write one export's files into `directory`, prompt by prompt."""

    def __init__(self, directory: Path, *, conversational: bool, test_fraction: float,
                 seed: int):
        self.directory = directory
        self.conversational = conversational
        self.test_fraction = test_fraction
        self.seed = seed
        self.counts = ExportCounts()
        directory.mkdir(parents=True, exist_ok=True)
        self._files = {name: _DigestingFile(directory / name) for name in DATA_FILES}
        self._keys: dict[str, set[str]] = {"train": set(), "test": set()}
        # Each data file's (sha256, bytes, lines) once closed, for write_manifest.
        self.digests: dict[str, tuple[str, int, int]] = {}

    def add_prompt(self, prompt: PromptForExport, rankings: Sequence[RankingForExport],
                   verdicts: Sequence[PairVerdict], consensus: ConsensusRanking | None) -> None:
        self.counts.prompts += 1
        self.counts.rankings += len(rankings)
        rows = _PromptRows(prompt, self.conversational)
        self._files["rankings.jsonl"].write("".join(rows.ranking(r) for r in rankings))
        if consensus is not None:
            self._files["consensus.jsonl"].write(rows.consensus(consensus))
        if not verdicts:
            return
        self.counts.prompts_with_pairs += 1
        # By the prompt's content, not its id: copies of one prompt share a side.
        key = prompt_key(prompt.text, prompt.messages)
        split = "test" if is_test_prompt(key, self.test_fraction, self.seed) else "train"
        self._keys[split].add(key[:32])
        self._files[f"{split}.jsonl"].write("".join(rows.preference(v) for v in verdicts))
        for verdict in verdicts:
            self.counts.count_pair(split, verdict.agreement)

    def split_keys(self) -> dict[str, list[str]]:
        """The content keys of the prompts with pairs in each split, for append_part."""
        return {split: sorted(keys) for split, keys in self._keys.items()}

    def append_part(self, directory: Path, counts: dict[str, Any],
                    keys: dict[str, list[str]]) -> None:
        """Append the files another writer wrote of the prompts that follow this one's (in
        another process): their lines go after this one's, their counts add up and their
        split keys join this one's, so the export is what one writer of all would write."""
        for name, handle in self._files.items():
            handle.append(directory / name)
        mine = self.counts
        for name in ("prompts", "prompts_with_pairs", "rankings"):
            setattr(mine, name, getattr(mine, name) + counts[name])
        for split in mine.pairs:
            mine.pairs[split] += counts["pairs"][split]
            self._keys[split].update(keys[split])
        mine.agreement_histogram = [a + b for a, b in zip(mine.agreement_histogram,
                                                          counts["agreement_histogram"],
                                                          strict=True)]

    def close(self) -> None:
        for name, handle in self._files.items():
            self.digests[name] = handle.close()
        self.counts.distinct_prompts = {split: len(keys) for split, keys in self._keys.items()}
        self.counts.prompts_in_both = len(self._keys["train"] & self._keys["test"])


def content_hash(directory: Path) -> str:
    """Return the sha256 of the data files, in a fixed order: equal data, equal hash."""
    digest = hashlib.sha256()
    for name in DATA_FILES:
        digest.update(name.encode() + b"\0")
        with (directory / name).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, *, counts: ExportCounts, data_hash: str,
                   params: dict[str, Any],
                   digests: dict[str, tuple[str, int, int]] | None = None) -> dict[str, Any]:
    """Write manifest.json: each file of the export (all but itself) with its size in bytes,
    SHA-256 and, for JSONL and Parquet, its record count; and the export's counts.

    A reader recomputes the hashes to know the export is whole. Nothing in it depends on
    when or where it was built, so equal files give an equal manifest. `digests`: files
    already hashed as they were written (ExportWriter.digests, by path), not read again.
    """
    files = [_file_entry(directory, path, (digests or {}).get(path.relative_to(directory)
                                                              .as_posix()))
             for path in sorted(directory.rglob("*")) if path.is_file() and path.name != MANIFEST]
    manifest = {
        "format": "rlhf-studio-export",
        "format_version": 1,
        "content_hash": data_hash,
        "counts": {**counts.__dict__, "pairs": dict(counts.pairs)},
        "params": params,
        "files": files,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (directory / MANIFEST).write_text(text, encoding="utf-8")
    return manifest


def _digest(path: Path) -> tuple[str, int, int]:
    """The file's sha256, size and number of lines, read a block at a time."""
    digest = hashlib.sha256()
    size = lines = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
            lines += block.count(b"\n")
    return digest.hexdigest(), size, lines


def _file_entry(directory: Path, path: Path,
                known: tuple[str, int, int] | None = None) -> dict[str, Any]:
    sha256, size, lines = known or _digest(path)
    records = None
    if path.suffix == ".jsonl":
        records = lines  # every row ends with "\n"
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        records = pq.ParquetFile(path).metadata.num_rows
    return {"path": path.relative_to(directory).as_posix(), "bytes": size, "sha256": sha256,
            "records": records}


def _empty_schema(pa):
    """The columns of a plain-text export, for an export with no pair at all."""
    return pa.schema([("prompt", pa.string()), ("chosen", pa.string()),
                      ("rejected", pa.string()), ("margin", pa.float64()),
                      ("agreement", pa.float64()), ("votes", pa.float64()),
                      ("prompt_id", pa.int64()), ("external_id", pa.string()),
                      ("chosen_id", pa.int64()), ("rejected_id", pa.int64())])


def write_parquet(directory: Path) -> None:
    """Write train/test Parquet files next to their JSONL, reading it in batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, empty = None, []
    for split in ("train", "test"):
        source = directory / f"{split}.jsonl"
        writer = None
        with source.open(encoding="utf-8") as handle:
            while batch := [json.loads(line) for _, line in zip(range(PARQUET_BATCH_ROWS),
                                                                 handle, strict=False)]:
                table = pa.Table.from_pylist(batch)
                if writer is None:
                    writer = pq.ParquetWriter(directory / f"{split}.parquet", table.schema)
                writer.write_table(table.cast(writer.schema))
        if writer is None:
            empty.append(split)
        else:
            schema = schema or writer.schema
            writer.close()
    for split in empty:  # an empty split has the other's columns, so both load alike
        pq.write_table((schema or _empty_schema(pa)).empty_table(),
                       directory / f"{split}.parquet")


def write_hf_dataset(directory: Path) -> None:
    """Save a `datasets.DatasetDict` (train, test) with save_to_disk under hf_dataset/."""
    import datasets

    datasets.disable_progress_bars()
    cache = directory / ".hf-cache"
    splits = {}
    for split in ("train", "test"):
        path = directory / f"{split}.jsonl"
        if path.stat().st_size:
            dataset = datasets.Dataset.from_json(str(path), cache_dir=str(cache))
            # Its fingerprint (saved in state.json) would depend on the build folder's name:
            # make it the data's, so equal exports are equal byte for byte, this folder too.
            dataset._fingerprint = _digest(path)[0][:16]
            splits[split] = dataset
    # A split with no rows is left out: datasets 5 saves one that load_from_disk then refuses.
    datasets.DatasetDict(splits).save_to_disk(str(directory / "hf_dataset"))
    shutil.rmtree(cache, ignore_errors=True)


def dataset_card(*, project_name: str, criterion: str, params: dict[str, Any],
                 counts: ExportCounts, data_hash: str, conversational: bool,
                 judged: WinRates | None = None) -> str:
    """Return the README.md that travels with an export: what it holds and how it was made."""
    histogram = counts.agreement_histogram
    buckets = ["0.5-0.6", "0.6-0.7", "0.7-0.8", "0.8-0.9", "0.9-1.0"]
    rows = "\n".join(f"| {bucket} | {count} |" for bucket, count in zip(buckets, histogram,
                                                                          strict=True))
    form = "conversational (message lists)" if conversational else "plain text"
    return f"""# {project_name}: preference pairs

Human preference data from rlhf-studio. Labelers ranked completions of each prompt by
**{criterion}**; each ranking gave every (better, worse) pair across its tiers, and the votes
of several labelers on each pair were merged. A pair is kept when at least
{params["min_votes"]} labelers voted on it and the winner's share of the votes is at least
{params["min_agreement"]} (ties: {params["tie_policy"]}{"; imported reference rankings vote"
if params.get("include_imported") else ""}{"; labelers below the gold accuracy threshold left out"
if params.get("exclude_flagged") else ""}{"; votes weighted by each labeler's agreement with the "
"others" if params.get("weight_by_reliability") else ""}).

## Files
- `train.jsonl`, `test.jsonl`: TRL preference format ({form}): `prompt`, `chosen`,
  `rejected`, plus `margin` (2 x agreement - 1, for RewardTrainer's margin loss),
  `agreement`, `votes`, `prompt_id`, `external_id`, `chosen_id`, `rejected_id`.
- `train.parquet`, `test.parquet`, `hf_dataset/` (`datasets.load_from_disk`): the same rows
  (an empty split: a Parquet file with the columns and no rows; left out of `hf_dataset/`).
- `rankings.jsonl`: every ranking used, one per line, labelers pseudonymised.
- `consensus.jsonl`: one consensus ranking per prompt (ranked pairs).
- `manifest.json`: every other file with its size, record count and SHA-256, and the counts.

The split is by prompt content, so copies of one prompt are on one side: test share
{params["test_fraction"]}, seed {params["seed"]}; {counts.distinct_prompts["train"]} distinct
prompts in train, {counts.distinct_prompts["test"]} in test, {counts.prompts_in_both} in both
(checked as the files were written).

## Counts
| what | count |
|---|---|
| prompts | {counts.prompts} |
| prompts with at least one kept pair | {counts.prompts_with_pairs} |
| rankings used | {counts.rankings} |
| pairs in train | {counts.pairs["train"]} |
| pairs in test | {counts.pairs["test"]} |

## Agreement of kept pairs
| winner's share | pairs |
|---|---|
{rows}
{judgments_section(judged)}
Data files sha256: `{data_hash}`

Load it:
```python
from datasets import load_dataset
{_loading_snippet(counts)}
```
"""


def judgments_section(judged: WinRates | None) -> str:
    """The card's section on the models that wrote the completions, as the labelers' rankings
    judge them; empty when the completions come from fewer than two models."""
    if judged is None or not judged.head_to_head:
        return ""
    level = f"{round(judged.confidence * 100)}% CI"

    def share(value, low, high) -> str:
        if value is None:
            return "-"
        interval = f" ({low * 100:.0f}-{high * 100:.0f}%)" if low is not None else ""
        return f"{value * 100:.0f}%{interval}"

    def strength(s) -> str:
        if s.strength is None:
            return "-"
        interval = (f" ({s.strength_low:+.2f} to {s.strength_high:+.2f})"
                    if s.strength_low is not None else "")
        return f"{s.strength:+.2f}{interval}"

    standings = "\n".join(
        f"| {s.model} | {s.comparisons} | {share(s.win_rate, s.win_rate_low, s.win_rate_high)} "
        f"| {strength(s)} |" for s in judged.standings)
    pairs = "\n".join(
        f"| {h.model} | {h.opponent} | {h.comparisons} | "
        f"{share(h.win_rate, h.win_rate_low, h.win_rate_high)} |"
        for h in judged.head_to_head if h.model < h.opponent)
    centre = (f"{judged.reference} at 0" if judged.reference else
              "centred on their mean")
    return f"""
## Models, as the labelers judged them
Each completion records the model that wrote it. Every pair of completions by two different
models in one labeler's ranking is a comparison (a tie counts half), from {judged.rankings}
rankings of {judged.prompts} prompts; intervals ({level}) resample prompts
({judged.resamples} times). Strength: Bradley-Terry log-strength, {centre}.

| model | comparisons | win rate ({level}) | strength ({level}) |
|---|---|---|---|
{standings}

| model | against | comparisons | win rate ({level}) |
|---|---|---|---|
{pairs}
"""


def _loading_snippet(counts: ExportCounts) -> str:
    """`datasets` refuses a JSON split with no rows: name only the splits that have some."""
    splits = [split for split in ("train", "test") if counts.pairs[split]] or ["train"]
    files = ", ".join(f'"{split}": "{split}.jsonl"' for split in splits)
    empty = [split for split in ("train", "test") if split not in splits]
    note = f"  # {' and '.join(empty)}: no pairs in this export" if empty else ""
    return f'data = load_dataset("json", data_files={{{files}}}){note}'
