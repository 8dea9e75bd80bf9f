"""Soak: simulated labelers for minutes on end while exports and training jobs run.

    .venv/bin/python bench/soak.py                      # 10 minutes, 60 labelers
    .venv/bin/python bench/soak.py --duration 60        # a quick look

Everything real and on loopback: a fresh PostgreSQL database `rlhf_bench_soak`, gunicorn in
production mode, one Celery worker (queues default and gpu, beat included) on Redis database 9
(flushed first), and a tiny reward model built offline. Then, for --duration seconds:

- --labelers labelers, each its own user and thread, loop: GET next-prompt, POST a ranking,
  wait an exponential gap of mean --interval seconds;
- an admin loops: request an export of everything ranked so far, wait for it, start a reward
  training job on it (the tiny model), wait for it, again;
- every 5 s, the resident memory of the long-lived processes (the gunicorn master and
  workers, the Celery worker and its pool; not a training job's child, which exits).

At the end, after the load stops: one more export, which must hold exactly the rankings in
the database; each export made under load must hold between the rankings there were when it
was requested and when it finished; the labeling invariants in SQL; errors under 0.1%; memory
flat (the last minute's mean within 10% of the second minute's). Prints one table; exits 1
if a check fails.
"""

import argparse
import http.client
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402  (the labelers of the labeler-loop benchmark)
from loadgen import HOST, Labeler, Stats, percentile  # noqa: E402
from rlhf_studio import (  # noqa: E402
    CHECKS,
    POSTGRES_URL,
    ROOT,
    SCRATCH,
    Gunicorn,
    K,
    N,
    OursProtocol,
)

DB_NAME = "rlhf_bench_soak"
BROKER_URL = "redis://127.0.0.1:6379/9"
FOLDER = SCRATCH / "soak"
SAMPLE_EVERY = 5.0
# A reward job on the tiny model: a few seconds of training per thousand pairs on one thread.
TRAIN_PARAMS = {"epochs": 1, "batch_size": 32, "learning_rate": 0.003, "threads": 1,
                "checkpoint_every": 0}


# --- setup (child process, with Django) ---------------------------------------------------


