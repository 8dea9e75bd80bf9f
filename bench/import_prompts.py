"""Benchmark: import N prompts with K completions each, on SQLite and on PostgreSQL, in one run.

    .venv/bin/python bench/import_prompts.py [--prompts N] [--k K] [--databases sqlite,postgres]
                                             [--profile DIR] [--repeat R] [--short --dir D]

Each database is created fresh (SQLite in bench/.scratch, PostgreSQL as database `rlhf_bench`
on POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres), migrated, and given one
project; then the same generated JSONL file is imported through the same service that
`manage.py import_prompts` calls. Every database runs in its own process, so Django's settings
are read fresh. Prints one table (the median of --repeat runs, each on a fresh database).
With --profile, each database's import also runs under cProfile, into DIR/<database>.prof
and DIR/<database>.txt (the top functions by cumulative and by own time); profiled runs are
not timed.
"""

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch"
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def write_file(path: Path, prompts: int, k: int, short: bool = False) -> None:
    """The benchmark's prompts (about 1.25 KB each at K=4); `short`: a few words each, no
    id and no metadata, for the memory run of a million prompts."""
    with path.open("w") as out:
        for i in range(prompts):
            if short:
                record = {"prompt": f"Topic {i}?", "completions": [f"Answer {j} to {i}."
                                                                   for j in range(k)]}
            else:
                record = {
                    "id": f"bench-{i}",
                    "prompt": f"Explain, in a few sentences, topic number {i} to a curious "
                              "student.",
                    "completions": [
                        f"Completion {j} for prompt {i}: " + "a reasonably long answer text " * 8
                        for j in range(k)
                    ],
                    "metadata": {"batch": i // 1000},
                }
            out.write(json.dumps(record) + "\n")


def database_url(name: str, label: str = "bench") -> str:
    """A fresh, empty database for `name` (sqlite or postgres), named after `label`."""
    if name == "sqlite":
        db = SCRATCH / f"{label}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{db}"
    import psycopg

    database = "rlhf_bench" if label == "bench" else f"rlhf_bench_{label}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database}")
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + database


def measure(path: Path, k: int, profile: Path | None = None) -> dict:
    """Run in a child process whose DATABASE_URL is set: migrate, then time one import."""
    import django

    django.setup()
    from django.core.management import call_command

    from annotate import services

    call_command("migrate", verbosity=0)
    project = services.project_create(
        created_by=None, slug="bench", name="Bench", criterion="helpfulness",
        completions_per_prompt=k,
    )
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    with path.open("rb") as binary:
        if profiler:
            profiler.enable()
        record = services.prompts_import(project=project, binary=binary, filename=path.name)
        if profiler:
            profiler.disable()
    seconds = time.perf_counter() - started
    if profiler:
        write_profile(profiler, profile)
    return {"prompts": record.prompt_count, "completions": record.completion_count,
            "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def write_profile(profiler: "cProfile.Profile", stem: Path) -> None:
    profiler.dump_stats(f"{stem}.prof")
    with open(f"{stem}.txt", "w") as out:
        for order in ("cumulative", "tottime"):
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(30)


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="a folder for the profiles")
    parser.add_argument("--short", action="store_true",
                        help="short prompts and completions, without ids (the memory run)")
    parser.add_argument("--dir", type=Path, default=SCRATCH, help="where the file is written")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"prompts-{args.prompts}-k{args.k}{'-short' if args.short else ''}.jsonl"
    if args.child:
        profile = args.profile / args.child if args.profile else None
        print(json.dumps(measure(path, args.k, profile)))
        return
    if not path.exists():
        write_file(path, args.prompts, args.k, args.short)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows = [(name, median_run(args, name)) for name in args.databases.split(",")]
    print_table(args, path, rows)


def median_run(args, name: str) -> dict:
    """Import the file `args.repeat` times into fresh databases; the run of median seconds."""
    runs = []
    for _ in range(args.repeat):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings",
               "DATABASE_URL": database_url(name), "VAR_DIR": str(SCRATCH / "var")}
        command = [sys.executable, __file__, "--prompts", str(args.prompts), "--k", str(args.k),
                   "--dir", str(args.dir), "--child", name] + (["--short"] if args.short else [])
        if args.profile:
            command += ["--profile", str(args.profile)]
        child = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                               check=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    middle = statistics.median_low([run["seconds"] for run in runs])
    return next(run for run in runs if run["seconds"] == middle)


def print_table(args, path: Path, rows: list[tuple[str, dict]]) -> None:
    size_mb = path.stat().st_size / 1e6
    print(f"Import of {args.prompts:,} prompts x {args.k} completions ({size_mb:.0f} MB JSONL),"
          f" median of {args.repeat}{' (profiled)' if args.profile else ''}")
    print(f"{'database':<10} {'seconds':>8} {'prompts/s':>10} {'rows/s':>10} {'vs first':>9}"
          f" {'peak RSS MB':>12}")
    first = rows[0][1]["seconds"]
    for name, result in rows:
        seconds = result["seconds"]
        written = result["prompts"] + result["completions"]
        print(f"{name:<10} {seconds:>8.1f} {result['prompts'] / seconds:>10,.0f}"
              f" {written / seconds:>10,.0f} {seconds / first:>8.2f}x"
              f" {result['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
