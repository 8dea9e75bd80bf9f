"""The training process: `python -m training.ml.run SPEC.json` (or under `accelerate launch`).

A worker starts one of these per job, so CUDA never lives in the worker itself and a
finished job gives all its memory back. SPEC.json holds {"kind": ..., ...}; reports go to
stdout as JSON lines (progress.JsonLinesReporter), the last one {"event": "result"}.
Exit codes: 0 done, 3 cancelled (SIGTERM), anything else failed (traceback on stderr).
"""

import json
import sys
from pathlib import Path

from .progress import Cancelled, JsonLinesReporter

EXIT_CANCELLED = 3
SCORE_CHUNK = 256


def run_reward(spec: dict, reporter) -> dict:
    from .config import RewardTrainingConfig
    from .reward import train_reward_model

    return train_reward_model(RewardTrainingConfig.from_dict(spec["config"]), reporter)


def run_policy(spec: dict, reporter) -> dict:
    from .ppo import PolicyTrainingConfig, train_policy

    return train_policy(PolicyTrainingConfig.from_dict(spec["config"]), reporter)


def run_generate(spec: dict, reporter) -> dict:
    from .generate import GenerationConfig, generate_completions

    return generate_completions(GenerationConfig.from_dict(spec["config"]), reporter)


def run_score(spec: dict, reporter) -> dict:
    """Score every line {"id", "prompt", "response"} of items_file into out_file."""
    from .scoring import RewardScorer

    scorer = RewardScorer.load(spec["model"], batch_size=spec.get("batch_size", 32))
    items = [json.loads(line) for line in Path(spec["items_file"]).read_text().splitlines()
             if line.strip()]
    alpha = spec.get("alpha", 1.0)
    total = max(1, -(-len(items) // SCORE_CHUNK))
    out_path = Path(spec["out_file"])
    with out_path.open("w", encoding="utf-8") as out:
        for step, start in enumerate(range(0, len(items), SCORE_CHUNK), 1):
            chunk = items[start:start + SCORE_CHUNK]
            rewards = scorer.score([(i["prompt"], i["response"]) for i in chunk], alpha=alpha)
            for item, reward in zip(chunk, rewards, strict=True):
                out.write(json.dumps({"id": item["id"], "reward": reward}) + "\n")
            if not reporter.step(step, total, {"scored": start + len(chunk)}):
                raise Cancelled(f"stopped after {start + len(chunk)} of {len(items)}")
    return {"scored": len(items), "out_file": str(out_path)}


RUNNERS = {"reward": run_reward, "ppo": run_policy, "generate": run_generate,
           "score": run_score}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    reporter = _reporter()
    try:
        result = RUNNERS[spec["kind"]](spec, reporter)
    except Cancelled as stop:
        reporter.log(f"cancelled: {stop}")
        return EXIT_CANCELLED
    if hasattr(reporter, "result"):
        reporter.result(result)
    return 0


def _reporter():
    """Rank 0 reports; the other ranks of a multi-GPU run stay silent."""
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        from .progress import RecordingReporter

        return RecordingReporter()
    return JsonLinesReporter()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
