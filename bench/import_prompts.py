"""Benchmark: import N prompts with K completions each, on SQLite and on PostgreSQL, in one run.

    .venv/bin/python bench/import_prompts.py [--prompts N] [--k K] [--databases sqlite,postgres]

Each database is created fresh (SQLite in bench/.scratch, PostgreSQL as database `rlhf_bench`
on POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres), migrated, and given one
project; then the same generated JSONL file is imported through the same service that
`manage.py import_prompts` calls. Every database runs in its own process, so Django's settings
are read fresh. Prints one table.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch"
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def write_file(path: Path, prompts: int, k: int) -> None:
    with path.open("w") as out:
        for i in range(prompts):
            record = {
                "id": f"bench-{i}",
                "prompt": f"Explain, in a few sentences, topic number {i} to a curious student.",
                "completions": [
                    f"Completion {j} for prompt {i}: " + "a reasonably long answer text " * 8
                    for j in range(k)
                ],
                "metadata": {"batch": i // 1000},
            }
            out.write(json.dumps(record) + "\n")


def database_url(name: str) -> str:
    if name == "sqlite":
        db = SCRATCH / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{db}"
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS rlhf_bench")
        conn.execute("CREATE DATABASE rlhf_bench")
    return POSTGRES_URL.rsplit("/", 1)[0] + "/rlhf_bench"


def measure(path: Path, k: int) -> dict:
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
    started = time.perf_counter()
    with path.open("rb") as binary:
        record = services.prompts_import(project=project, binary=binary, filename=path.name)
    seconds = time.perf_counter() - started
    return {"prompts": record.prompt_count, "completions": record.completion_count,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = SCRATCH / f"prompts-{args.prompts}-k{args.k}.jsonl"
    if args.child:
        print(json.dumps(measure(path, args.k)))
        return
    if not path.exists():
        write_file(path, args.prompts, args.k)
    size_mb = path.stat().st_size / 1e6
    rows = []
    for name in args.databases.split(","):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings",
               "DATABASE_URL": database_url(name), "VAR_DIR": str(SCRATCH / "var")}
        child = subprocess.run(
            [sys.executable, __file__, "--prompts", str(args.prompts), "--k", str(args.k),
             "--child", name], cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append((name, result))
    print(f"Import of {args.prompts:,} prompts x {args.k} completions ({size_mb:.0f} MB JSONL)")
    print(f"{'database':<10} {'seconds':>8} {'prompts/s':>10} {'rows/s':>10} {'vs first':>9}")
    first = rows[0][1]["seconds"]
    for name, result in rows:
        seconds = result["seconds"]
        written = result["prompts"] + result["completions"]
        print(f"{name:<10} {seconds:>8.1f} {result['prompts'] / seconds:>10,.0f}"
              f" {written / seconds:>10,.0f} {seconds / first:>8.2f}x")


if __name__ == "__main__":
    main()
