"""Score every (prompt, response) of a file with a reward model: the `score` job's work.

score_items(config, reporter) reads JSONL lines {"id", "prompt", "response"} and writes
{"id", "reward"} lines, in chunks, reporting a step per chunk so a cancel stops it.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, JsonConfig
from .progress import Cancelled, Reporter

SCORE_CHUNK = 256


@dataclass(frozen=True)
class ScoreConfig(JsonConfig):
    model: str  # a registered reward model's folder
    items_file: str
    out_file: str
    alpha: float = 1.0  # every reward is multiplied by it
    batch_size: int = 32
    threads: int | None = None

    def __post_init__(self):
        problems = []
        if not -1000 <= self.alpha <= 1000:
            problems.append("alpha: must be between -1000 and 1000")
        if not 1 <= self.batch_size <= 4096:
            problems.append("batch_size: must be between 1 and 4096")
        if problems:
            raise ConfigError("; ".join(problems))


def score_items(config: ScoreConfig, reporter: Reporter) -> dict:
    from .scoring import RewardScorer

    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    scorer = RewardScorer.load(config.model, batch_size=config.batch_size)
    items = [json.loads(line) for line in Path(config.items_file).read_text().splitlines()
             if line.strip()]
    total = max(1, -(-len(items) // SCORE_CHUNK))
    out_path = Path(config.out_file)
    with out_path.open("w", encoding="utf-8") as out:
        for step, start in enumerate(range(0, len(items), SCORE_CHUNK), 1):
            chunk = items[start:start + SCORE_CHUNK]
            rewards = scorer.score([(i["prompt"], i["response"]) for i in chunk],
                                   alpha=config.alpha)
            for item, reward in zip(chunk, rewards, strict=True):
                out.write(json.dumps({"id": item["id"], "reward": reward}) + "\n")
            if not reporter.step(step, total, {"scored": start + len(chunk)}):
                raise Cancelled(f"stopped after {start + len(chunk)} of {len(items)}")
    return {"scored": len(items), "out_file": str(out_path)}
