"""CPU per ranking, side by side in one invocation (issue 19): rlhf-studio at two or more
commits on PostgreSQL and SQLite, and Label Studio, through the labeler loop of
bench/labeler_loop.py (closed loops, then the open loop of 200 labelers ranking every 10 s).

    git worktree add --detach /tmp/bench-BASE BASE
    .venv/bin/python bench/rank_cpu.py --trees /tmp/bench-BASE,. \
        --out bench/results/rank_cpu.jsonl
    .venv/bin/python bench/rank_cpu.py --table bench/results/rank_cpu.jsonl

Each tree runs its own bench/labeler_loop.py and bench/rlhf_studio.py in a child process
(bench/before_after.py's run_child: PYTHONPATH set to the tree). The order of the systems
flips every round. CPU per ranking: the server's processes plus, on PostgreSQL, the backends
of the run's own database (not every postgres process on the host), over the rankings stored
during the loop. Label Studio runs from the first tree's bench/labelstudio.py.
"""

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from before_after import commit_of, drop, log, run_child  # noqa: E402

CHILD = r"""
import argparse, json, sys
from pathlib import Path
sys.path.insert(0, "bench")
import labeler_loop, loadgen, rlhf_studio
cfg = json.loads(sys.argv[1])
rlhf_studio.DB_NAME = cfg["db_name"]
if cfg.get("carry_next") is not None:
    rlhf_studio.CARRY_NEXT = cfg["carry_next"]
everyone = loadgen.postgres_pids

def this_database() -> list[int]:
    # The backends of this run's database only: other sessions' PostgreSQL work is not ours.
    found = []
    for pid in everyone():
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f" {cfg['db_name']} " in line:
            found.append(pid)
    return found

loadgen.postgres_pids = this_database
args = argparse.Namespace(prompts=cfg["prompts"], duration=cfg["duration"],
                          open_duration=cfg["open_duration"], concurrency=cfg["concurrency"],
                          open_labelers=cfg["open_labelers"], open_interval=10.0,
                          export_rankings=0, configs="2x4", trial_duration=8)
system = labeler_loop.make_system(cfg["database"], [(2, 4)])
run = labeler_loop.Run(system, args)
try:
    run(Path(cfg["jsonl"]), [(2, 4)])
finally:
    system.stop()
print(json.dumps({"imported": run.imported,
                  "loops": [{"kind": kind, **result} for kind, result in run.loops],
                  "violations": run.violations, "total_s": run.total_s}))
"""


def measure(args) -> None:
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    systems = [(tree, database, None) for database in args.databases.split(",")
               for tree in trees]
    if args.two_requests:  # the last tree also as a client that fetches before each ranking
        systems += [(trees[-1], database, False) for database in args.databases.split(",")]
    if args.labelstudio:
        systems.append((trees[0], "labelstudio", None))
    jsonl = Path(args.jsonl)
    if not jsonl.exists():
        from import_prompts import write_file

        write_file(jsonl, args.prompts, 4)
    with open(args.out, "a") as out:
        for rnd in range(args.rounds):
            for tree, database, carry_next in (systems[::-1] if rnd % 2 else systems):
                commit = commit_of(tree) if database != "labelstudio" else "labelstudio"
                if carry_next is False:
                    commit += " two requests"
                cfg = {"database": database, "db_name": f"bench_rankcpu_{rnd}",
                       "carry_next": carry_next,
                       "prompts": args.prompts, "duration": args.duration,
                       "open_duration": args.open_duration, "open_labelers": args.open_labelers,
                       "concurrency": args.concurrency, "jsonl": str(jsonl)}
                log(f"round {rnd + 1}: {commit} on {database} ...")
                try:
                    result = run_child(tree, CHILD, cfg)
                finally:
                    if database == "postgres":
                        drop(cfg["db_name"])
                record = {"benchmark": "rank-cpu", "round": rnd + 1, "commit": commit,
                          "database": database, **result}
                out.write(json.dumps(record) + "\n")
                out.flush()
                log(f"  rates {[round(r['rate'], 1) for r in record['loops']]}, "
                    f"load {record['load_mean']:.1f}, violations {len(record['violations'])}")


def cpu_ms(loop: dict) -> float:
    cpu = loop["cpu"]
    return 1000 * (cpu.get("server", 0) + cpu.get("database", 0)) / max(loop["rate"], 1e-9)


def table(path: str) -> None:
    records = [json.loads(line) for line in open(path)]
    names = list(dict.fromkeys((r["commit"], r["database"]) for r in records))

    def cell(name, get) -> list[float]:
        return [get(r) for r in records if (r["commit"], r["database"]) == name]

    def loop(r, kind, level=None):
        for found in r["loops"]:
            if found["kind"] == kind and (level is None or str(found["concurrency"]) == level):
                return found
        return None

    levels = [str(x["concurrency"]) for x in records[0]["loops"] if x["kind"] == "closed"]
    rows = []
    for level in levels:
        rows += [
            (f"closed {level}: rankings/s", lambda r, v=level: loop(r, "closed", v)["rate"]),
            (f"closed {level}: server + database CPU ms per ranking",
             lambda r, v=level: cpu_ms(loop(r, "closed", v))),
            (f"closed {level}: next p95 ms", lambda r, v=level: loop(r, "closed", v)["next"][1]),
            (f"closed {level}: submit p95 ms",
             lambda r, v=level: loop(r, "closed", v)["submit"][1]),
            (f"closed {level}: errors", lambda r, v=level: loop(r, "closed", v)["errors"]),
            (f"closed {level}: other processes' cores busy",
             lambda r, v=level: loop(r, "closed", v)["cpu"].get("other", 0)),
        ]
    rows += [
        ("open: rankings/s", lambda r: loop(r, "open")["rate"]),
        ("open: server + database CPU ms per ranking", lambda r: cpu_ms(loop(r, "open"))),
        ("open: next p50 / p95 ms", lambda r: loop(r, "open")["next"][:2]),
        ("open: submit p50 / p95 ms", lambda r: loop(r, "open")["submit"][:2]),
        ("open: errors", lambda r: loop(r, "open")["errors"]),
        ("invariant violations", lambda r: len(r["violations"])),
        ("load average, mean during the run", lambda r: r["load_mean"]),
    ]
    print("| measure | " + " | ".join(f"{c} {d}" for c, d in names) + " |")
    print("|---|" + "---|" * len(names))
    for label, get in rows:
        cells = []
        for name in names:
            values = cell(name, get)
            cells.append(" / ".join(_fmt(v) for v in values))
        print(f"| {label} | " + " | ".join(cells) + " |")


def _fmt(value) -> str:
    if isinstance(value, list):
        return " ; ".join(_fmt(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", help="worktrees, comma-separated, base first")
    parser.add_argument("--databases", default="postgres,sqlite")
    parser.add_argument("--no-labelstudio", dest="labelstudio", action="store_false")
    parser.add_argument("--two-requests", action="store_true",
                        help="also run the last tree with a client that GETs next-prompt/ "
                             "before each ranking instead of taking it from the answer")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=4_000)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--open-duration", type=float, default=60)
    parser.add_argument("--open-labelers", type=int, default=200)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--jsonl", default="/tmp/bench-prompts-4000-k4.jsonl")
    parser.add_argument("--out")
    parser.add_argument("--table")
    args = parser.parse_args()
    if args.table:
        table(args.table)
    else:
        measure(args)


if __name__ == "__main__":
    main()
