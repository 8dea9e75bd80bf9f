"""rlhf-studio as a system under the labeler-loop benchmark (see bench/labeler_loop.py).

On PostgreSQL (database `rlhf_bench_labeling` on POSTGRES_URL) or on its embedded default
(SQLite under bench/.scratch/var-sqlite, filesystem broker: no DATABASE_URL, no
CELERY_BROKER_URL), served by gunicorn on 127.0.0.1 in production mode. Setup (migrate, one
project of K=4 completions and N=3 labelers per prompt, one user with an API token per
simulated labeler) runs in a child process through annotate.services; this process never
imports Django. The prompts come in over HTTP, `POST /api/projects/{id}/imports/`, and are
imported by the service a worker runs, in a child process.
"""

import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import loadgen

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch"
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = "rlhf_bench_labeling"
SLUG = "bench-labeling"
K = 4
N = 3


# POST rankings/?next=true: the answer carries the next prompt, one request per ranking (as
# a client of the API would do it). False: GET next-prompt/ before every ranking, as before.
CARRY_NEXT = True


class OursProtocol(loadgen.Protocol):
    """GET next-prompt/ (204: nothing left), then POST rankings/ with one tier a completion;
    with CARRY_NEXT the ranking's answer brings the next prompt, so no GET after the first."""

    def __init__(self, project: int, carry_next: bool | None = None):
        self.project = project
        self.carry_next = CARRY_NEXT if carry_next is None else carry_next

    def next_path(self) -> str:
        return f"/api/projects/{self.project}/next-prompt/"

    def read_next(self, status: int, data: bytes) -> dict | None:
        if status == 204:
            return None
        if status != 200:
            raise loadgen.ProtocolError(f"{status}: {data[:200]!r}")
        return json.loads(data)

    def submit(self, page: dict) -> tuple[str, bytes]:
        shown = [completion["id"] for completion in page["completions"]]
        body = json.dumps({
            "prompt": page["prompt"]["id"],
            "tiers": [[cid] for cid in loadgen.random_order(shown)],
            "idempotency_key": str(uuid.uuid4()), "displayed_order": shown,
            "time_spent_ms": random.randint(2_000, 60_000),
        }).encode()
        query = "?next=true" if self.carry_next else ""
        return f"/api/projects/{self.project}/rankings/{query}", body

    def carried_next(self, data: bytes) -> object:
        if not self.carry_next:
            return loadgen.NOT_CARRIED
        return json.loads(data)["next"]


class Gunicorn:
    """gunicorn in its own session, so it and its workers stop together."""

    def __init__(self, env: dict, workers: int, threads: int, log: Path):
        self.workers, self.threads = workers, threads
        self.port = loadgen.free_port()
        command = [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application",
                   "--bind", f"{loadgen.HOST}:{self.port}", "--workers", str(workers),
                   "--threads", str(threads), "--log-level", "warning"]
        self.log = log.open("ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log,
                                        stderr=self.log, start_new_session=True)
        try:
            loadgen.wait_until_up(self.port, "/healthz/", lambda: self.process.poll() is None,
                                  f"gunicorn (log: {log})", timeout=60)
        except RuntimeError:
            self.stop()
            raise

    @property
    def name(self) -> str:
        kind = "sync" if self.threads == 1 else "gthread"
        return f"{self.workers} workers x {self.threads} threads ({kind})"

    def pids(self) -> list[int]:
        return [self.process.pid, *loadgen.children(self.process.pid)]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


