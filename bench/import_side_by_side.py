"""Import, side by side in one invocation: Label Studio 1.23.2 against rlhf-studio on
PostgreSQL and on SQLite, for one or more commits of ours, run after run in turn so the
machine's noise hits each alike.

    git worktree add --detach /tmp/bench-before BEFORE
    .venv/bin/python bench/import_side_by_side.py --trees /tmp/bench-before,. \
        --prompts 10000 --repeat 3 --out bench/results/x-import.jsonl
    .venv/bin/python bench/import_side_by_side.py --table bench/results/x-import.jsonl

Each run starts a fresh system (database, server, project; not timed) and imports the same
generated JSONL file (bench/import_prompts.py, K=4, about 1.25 KB a prompt) over HTTP, timed
as bench/labeler_loop.py times its import step: ours, the upload to
`POST /api/projects/{id}/imports/` plus the worker's import (a child process, its Django
start aside); Label Studio, `POST /api/projects/{id}/import` of the same prompts as tasks,
which its community edition imports in the request. Our runs are child processes in their
tree, with that tree on PYTHONPATH (before_after.child_env), so each commit runs its own
code and its own bench/rlhf_studio.py. One JSON line per run goes to --out.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import labelstudio  # noqa: E402
from before_after import child_env, commit_of  # noqa: E402
from import_prompts import write_file  # noqa: E402

OURS = r"""
import json, pathlib, sys
sys.path.insert(0, "bench")
import rlhf_studio
cfg = json.loads(sys.argv[1])
system = rlhf_studio.RlhfStudio(cfg["database"])
system.prepare(1)
try:
    result = system.import_prompts(pathlib.Path(cfg["jsonl"]))
finally:
    system.stop()
print("RESULT " + json.dumps(result))
"""


def ours(tree: Path, database: str, jsonl: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", OURS, json.dumps(
        {"database": database, "jsonl": str(jsonl)})], cwd=tree, env=child_env(tree),
        capture_output=True, text=True)
    found = [line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not found:
        raise RuntimeError(f"{tree} {database}: exited {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(found[-1])


def theirs(jsonl: Path) -> dict:
    system = labelstudio.LabelStudio()
    system.prepare(1)
    try:
        return system.import_prompts(jsonl)
    finally:
        system.stop()


def run(args) -> None:
    trees = [Path(tree).resolve() for tree in args.trees.split(",")]
    jsonl = Path(args.jsonl or f"/tmp/prompts-{args.prompts}-k4.jsonl")
    if not jsonl.exists():
        write_file(jsonl, args.prompts, 4)
    systems = [("labelstudio", None, None)] + [
        ("rlhf-studio", tree, database) for tree in trees for database in ("postgres", "sqlite")]
    with open(args.out, "a") as out:
        for repetition in range(1, args.repeat + 1):
            for name, tree, database in systems:
                load = os.getloadavg()[0]
                result = theirs(jsonl) if tree is None else ours(tree, database, jsonl)
                line = {"system": name, "commit": commit_of(tree) if tree else
                        labelstudio.PACKAGE, "database": database or "sqlite",
                        "repetition": repetition, "load_before": load, **result,
                        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                out.write(json.dumps(line) + "\n")
                out.flush()
                print(f"{line['commit']:<22} {line['database']:<9} rep {repetition}: "
                      f"{result['prompts']:,} prompts in {result['seconds']:.2f} s "
                      f"(load {load:.1f})", file=sys.stderr, flush=True)
    table(args.out)


def table(path: str) -> None:
    """Medians by system, commit and database; ratios against Label Studio's median."""
    runs = [json.loads(line) for line in open(path)]
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault((r["system"], r["commit"], r["database"]), []).append(r["seconds"])
    label_studio = statistics.median(next(v for k, v in groups.items() if k[0] == "labelstudio"))
    print("| system | commit | database | runs, s | median, s | vs Label Studio |")
    print("|---|---|---|---|---|---|")
    for (system, commit, database), seconds in groups.items():
        median = statistics.median(seconds)
        runs_cell = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"| {system} | {commit} | {database} | {runs_cell} | {median:.2f} | "
              f"{label_studio / median:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trees", help="our worktrees, comma-separated, base first")
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jsonl", help="the prompts file (default: generated under /tmp)")
    parser.add_argument("--out", default="bench/results/import_side_by_side.jsonl")
    parser.add_argument("--table", help="print the table of a results file and stop")
    args = parser.parse_args()
    if args.table:
        table(args.table)
    else:
        run(args)


if __name__ == "__main__":
    main()
