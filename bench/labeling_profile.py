"""Profile next-prompt and submit through Django's test client in one process (no server):
SQL queries per request and where the Python time goes (cProfile).

    .venv/bin/python bench/labeling_profile.py [--postgres URL] [--iterations 300] [--top 40]
        [--ranked 0.5]   # half the prompts fully ranked first: a project later in its life

Production settings, 2,000 prompts with 4 completions, 4 labelers; the first 20 rankings warm
up and are not counted. With --sql the queries of one request of each kind are printed.
"""

import argparse
import cProfile
import os
import pstats
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path


def setup(database_url: str) -> None:
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_ENV": "production",
                       "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "testserver", "DEBUG": "false",
                       "SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "WARNING",
                       "VAR_DIR": tempfile.mkdtemp(prefix="bench-profile-")})
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.pop("DATABASE_URL", None)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()


def ranked_before(project, labelers: list, fraction: float) -> None:
    """The first `fraction` of the prompts (by id) ranked by 3 of the labelers each: their
    assignments closed as ranked and the prompts' ranking_count at N, as a loop leaves them
    (the rankings' rows themselves are not needed by next-prompt or submit)."""
    from datetime import timedelta

    from django.utils import timezone

    from annotate.models import Assignment, Prompt

    now = timezone.now()
    ids = list(Prompt.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    ids = ids[: int(len(ids) * fraction)]
    Assignment.objects.bulk_create(
        [Assignment(prompt_id=pid, labeler=labelers[(i + k) % len(labelers)], status="ranked",
                    seed=1, leased_at=now - timedelta(minutes=5), expires_at=now, closed_at=now)
         for i, pid in enumerate(ids) for k in range(3)], batch_size=2000)
    Prompt.objects.filter(id__in=ids).update(ranking_count=3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="", help="a database URL (recreated)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sql", action="store_true")
    parser.add_argument("--no-profile", action="store_true", help="CPU time without cProfile")
    parser.add_argument("--jsonl", default="/tmp/bench-prompts-2000-k4.jsonl")
    parser.add_argument("--ranked", type=float, default=0.0,
                        help="fraction of the prompts fully ranked (N=3) before the run: a "
                             "project later in its life")
    args = parser.parse_args()
    if args.postgres:
        import psycopg

        base, name = args.postgres.rsplit("/", 1)
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
    if not Path(args.jsonl).exists():
        sys.path.insert(0, str(Path(__file__).parent))
        from import_prompts import write_file

        write_file(Path(args.jsonl), 2000, 4)
    setup(args.postgres)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from rest_framework.authtoken.models import Token

    from annotate import services

    call_command("migrate", verbosity=0)
    admin = get_user_model().objects.create_user("bench-admin", is_staff=True)
    project = services.project_create(created_by=admin, slug="bench", name="Bench",
                                      criterion="helpfulness", completions_per_prompt=4,
                                      labelers_per_prompt=3)
    with open(args.jsonl, "rb") as binary:
        services.prompts_import(project=project, binary=binary, filename="p.jsonl",
                                imported_by=admin)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    random.seed(0)
    clients = []
    for i in range(4):
        user = services.member_add(project=project, username=f"labeler-{i}", password="x" * 12).user
        client = Client(HTTP_AUTHORIZATION="Token " + Token.objects.create(user=user).key)
        client.user = user
        clients.append(client)
    if args.ranked:
        ranked_before(project, [c.user for c in clients], args.ranked)
    base = f"/api/projects/{project.id}/"
    counts = {"next": [], "submit": []}
    cpu = {"next": 0.0, "submit": 0.0}

    def one(client, count: bool, show: bool = False) -> None:
        c0 = time.process_time()
        with CaptureQueriesContext(connection) as next_queries:
            answer = client.get(base + "next-prompt/")
        c1 = time.process_time()
        assert answer.status_code == 200, answer.status_code
        page = answer.json()
        shown = [c["id"] for c in page["completions"]]
        body = {"prompt": page["prompt"]["id"], "tiers": [[c] for c in random.sample(shown, 4)],
                "idempotency_key": str(uuid.uuid4()), "displayed_order": shown,
                "time_spent_ms": 5000}
        with CaptureQueriesContext(connection) as submit_queries:
            answer = client.post(base + "rankings/", body, content_type="application/json")
        c2 = time.process_time()
        assert answer.status_code == 201, (answer.status_code, answer.content[:300])
        if show:
            for label, queries in (("next", next_queries), ("submit", submit_queries)):
                print(f"--- {label}: {len(queries)} queries")
                for q in queries.captured_queries:
                    print("   ", q["sql"][:300])
        if count:
            counts["next"].append(len(next_queries))
            counts["submit"].append(len(submit_queries))
            cpu["next"] += c1 - c0
            cpu["submit"] += c2 - c1

    for i in range(20):
        one(clients[i % 4], False, show=args.sql and i == 19)
    profiler = cProfile.Profile()
    if not args.no_profile:
        profiler.enable()
    for i in range(args.iterations):
        one(clients[i % 4], True)
    profiler.disable()
    n = args.iterations
    print(f"{connection.vendor}: queries next {sum(counts['next']) / n:.2f} "
          f"({min(counts['next'])}-{max(counts['next'])}), submit "
          f"{sum(counts['submit']) / n:.2f}; CPU ms{'' if args.no_profile else ' (cProfile)'} next "
          f"{1000 * cpu['next'] / n:.1f}, submit {1000 * cpu['submit'] / n:.1f}")
    if not args.no_profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