class RlhfStudio:
    """One rlhf-studio deployment: its database, its gunicorn, its checks."""

    def __init__(self, database: str, workers: int = 2, threads: int = 4):
        assert database in ("postgres", "sqlite"), database
        self.database, self.workers, self.threads = database, workers, threads
        self.name = "rlhf-studio, " + ("PostgreSQL" if database == "postgres" else "SQLite")
        self.var_dir = SCRATCH / f"var-{database}"
        self.url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + DB_NAME
        self.server: Gunicorn | None = None

    # --- environment and setup ---

    def env(self) -> dict:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings",
               "VAR_DIR": str(self.var_dir), "LOG_LEVEL": "WARNING"}
        env.pop("CELERY_BROKER_URL", None)  # the filesystem broker, as `make run` has it
        env.pop("DATABASE_URL", None)
        if self.database == "postgres":
            env["DATABASE_URL"] = self.url
        return env

    def prepare(self, users: int) -> None:
        """A fresh database, migrated; the project, its labelers, the server (not timed)."""
        subprocess.run(["rm", "-rf", str(self.var_dir)], check=True)
        self.var_dir.mkdir(parents=True)
        if self.database == "postgres":
            import psycopg

            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {DB_NAME}")
        subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                       env=self.env(), check=True)
        data = self._child("setup", "--users", str(users))
        self.project, self.admin_token, self.tokens = (data["project"], data["admin_token"],
                                                       data["tokens"])
        self.protocol = OursProtocol(self.project)
        self.start()

    def _child(self, part: str, *args: str) -> dict:
        done = subprocess.run([sys.executable, __file__, "--child", part, *args], cwd=ROOT,
                              env=self.env(), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{self.name}: {part} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    # --- serving ---

    def start(self) -> None:
        env = {**self.env(), "DJANGO_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(40),
               "ALLOWED_HOSTS": loadgen.HOST, "SECURE_SSL_REDIRECT": "false", "DEBUG": "false"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.server = Gunicorn(env, self.workers, self.threads,
                               SCRATCH / f"gunicorn-{self.database}.log")

    def restart(self, workers: int, threads: int) -> None:
        self.stop()
        self.workers, self.threads = workers, threads
        self.start()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def server_name(self) -> str:
        return f"gunicorn {self.server.name}"

    def groups(self) -> dict:
        groups = {"server": self.server.pids}
        if self.database == "postgres":
            groups["database"] = loadgen.postgres_pids
        return groups

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # --- the measured operations ---

    def import_prompts(self, jsonl: Path) -> dict:
        """Upload the prompts file through the API, as an admin would (202: stored, queued),
        and import it with the service a worker runs, in a child process; return the seconds
        of the upload and of the import (the child's Django start aside)."""
        boundary = secrets.token_hex(16)
        body = b"".join([
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{jsonl.name}\"\r\nContent-Type: application/jsonl\r\n\r\n".encode(),
            jsonl.read_bytes(), f"\r\n--{boundary}--\r\n".encode(),
        ])
        headers = {"Authorization": f"Token {self.admin_token}",
                   "Content-Type": f"multipart/form-data; boundary={boundary}"}
        started = time.perf_counter()
        status, data = loadgen.request(self.port, "POST", f"/api/projects/{self.project}/imports/",
                                       body, headers)
        upload_seconds = time.perf_counter() - started
        if status != 202:
            raise RuntimeError(f"{self.name}: import answered {status}: {data[:500]!r}")
        queued = json.loads(data)
        worker = self._child("import-run", "--import-id", str(queued["id"]))
        status, data = loadgen.request(self.port, "GET", queued["url"], None,
                                       {"Authorization": f"Token {self.admin_token}"})
        record = json.loads(data)
        if record["status"] != "succeeded":
            raise RuntimeError(f"{self.name}: import {record['status']}: {record['error']}")
        if self.database == "postgres":  # planner statistics, as autovacuum would have them
            self._query("ANALYZE")
        return {"seconds": upload_seconds + worker["seconds"], "upload_seconds": upload_seconds,
                "prompts": record["prompt_count"]}

    def top_up(self, total: int) -> int:
        """Store labeler rankings in bulk until `total` exist (not timed); then, on PostgreSQL,
        refresh the planner's statistics, as autovacuum would within a minute."""
        rankings = self._child("top-up", "--total", str(total))["rankings"]
        if self.database == "postgres":
            self._query("ANALYZE")
        return rankings

    def export(self) -> dict:
        """One export (TRL JSONL + rankings JSONL) built by the service a worker runs, in a
        child process whose resident memory is sampled from just before the build to its end."""
        child = subprocess.Popen([sys.executable, __file__, "--child", "export"], cwd=ROOT,
                                 env=self.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        if child.stdout.readline().strip() != "ready":
            child.wait()
            raise RuntimeError(f"{self.name}: export child did not start")
        with loadgen.RssSampler(child.pid) as rss:
            child.stdin.write("go\n")
            child.stdin.flush()
            line = child.stdout.readline()
            child.wait()
        if child.returncode or not line:
            raise RuntimeError(f"{self.name}: export failed (exit {child.returncode})")
        return {**json.loads(line), "peak_rss_mb": rss.peak, "rss_growth_mb": rss.growth,
                "process": "worker (child process)"}

    # --- checks, in SQL ---

    def _query(self, sql: str) -> list[tuple]:
        if self.database == "postgres":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                cursor = conn.execute(sql)
                return cursor.fetchall() if cursor.description else []
        # Django stores aware datetimes in SQLite as UTC text: compare with the same text.
        now = datetime.now(UTC).strftime("'%Y-%m-%d %H:%M:%S.%f'")
        with sqlite3.connect(f"file:{self.var_dir / 'db.sqlite3'}?mode=ro", uri=True) as conn:
            return conn.execute(sql.replace("now()", now)).fetchall()

    def check(self) -> list[str]:
        return loadgen.violations(CHECKS, self._query)

    def progress(self) -> tuple[int, int]:
        """Prompts, and labeler rankings stored."""
        return self._query("SELECT (SELECT count(*) FROM annotate_prompt), "
                           "(SELECT count(*) FROM annotate_ranking WHERE source = 'labeler')")[0]


CHECKS = {
    "prompt with more labeler rankings than its target": """
        SELECT p.id, p.ranking_count, pr.labelers_per_prompt + p.extra_rankings
        FROM annotate_prompt p JOIN annotate_project pr ON pr.id = p.project_id
        WHERE p.ranking_count > pr.labelers_per_prompt + p.extra_rankings""",
    "ranking_count differs from the labeler rankings stored": """
        SELECT p.id, p.ranking_count, coalesce(r.n, 0)
        FROM annotate_prompt p
        LEFT JOIN (SELECT prompt_id, count(*) AS n FROM annotate_ranking
                   WHERE source = 'labeler' GROUP BY prompt_id) r ON r.prompt_id = p.id
        WHERE p.ranking_count <> coalesce(r.n, 0)""",
    "a labeler ranked a prompt twice": """
        SELECT prompt_id, labeler_id, count(*) FROM annotate_ranking
        WHERE labeler_id IS NOT NULL GROUP BY prompt_id, labeler_id HAVING count(*) > 1""",
    "a labeler holds two assignments of a prompt": """
        SELECT prompt_id, labeler_id, count(*) FROM annotate_assignment
        GROUP BY prompt_id, labeler_id HAVING count(*) > 1""",
    "rankings and ranked assignments disagree": """
        SELECT r.prompt_id, r.labeler_id, a.status FROM annotate_ranking r
        LEFT JOIN annotate_assignment a
               ON a.prompt_id = r.prompt_id AND a.labeler_id = r.labeler_id
        WHERE r.source = 'labeler' AND (a.status IS NULL OR a.status <> 'ranked')""",
    "open leases exceed the slots left": """
        SELECT p.id, p.ranking_count, count(a.id), pr.labelers_per_prompt + p.extra_rankings
        FROM annotate_prompt p JOIN annotate_project pr ON pr.id = p.project_id
        JOIN annotate_assignment a ON a.prompt_id = p.id AND a.status = 'leased'
                                  AND a.expires_at > now()
        GROUP BY p.id, pr.labelers_per_prompt
        HAVING p.ranking_count + count(a.id) > pr.labelers_per_prompt + p.extra_rankings""",
    "a labeler holds two open leases at once": """
        SELECT labeler_id, count(*) FROM annotate_assignment
        WHERE status = 'leased' AND expires_at > now()
        GROUP BY labeler_id HAVING count(*) > 1""",
}


# --- child processes, with Django ---------------------------------------------------------------


def child_setup(users: int) -> dict:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotate import services

    admin = get_user_model().objects.create_user("bench-admin", is_staff=True)
    project = services.project_create(
        created_by=admin, slug=SLUG, name="Bench labeling", criterion="helpfulness",
        completions_per_prompt=K, labelers_per_prompt=N,
    )
    tokens = []
    for i in range(users):
        user = services.member_add(project=project, username=f"labeler-{i:04d}").user
        tokens.append(Token.objects.create(user=user).key)
    return {"project": project.id, "admin_token": Token.objects.create(user=admin).key,
            "tokens": tokens}


def child_top_up(total: int) -> dict:
    """Fill prompts in id order to their target, by labelers who hold no assignment of them,
    in bulk: the rows ranking_submit writes (a ranked assignment, the ranking, the prompt's
    count), minus its per-request checks; the invariants are checked after."""
    from collections import Counter, defaultdict
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from annotate.models import Assignment, Completion, Project, Prompt, Ranking

    project = Project.objects.get(slug=SLUG)
    labelers = list(get_user_model().objects.filter(username__startswith="labeler-")
                    .order_by("username").values_list("id", flat=True))
    now = timezone.now()
    taken, leased = defaultdict(set), Counter()
    for prompt_id, labeler_id, status, expires_at in Assignment.objects.filter(
            prompt__project=project).values_list("prompt_id", "labeler_id", "status",
                                                 "expires_at"):
        taken[prompt_id].add(labeler_id)
        leased[prompt_id] += status == Assignment.Status.LEASED and expires_at > now
    shown = defaultdict(list)
    for prompt_id, completion_id in Completion.objects.filter(prompt__project=project).order_by(
            "prompt_id", "position").values_list("prompt_id", "id"):
        shown[prompt_id].append(completion_id)
    have = Ranking.objects.filter(prompt__project=project, source="labeler").count()
    rng, turn = random.Random(0), 0
    assignments, rankings, prompts = [], [], []
    for prompt in Prompt.objects.filter(project=project).order_by("id"):
        if have >= total:
            break
        slots = (project.labelers_per_prompt + prompt.extra_rankings - prompt.ranking_count
                 - leased[prompt.id])
        if slots <= 0:
            continue
        for labeler_id in labelers[turn:] + labelers[:turn]:
            if slots == 0 or have >= total:
                break
            if labeler_id in taken[prompt.id]:
                continue
            ids = shown[prompt.id]
            assignments.append(Assignment(
                prompt_id=prompt.id, labeler_id=labeler_id, status=Assignment.Status.RANKED,
                seed=rng.randrange(2**31), leased_at=now, closed_at=now,
                expires_at=now + timedelta(minutes=project.lease_minutes)))
            rankings.append(Ranking(
                prompt_id=prompt.id, labeler_id=labeler_id, displayed_order=ids,
                tiers=[[cid] for cid in rng.sample(ids, len(ids))],
                idempotency_key=str(uuid.uuid4()), time_spent_ms=rng.randint(2_000, 60_000)))
            prompt.ranking_count += 1
            slots -= 1
            have += 1
        turn = (turn + project.labelers_per_prompt) % len(labelers)
        prompts.append(prompt)
    with transaction.atomic():
        Assignment.objects.bulk_create(assignments, batch_size=1000)
        Ranking.objects.bulk_create(rankings, batch_size=1000)
        Prompt.objects.bulk_update(prompts, ["ranking_count"], batch_size=1000)
    return {"rankings": Ranking.objects.filter(prompt__project=project, source="labeler")
            .count()}


def child_export() -> None:
    from django.conf import settings

    from annotate import services
    from annotate.models import Project

    project = Project.objects.get(slug=SLUG)
    params = services.ExportParams(formats=("trl-jsonl",))  # TRL JSONL + rankings JSONL
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    export = services.export_create(project=project, params=params, created_by=None,
                                    run_now=True)
    seconds = time.perf_counter() - started
    directory = settings.VAR_DIR / export.directory
    files = [path for path in directory.parent.rglob("*") if path.is_file()]
    print(json.dumps({"seconds": seconds, "status": export.status,
                      "rankings": export.counts["rankings"],
                      "pairs": export.counts["pairs"]["train"] + export.counts["pairs"]["test"],
                      "bytes": sum(path.stat().st_size for path in files)}), flush=True)


def child_import_run(import_id: int) -> dict:
    """What the worker does with the upload's message: the import, timed."""
    from annotate import services

    started = time.perf_counter()
    services.prompt_import_run(import_id)
    return {"seconds": time.perf_counter() - started}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="child processes of bench/labeler_loop.py")
    parser.add_argument("--child", choices=("setup", "top-up", "export", "import-run"),
                        required=True)
    parser.add_argument("--users", type=int)
    parser.add_argument("--total", type=int)
    parser.add_argument("--import-id", type=int)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # this checkout's code, whatever the venv has installed
    import django

    django.setup()
    if args.child == "export":
        child_export()
    elif args.child == "setup":
        print(json.dumps(child_setup(args.users)))
    elif args.child == "import-run":
        print(json.dumps(child_import_run(args.import_id)))
    else:
        print(json.dumps(child_top_up(args.total)))


if __name__ == "__main__":
    main()