def child_setup(jsonl: Path, users: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotate import services
    from annotate.models import Membership
    from training.ml.tiny import build_tiny_models

    admin = get_user_model().objects.create_user("soak-admin", is_staff=True)
    project = services.project_create(
        created_by=admin, slug="soak", name="Soak", criterion="helpfulness",
        completions_per_prompt=K, labelers_per_prompt=N)
    services.membership_set(project=project, user=admin, role=Membership.Role.ADMIN)
    with jsonl.open("rb") as binary:
        services.prompts_import(project=project, binary=binary, filename=jsonl.name,
                                imported_by=admin)
    tokens = []
    for i in range(users):
        user = services.member_add(project=project, username=f"soak-{i:04d}").user
        tokens.append(Token.objects.create(user=user).key)
    # Jobs name a model of the deployment's catalog (a folder under MODEL_ROOTS, by its path
    # below the root), never a path: the tiny model goes into the catalog.
    root = Path(settings.MODEL_ROOTS[0])
    models = build_tiny_models(root / "tiny")
    return {"project": project.id, "tokens": tokens, "admin": Token.objects.create(user=admin).key,
            "reward_base": models["reward"].relative_to(root).as_posix()}


def setup(prompts: int, users: int) -> tuple[str, dict]:
    import psycopg
    from import_prompts import write_file

    FOLDER.mkdir(parents=True, exist_ok=True)
    jsonl = SCRATCH / f"prompts-{prompts}-k{K}.jsonl"
    if not jsonl.exists():
        write_file(jsonl, prompts, K)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + DB_NAME
    env = app_env(url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                   env=env, check=True)
    child = subprocess.run([sys.executable, __file__, "--child-setup", str(jsonl),
                            "--child-users", str(users)],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    if child.returncode:
        sys.exit(f"setup failed:\n{child.stderr}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return url, json.loads(child.stdout.strip().splitlines()[-1])


def app_env(url: str) -> dict[str, str]:
    """The environment of every process here: production settings, this database and broker."""
    env = {**os.environ, "DJANGO_ENV": "production", "SECRET_KEY": SECRET_KEY,
           "ALLOWED_HOSTS": HOST, "SECURE_SSL_REDIRECT": "false", "DATABASE_URL": url,
           "CELERY_BROKER_URL": BROKER_URL, "VAR_DIR": str(SCRATCH / "var"),
           "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "config.settings"}
    return env


SECRET_KEY = secrets.token_urlsafe(40)


class Worker:
    """A Celery worker with beat, in its own session so its pool stops with it."""

    def __init__(self, url: str):
        subprocess.run(["redis-cli", "-u", BROKER_URL, "FLUSHDB"], check=True,
                       capture_output=True)
        celery = Path(sys.executable).parent / "celery"
        self.log_path = FOLDER / "worker.log"
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(celery), "-A", "config", "worker", "-Q", "default,gpu", "--concurrency", "2",
             "-B", "--loglevel", "WARNING"],
            cwd=ROOT, env=app_env(url), stdout=self.log, stderr=self.log,
            start_new_session=True)

    def pids(self) -> list[int]:
        pids = [self.process.pid, *loadgen.children(self.process.pid)]
        # The pool's children run tasks; a training job's own child process is not counted.
        return [pid for pid in pids if not _is_training_child(pid)]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def _is_training_child(pid: int) -> bool:
    try:
        return b"training.ml.run" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def rss_mb(pids: list[int]) -> float:
    return sum(loadgen.rss_mb(pid) for pid in pids)


def check_invariants(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return loadgen.violations(CHECKS, lambda sql: conn.execute(sql).fetchall())


# --- the admin: exports and training jobs, one after another ----------------------------------


class Admin:
    def __init__(self, port: int, project: int, token: str, reward_base: str, url: str):
        self.port, self.project, self.url = port, project, url
        self.reward_base = reward_base
        self.headers = {"Authorization": f"Token {token}", "Host": HOST,
                        "Content-Type": "application/json"}
        self.exports: list[dict] = []  # {id, before, after, rankings}
        self.jobs: list[dict] = []  # {id, status, seconds}
        self.errors: list[str] = []

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        try:
            conn.request(method, path, body=json.dumps(body) if body else None,
                         headers=self.headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else {}
        finally:
            conn.close()

    def wait(self, path: str, deadline: float) -> dict:
        while True:
            status, data = self.call("GET", path)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {data}")
            if data["status"] in ("succeeded", "failed", "cancelled"):
                return data
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} still {data['status']} at the deadline")
            time.sleep(1)

    def export(self, seed: int, deadline: float) -> dict:
        before = ranking_count(self.url)
        status, data = self.call("POST", f"/api/projects/{self.project}/exports/",
                                 {"min_votes": 2, "seed": seed, "formats": ["trl-jsonl"]})
        if status != 202:
            raise RuntimeError(f"export request: {status} {data}")
        done = self.wait(f"/api/exports/{data['id']}/", deadline)
        record = {"id": data["id"], "status": done["status"], "before": before,
                  "after": ranking_count(self.url), "rankings": done["counts"].get("rankings")}
        self.exports.append(record)
        return record

    def train(self, export_id: int, deadline: float) -> None:
        started = time.monotonic()
        status, data = self.call("POST", "/api/training-jobs/", {
            "project": self.project, "kind": "reward", "export": export_id,
            "base_model": self.reward_base, "params": TRAIN_PARAMS})
        if status not in (200, 201):
            raise RuntimeError(f"training request: {status} {data}")
        done = self.wait(f"/api/training-jobs/{data['id']}/", deadline)
        self.jobs.append({"id": data["id"], "status": done["status"],
                          "seconds": time.monotonic() - started})

    def loop(self, stop: threading.Event, deadline: float) -> None:
        seed = 0
        while not stop.is_set():
            seed += 1
            try:
                record = self.export(seed, deadline)
                if record["status"] == "succeeded" and not stop.is_set():
                    self.train(record["id"], deadline)
            except (OSError, RuntimeError, KeyError) as exc:
                self.errors.append(repr(exc))
                time.sleep(2)


def ranking_count(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM annotate_ranking "
                            "WHERE source = 'labeler'").fetchone()[0]


# --- labelers -----------------------------------------------------------------------------------


def labelers_loop(port: int, project: int, tokens: list[str], interval: float,
                  stop: threading.Event) -> tuple[Stats, list[threading.Thread]]:
    stats = Stats()

    def run(token: str, rng: random.Random) -> None:
        labeler = Labeler(port, OursProtocol(project), token, stats)
        while not stop.is_set():
            if not labeler.iteration():
                break
            stop.wait(rng.expovariate(1 / interval))
        labeler.close()

    threads = [threading.Thread(target=run, args=(token, random.Random(i)), daemon=True)
               for i, token in enumerate(tokens)]
    for thread in threads:
        thread.start()
    return stats, threads


def sample_memory(server: Gunicorn, worker: Worker, stop: threading.Event,
                  samples: list[tuple[float, float, float]]) -> None:
    started = time.monotonic()
    while not stop.wait(SAMPLE_EVERY):
        samples.append((time.monotonic() - started, rss_mb(server.pids()), rss_mb(worker.pids())))


def window_mean(samples: list, start: float, end: float, column: int) -> float:
    values = [row[column] for row in samples if start <= row[0] < end]
    return sum(values) / len(values) if values else float("nan")


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--labelers", type=int, default=60)
    parser.add_argument("--interval", type=float, default=2.0,
                        help="mean seconds a labeler waits between rankings")
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--child-setup", help=argparse.SUPPRESS)
    parser.add_argument("--child-users", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_setup:
        print(json.dumps(child_setup(Path(args.child_setup), args.child_users)))
        return

    began = time.perf_counter()
    print(f"setup: {args.prompts:,} prompts, {args.labelers} labelers ...", file=sys.stderr)
    url, data = setup(args.prompts, args.labelers)
    server = Gunicorn(app_env(url), workers=2, threads=4, log=FOLDER / "gunicorn.log")
    worker = Worker(url)
    stop, samples = threading.Event(), []
    admin = Admin(server.port, data["project"], data["admin"], data["reward_base"], url)
    deadline = time.monotonic() + args.duration + 600
    try:
        stats, threads = labelers_loop(server.port, data["project"], data["tokens"],
                                       args.interval, stop)
        background = [threading.Thread(target=admin.loop, args=(stop, deadline), daemon=True),
                      threading.Thread(target=sample_memory, args=(server, worker, stop, samples),
                                       daemon=True)]
        for thread in background:
            thread.start()
        started = time.perf_counter()
        time.sleep(args.duration)
        stop.set()
        wall = time.perf_counter() - started
        for thread in threads + background:
            thread.join(600)  # the admin finishes the job it waits for
        final = admin.export(seed=0, deadline=time.monotonic() + 600)
        final_count = ranking_count(url)
    finally:
        server.stop()
        worker.stop()
    report(args, stats, wall, samples, admin, final, final_count, check_invariants(url),
           time.perf_counter() - began)


def report(args, stats: Stats, wall: float, samples: list, admin: Admin, final: dict,
           final_count: int, violations: list[str], total: float) -> None:
    requests = len(stats.next_ms) + stats.rankings + stats.errors
    error_rate = stats.errors / max(requests, 1)
    minute = min(60.0, wall / 5)
    last = samples[-1][0] if samples else 0.0
    early = [window_mean(samples, minute, 2 * minute, col) for col in (1, 2)]
    late = [window_mean(samples, last - minute, last + 1, col) for col in (1, 2)]
    growth = [(b - a) / a for a, b in zip(early, late, strict=True)]
    peak = [max((row[col] for row in samples), default=float("nan")) for col in (1, 2)]
    jobs_ok = sum(job["status"] == "succeeded" for job in admin.jobs)
    exports_ok = [e for e in admin.exports[:-1] if e["status"] == "succeeded"]
    exports_in_bounds = sum(e["before"] <= e["rankings"] <= e["after"] for e in exports_ok)
    checks = {
        "errors under 0.1%": error_rate < 0.001,
        "gunicorn memory flat (within 10%)": growth[0] < 0.10,
        "worker memory flat (within 10%)": growth[1] < 0.10,
        "final export holds every ranking": final["rankings"] == final_count,
        "exports under load hold what was there": exports_in_bounds == len(exports_ok),
        "every training job succeeded": jobs_ok == len(admin.jobs) > 0,
        "labeling invariants": not violations,
    }
    print(f"Soak: {wall:.0f} s, {args.labelers} labelers each ranking every {args.interval:g} s "
          f"on average, {args.prompts:,} prompts x {K}, N={N}; PostgreSQL, Redis, gunicorn "
          f"2x4, one Celery worker")
    print(f"{'measure':<48} | value")
    print("-" * 70)
    rows = [
        ("rankings stored / per second", f"{stats.rankings:,} / {stats.rankings / wall:.1f}"),
        ("requests / errors / error rate",
         f"{requests:,} / {stats.errors} / {100 * error_rate:.3f}%"),
        ("next-prompt p50/p95/p99 ms",
         "/".join(f"{percentile(stats.next_ms, p):.0f}" for p in (50, 95, 99))),
        ("submit p50/p95/p99 ms",
         "/".join(f"{percentile(stats.submit_ms, p):.0f}" for p in (50, 95, 99))),
        ("exports under load (ok / in bounds)", f"{len(exports_ok)} / {exports_in_bounds}"),
        ("training jobs (succeeded / all)", f"{jobs_ok} / {len(admin.jobs)}"),
        ("training job seconds, median",
         f"{percentile([j['seconds'] for j in admin.jobs], 50):.0f}"),
        ("final export rankings / in the database", f"{final['rankings']} / {final_count}"),
        ("gunicorn RSS MB: minute 2 / last minute / peak",
         f"{early[0]:.0f} / {late[0]:.0f} / {peak[0]:.0f} ({100 * growth[0]:+.1f}%)"),
        ("worker RSS MB: minute 2 / last minute / peak",
         f"{early[1]:.0f} / {late[1]:.0f} / {peak[1]:.0f} ({100 * growth[1]:+.1f}%)"),
    ]
    for name, value in rows:
        print(f"{name:<48} | {value}")
    for sample in stats.error_samples + admin.errors[:5] + violations:
        print(f"  {sample}")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"total {total:.0f} s")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
