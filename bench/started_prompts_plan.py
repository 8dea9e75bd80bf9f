"""EXPLAIN (ANALYZE, BUFFERS) of next-prompt's candidate queries on PostgreSQL (issue 19).

    .venv/bin/python bench/started_prompts_plan.py [--url postgres://postgres@127.0.0.1:5432/x]

A fresh database (recreated), migrated; one project of --prompts prompts (N=3) in the state
of a labeler loop a third of the way through: a third of the prompts ranked 3 times, 60
started (ranked once or twice), 40 leased to other labelers, 5 asked for extra rankings, and
the asking labeler done with 300. Then the plans of BUSY_CANDIDATES, PART_RANKED_CANDIDATES
and UNTOUCHED_CANDIDATES with that labeler's values, each run once to warm the cache first.
"""

import argparse
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def recreate(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("CELERY_BROKER_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                   env=env, check=True)


def populate(prompts: int) -> tuple[int, int]:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from annotate.models import Assignment, Project, Prompt

    now = timezone.now()
    project = Project.objects.create(name="plan", slug="plan", labelers_per_prompt=3)
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"labeler{i}") for i in range(50)])
    me, others = users[0], users[1:]
    rows = [Prompt(project=project, text=f"prompt {i}") for i in range(prompts)]
    full, started, leased = prompts // 3, 60, 40
    for i, prompt in enumerate(rows):
        if i < full:
            prompt.ranking_count = 3
        elif i < full + started:
            prompt.ranking_count = 1 + i % 2
        if full + started + leased <= i < full + started + leased + 5:
            prompt.extra_rankings = 1
    rows = Prompt.objects.bulk_create(rows)
    closed = {"leased_at": now - timedelta(minutes=5), "expires_at": now + timedelta(minutes=25),
              "closed_at": now, "seed": 1}
    assignments = []
    for i, prompt in enumerate(rows[: full + started]):
        for k in range(prompt.ranking_count):
            labeler = me if i < 300 and k == 0 else others[(i + k) % len(others)]
            assignments.append(Assignment(prompt=prompt, labeler=labeler, status="ranked",
                                          **closed))
    for i, prompt in enumerate(rows[full + started: full + started + leased]):
        assignments.append(Assignment(
            prompt=prompt, labeler=others[i % len(others)], seed=1,
            leased_at=now - timedelta(minutes=1), expires_at=now + timedelta(minutes=29)))
    Assignment.objects.bulk_create(assignments, batch_size=5000)
    return project.id, me.id


def explain(name: str, compiled, generic: bool = False, **values) -> None:
    from django.db import connection, transaction

    from annotate.compiled import numbered_placeholders

    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = compiled.statement(**values)  # the SQL the app runs, constants written in
        cursor.execute(sql, params)
        if generic:
            # The plan PostgreSQL may settle on for a prepared statement after 5 runs
            # (plan_cache_mode = auto): planned once for any values. EXPLAIN of a statement
            # with bound values plans for those values, so PREPARE / EXECUTE it by name.
            numbered = numbered_placeholders(sql)
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cursor.execute(f"PREPARE plan_check AS {numbered}")
            values_sql = connection.ops.compose_sql(", ".join(["%s"] * len(params)), params)
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE plan_check({values_sql})")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            cursor.execute("DEALLOCATE plan_check")
        else:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        sql = connection.ops.compose_sql(sql, params)  # cursor.mogrify: client binding only
    print(f"-- {name}\n{sql}\n\n{plan}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgres://postgres@127.0.0.1:5432/bench_started_plan")
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--generic", action="store_true",
                        help="the generic plans (PostgreSQL's choice for a prepared statement)")
    args = parser.parse_args()
    recreate(args.url)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": args.url})
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from annotate.services.labeling import (
        BUSY_CANDIDATES,
        PART_RANKED_CANDIDATES,
        UNTOUCHED_CANDIDATES,
    )

    project_id, labeler_id = populate(args.prompts)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    ids = {"project_id": project_id, "labeler_id": labeler_id, "now": timezone.now()}
    explain("busy prompts", BUSY_CANDIDATES, args.generic, **ids, n=3)
    explain("part-ranked prompts", PART_RANKED_CANDIDATES, args.generic, **ids, n=3)
    explain("untouched prompts", UNTOUCHED_CANDIDATES, args.generic, **ids)


if __name__ == "__main__":
    main()
