"""A preference a tiny model can learn, for tests, benchmarks and CPU demos.

Each prompt gets K completions of random words; completion j carries the word "helpful"
j times among them, and more "helpful" is better. Rows are in the TRL preference format
with prompt and completion ids, as annotate.exporters writes them.
"""

import json
import random
from pathlib import Path

from .tiny import WORDS

MARKER = "helpful"
FILLER = [w for w in WORDS if w != MARKER]


def _sentence(rng: random.Random, markers: int, length: int) -> str:
    words = [rng.choice(FILLER) for _ in range(length)]
    for _ in range(markers):
        words.insert(rng.randrange(len(words) + 1), MARKER)
    return " " + " ".join(words) + "."


def prompt_records(prompts: int, k: int = 4, seed: int = 0, length: int = 8,
                   first_id: int = 0) -> list[dict]:
    """Prompts in the import format: completion j carries the marker j times."""
    rng = random.Random(seed)
    records = []
    for p in range(first_id, first_id + prompts):
        question = " ".join(rng.choice(FILLER) for _ in range(6)).capitalize() + "?"
        records.append({"id": f"s{p}", "prompt": question,
                        "completions": [_sentence(rng, j, length) for j in range(k)]})
    return records


def preference_rows(prompts: int, k: int = 4, seed: int = 0, length: int = 8,
                    chat: bool = False, first_id: int = 0) -> list[dict]:
    """Every pair of each prompt's K completions, the one with more markers chosen."""
    rows = []
    for p, record in enumerate(prompt_records(prompts, k, seed, length, first_id), first_id):
        question, completions = record["prompt"], record["completions"]
        prompt = [{"role": "user", "content": question}] if chat else question

        def reply(text: str):
            return [{"role": "assistant", "content": text.strip()}] if chat else text

        for better in range(k - 1, -1, -1):
            for worse in range(better - 1, -1, -1):
                rows.append({"prompt_id": p, "prompt": prompt,
                             "chosen": reply(completions[better]),
                             "rejected": reply(completions[worse]),
                             "chosen_id": p * 100 + better, "rejected_id": p * 100 + worse,
                             "margin": 0.0})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    return path


def policy_prompts(count: int, seed: int = 0) -> list[dict]:
    """Open-ended prompts for a tiny policy: a few words it continues (no final punctuation,
    after which it would end at once)."""
    rng = random.Random(seed)
    return [{"prompt": " ".join(rng.choice(FILLER) for _ in range(rng.randint(2, 5))).capitalize()}
            for _ in range(count)]


def score_rows(prompts: int, k: int = 4, seed: int = 0, length: int = 8,
               first_id: int = 0) -> list[dict]:
    """Rated completions in the scores.jsonl format: completion j of K carries the marker j
    times and scores -1 + 2j/(K-1), so the score is learnable from the text."""
    rows = []
    for record in prompt_records(prompts, k, seed, length, first_id):
        for j, completion in enumerate(record["completions"]):
            rows.append({"prompt": record["prompt"], "completion": completion,
                         "score": -1 + 2 * j / (k - 1), "votes": 3, "spread": 0.0})
    return rows
