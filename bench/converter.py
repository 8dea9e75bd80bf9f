"""Benchmark: rankings -> pairwise consensus -> TRL JSONL, in-process and from PostgreSQL.

    .venv/bin/python bench/converter.py [--prompts 100000] [--labelers 3] [--k 4]

In-process: merge_votes and consensus_rankings on N x L random rankings held in memory.
End to end: a fresh PostgreSQL database `rlhf_bench_export` with the same rankings, then one
export (TRL JSONL, raw and consensus rankings, card) through the service a worker runs,
streamed from the database. Each part runs in its own child process so its peak memory
(max RSS) is its own. Prints one table.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch"
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
sys.path.insert(0, str(ROOT))


def random_orders(prompts: int, labelers: int, k: int, seed: int = 0):
    rng = random.Random(seed)
    for prompt in range(prompts):
        for labeler in range(labelers):
            order = list(range(k))
            rng.shuffle(order)
            yield prompt, labeler, order


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_process(args) -> dict:
    from annotate.consensus import LabeledRanking, consensus_rankings, merge_votes

    rankings = [
        LabeledRanking(prompt, f"labeler-{labeler}", [[prompt * args.k + i] for i in order])
        for prompt, labeler, order in random_orders(args.prompts, args.labelers, args.k)
    ]
    started = time.perf_counter()
    verdicts = merge_votes(rankings, min_votes=2, min_agreement=0.66)
    merged = time.perf_counter()
    consensus = consensus_rankings(rankings)
    done = time.perf_counter()
    return {"rankings": len(rankings), "pairs": len(verdicts), "consensus": len(consensus),
            "merge_s": merged - started, "consensus_s": done - merged,
            "peak_rss_mb": peak_rss_mb()}


def setup_database(args) -> None:
    """Child process: migrate, then write prompts, completions and rankings in bulk."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotate import services
    from annotate.models import Completion, Prompt, Ranking

    call_command("migrate", verbosity=0)
    project = services.project_create(created_by=None, slug="bench", name="Bench",
                                      criterion="helpfulness", completions_per_prompt=args.k,
                                      labelers_per_prompt=args.labelers)
    users = [get_user_model().objects.create(username=f"labeler{i}")
             for i in range(args.labelers)]
    batch = 5000
    for start in range(0, args.prompts, batch):
        prompts = Prompt.objects.bulk_create(
            Prompt(project=project, text=f"Explain topic {i} to a curious student.",
                   ranking_count=args.labelers)
            for i in range(start, min(start + batch, args.prompts))
        )
        completions = Completion.objects.bulk_create(
            Completion(prompt=prompt, position=j, text=f"Answer {j}: " + "some text " * 20)
            for prompt in prompts for j in range(args.k)
        )
        rng = random.Random(start)
        rankings = []
        for n, prompt in enumerate(prompts):
            ids = [c.id for c in completions[n * args.k:(n + 1) * args.k]]
            for user in users:
                rng.shuffle(ids)
                rankings.append(Ranking(prompt=prompt, labeler=user, tiers=[[i] for i in ids]))
        Ranking.objects.bulk_create(rankings)
    from django.db import connection

    with connection.cursor() as cursor:  # as autovacuum would a minute after the load
        cursor.execute("ANALYZE")


def end_to_end(args) -> dict:
    """Child process: one export of the whole project, streamed from PostgreSQL."""
    import django

    django.setup()
    from annotate import services
    from annotate.models import Project

    project = Project.objects.get(slug="bench")
    params = services.ExportParams(min_votes=2, min_agreement=0.66, formats=("trl-jsonl",))
    started = time.perf_counter()
    export = services.export_create(project=project, params=params, created_by=None,
                                    run_now=True)
    seconds = time.perf_counter() - started
    return {"rankings": export.counts["rankings"],
            "pairs": export.counts["pairs"]["train"] + export.counts["pairs"]["test"],
            "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "status": export.status}


def run_child(part: str, args, env: dict) -> dict:
    command = [sys.executable, __file__, "--child", part, "--prompts", str(args.prompts),
               "--labelers", str(args.labelers), "--k", str(args.k)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{part} failed:\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def fresh_database() -> str:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS rlhf_bench_export")
        conn.execute("CREATE DATABASE rlhf_bench_export")
    return POSTGRES_URL.rsplit("/", 1)[0] + "/rlhf_bench_export"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--labelers", type=int, default=3)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--child", choices=("in-process", "setup", "end-to-end"))
    args = parser.parse_args()
    if args.child:
        part = {"in-process": in_process, "setup": setup_database, "end-to-end": end_to_end}
        print(json.dumps(part[args.child](args) or {}))
        return
    SCRATCH.mkdir(parents=True, exist_ok=True)
    base_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings",
                "VAR_DIR": str(SCRATCH / "var-converter"), "LOG_LEVEL": "WARNING"}
    memory = run_child("in-process", args, base_env)
    db_env = {**base_env, "DATABASE_URL": fresh_database()}
    started = time.perf_counter()
    run_child("setup", args, db_env)
    setup_s = time.perf_counter() - started
    export = run_child("end-to-end", args, db_env)
    total = args.prompts * args.labelers
    print(f"Converter: {total:,} rankings ({args.prompts:,} prompts x {args.labelers} labelers, "
          f"K={args.k}); database setup took {setup_s:.0f} s")
    print(f"{'part':<34} {'seconds':>8} {'rankings/s':>11} {'pairs':>9} {'peak RSS MB':>12}")
    merge_s = memory["merge_s"]
    both_s = merge_s + memory["consensus_s"]
    print(f"{'in-process merge_votes':<34} {merge_s:>8.2f} {total / merge_s:>11,.0f} "
          f"{memory['pairs']:>9,} {memory['peak_rss_mb']:>12.0f}")
    print(f"{'in-process merge + consensus':<34} {both_s:>8.2f} {total / both_s:>11,.0f} "
          f"{memory['pairs']:>9,} {memory['peak_rss_mb']:>12.0f}")
    print(f"{'PostgreSQL -> TRL JSONL export':<34} {export['seconds']:>8.2f} "
          f"{total / export['seconds']:>11,.0f} {export['pairs']:>9,} "
          f"{export['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
