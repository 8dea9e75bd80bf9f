"""SFT datasets on disk, from a demonstrate project: pure Python, no Django, no database.

The caller streams demonstrations in prompt order; the writer holds one at a time. Files:
  train.jsonl, test.jsonl   one line per demonstration, TRL's prompt-completion form
                            (trl.SFTTrainer; training.ml.sft reads it):
      {"prompt": "What is 2+2?", "completion": "4."}
  or, when any prompt of the export is a chat, the conversational form for every line:
      {"prompt": [{"role": "user", "content": "What is 2+2?"}],
       "completion": [{"role": "assistant", "content": "4."}]}
  demonstrations.jsonl      every demonstration with what it came from (labeler pseudonym,
                            the completion edited and its text, revision).
The split is the preference exports' (exporters.is_test_prompt on the prompt's content), so
a prompt is on the same side in both kinds of export.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .content import prompt_key
from .exporters import (
    MANIFEST,
    PromptForExport,
    _file_entry,
    dumps,
    is_test_prompt,
    prompt_value,
    response_value,
)

SFT_FILES = ("train.jsonl", "test.jsonl", "demonstrations.jsonl")


@dataclass(frozen=True, slots=True)
class DemonstrationForExport:
    labeler: str  # a pseudonym
    text: str
    source_completion_id: int | None
    source_completion_text: str | None
    revision: int
    time_spent_ms: int | None


@dataclass
class SFTCounts:
    prompts: int = 0  # prompts with at least one demonstration
    demonstrations: int = 0
    edited: int = 0  # of them, edited from a completion (the rest written from scratch)
    examples: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})


def sft_row(prompt: PromptForExport, demonstration: DemonstrationForExport,
            conversational: bool) -> dict[str, Any]:
    """One TRL prompt-completion example."""
    return {"prompt": prompt_value(prompt, conversational),
            "completion": response_value(demonstration.text, conversational)}


def demonstration_row(prompt: PromptForExport, demonstration: DemonstrationForExport,
                      split: str, conversational: bool) -> dict[str, Any]:
    """One line of demonstrations.jsonl: the example and where it came from."""
    return {
        "prompt_id": prompt.prompt_id,
        "external_id": prompt.external_id,
        "split": split,
        "labeler": demonstration.labeler,
        "prompt": prompt_value(prompt, conversational),
        "text": demonstration.text,
        "source_completion_id": demonstration.source_completion_id,
        "source_completion": demonstration.source_completion_text,
        "revision": demonstration.revision,
        "time_spent_ms": demonstration.time_spent_ms,
    }


class SFTWriter:
    """Write a demonstrate export's data files into `directory`, prompt by prompt."""

    def __init__(self, directory: Path, *, conversational: bool, test_fraction: float,
                 seed: int):
        self.conversational = conversational
        self.test_fraction = test_fraction
        self.seed = seed
        self.counts = SFTCounts()
        directory.mkdir(parents=True, exist_ok=True)
        self._files = {name: (directory / name).open("w", encoding="utf-8")
                       for name in SFT_FILES}

    def add_prompt(self, prompt: PromptForExport,
                   demonstrations: list[DemonstrationForExport]) -> None:
        if not demonstrations:
            return
        self.counts.prompts += 1
        key = prompt_key(prompt.text, prompt.messages)
        split = "test" if is_test_prompt(key, self.test_fraction, self.seed) else "train"
        for demonstration in demonstrations:
            self._files[f"{split}.jsonl"].write(
                dumps(sft_row(prompt, demonstration, self.conversational)))
            self._files["demonstrations.jsonl"].write(dumps(
                demonstration_row(prompt, demonstration, split, self.conversational)))
            self.counts.demonstrations += 1
            self.counts.edited += demonstration.source_completion_id is not None
            self.counts.examples[split] += 1

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


def sft_content_hash(directory: Path) -> str:
    """The sha256 of the data files, in a fixed order: equal data, equal hash."""
    digest = hashlib.sha256()
    for name in SFT_FILES:
        digest.update(name.encode() + b"\0" + (directory / name).read_bytes())
    return digest.hexdigest()


def sft_dataset_card(*, project_name: str, criterion: str, params: dict[str, Any],
                     counts: SFTCounts, data_hash: str, conversational: bool) -> str:
    """The README.md of a demonstrate export: what its files hold and how it was made."""
    form = ("conversational: `prompt` a list of messages, `completion` one assistant message"
            if conversational else "plain text: `prompt` and `completion` strings")
    splits = [split for split in ("train", "test") if counts.examples[split]]
    files = ", ".join(f'"{split}": "{split}.jsonl"' for split in splits)
    return f"""# {project_name}: demonstrations

Supervised fine-tuning data from rlhf-studio. Labelers wrote the response each prompt should
get (by **{criterion}**), from scratch or by editing one of its completions.

## Files
- `train.jsonl`, `test.jsonl`: one example per demonstration in TRL's prompt-completion
  form for `SFTTrainer` ({form}).
- `demonstrations.jsonl`: every demonstration with `prompt_id`, `external_id`, `split`,
  `labeler` (a pseudonym), `prompt`, `text`, the completion it was edited from
  (`source_completion_id` and its text `source_completion`; null when written from
  scratch), `revision` and `time_spent_ms`.
- `manifest.json`: every other file with its size, record count and SHA-256, and the counts.

The split is by prompt content, as in preference exports: test share
{params["test_fraction"]}, seed {params["seed"]}.

## Counts
| what | count |
|---|---|
| prompts with a demonstration | {counts.prompts} |
| demonstrations | {counts.demonstrations} |
| edited from a completion | {counts.edited} |
| examples in train | {counts.examples["train"]} |
| examples in test | {counts.examples["test"]} |

Data files sha256: `{data_hash}`

Load it:
```python
from datasets import load_dataset
data = load_dataset("json", data_files={{{files}}})
```
"""


def write_sft_manifest(directory: Path, *, counts: SFTCounts, data_hash: str,
                       params: dict[str, Any]) -> dict[str, Any]:
    """manifest.json as preference exports write it (exporters.write_manifest), with the
    counts of a demonstrate export."""
    files = [_file_entry(directory, path)
             for path in sorted(directory.rglob("*")) if path.is_file() and path.name != MANIFEST]
    manifest = {"format": "rlhf-studio-export", "format_version": 1, "kind": "sft",
                "content_hash": data_hash,
                "counts": {**counts.__dict__, "examples": dict(counts.examples)},
                "params": params, "files": files}
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (directory / MANIFEST).write_text(text, encoding="utf-8")
    return manifest
