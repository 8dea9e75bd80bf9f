"""Benchmark: the same prompt import from two checkouts, alternating, in one invocation.

    .venv/bin/python bench/import_ab.py BEFORE_DIR AFTER_DIR [--prompts N] [--k K]
        [--reps R] [--databases sqlite,postgres] [--out results.jsonl]

For a change measured on a busy machine: each rep runs BEFORE then AFTER (then the next rep
AFTER then BEFORE, so neither always goes first) on each database, every run in a fresh
process on a fresh database (PostgreSQL: `rlhf_bench_ab` on POSTGRES_URL), importing the
file bench/import_prompts.py writes. Each run reports the import's wall time and the CPU
time of the importing process (time.process_time: ours, not the server's). Prints the
medians and the after/before ratios.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.import_prompts import SCRATCH, database_url, write_file  # noqa: E402

CHILD = """
import json, sys, time, django
django.setup()
from django.core.management import call_command
from annotate import services
call_command("migrate", verbosity=0)
project = services.project_create(created_by=None, slug="bench", name="Bench",
                                  criterion="helpfulness", completions_per_prompt=int(sys.argv[2]))
wall, cpu = time.perf_counter(), time.process_time()
with open(sys.argv[1], "rb") as binary:
    record = services.prompts_import(project=project, binary=binary, filename="bench.jsonl")
print(json.dumps({"prompts": record.prompt_count, "wall": time.perf_counter() - wall,
                  "cpu": time.process_time() - cpu}))
"""


def run(tree: Path, database: str, path: Path, k: int) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "false",
           "DATABASE_URL": database_url(database, "ab"), "VAR_DIR": str(SCRATCH / "var-ab")}
    child = subprocess.run([sys.executable, "-c", CHILD, str(path), str(k)], cwd=tree,
                           env=env, capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--databases", default="postgres,sqlite")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = SCRATCH / f"prompts-{args.prompts}-k{args.k}.jsonl"
    if not path.exists():
        write_file(path, args.prompts, args.k)
    runs = []
    for rep in range(args.reps):
        order = [("before", args.before), ("after", args.after)]
        for database in args.databases.split(","):
            for label, tree in order if rep % 2 == 0 else order[::-1]:
                result = {"rep": rep, "database": database, "tree": label,
                          **run(tree, database, path, args.k)}
                runs.append(result)
                print(json.dumps(result), flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in runs))
    for database in args.databases.split(","):
        medians = {label: {m: statistics.median(r[m] for r in runs if r["tree"] == label
                                                and r["database"] == database)
                           for m in ("wall", "cpu")} for label in ("before", "after")}
        before, after = medians["before"], medians["after"]
        print(f"{database}: wall {before['wall']:.2f} -> {after['wall']:.2f} s "
              f"({before['wall'] / after['wall']:.2f}x), cpu {before['cpu']:.2f} -> "
              f"{after['cpu']:.2f} s ({before['cpu'] / after['cpu']:.2f}x)")

if __name__ == "__main__":
    main()
