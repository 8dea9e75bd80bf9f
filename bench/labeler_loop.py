"""Benchmark: the labeler loop (GET next-prompt, POST a ranking) over HTTP, against gunicorn.

    .venv/bin/python bench/labeler_loop.py [--duration 20] [--open-duration 60] [--prompts 10000]
    .venv/bin/python bench/labeler_loop.py --duration 5 --open-duration 15 --prompts 2000  # quick

Creates a fresh PostgreSQL database `rlhf_bench_labeling` on POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/postgres), migrates it with `manage.py migrate`, and sets up
through annotate.services one project (K=4 completions, N=3 labelers per prompt) with --prompts
prompts imported from a generated JSONL file, and one labeler with an API token per simulated
labeler. Then, against gunicorn on 127.0.0.1 in production mode:

- trials: a short closed loop at the highest concurrency for each gunicorn configuration in
  --configs; the one with the most rankings/s runs everything below;
- closed loop at each of --concurrency (default 1, 8, 32) for --duration seconds: every
  labeler is its own user and thread with a keep-alive connection, no think time;
- open loop: --open-labelers labelers (default 200), each starting a next-prompt + submit on a
  schedule with exponential gaps of mean --open-interval seconds (default 10), drawn from the
  clock, so a slow server does not lower the offered load.

After every run the labeling invariants are checked in SQL. Setup runs in a child process;
this process never imports Django. Prints one table; exits 1 if an invariant is violated.
"""

import argparse
import http.client
import json
import os
import random
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch"
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = "rlhf_bench_labeling"
K = 4
N = 3
HOST = "127.0.0.1"


# --- setup (child process, with Django) ---------------------------------------------------


def child_setup(jsonl: Path, users: int) -> dict:
    sys.path.insert(0, str(ROOT))  # this checkout's code, whatever the venv has installed
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotate import services

    admin = get_user_model().objects.create_user("bench-admin", is_staff=True)
    project = services.project_create(
        created_by=admin, slug="bench-labeling", name="Bench labeling", criterion="helpfulness",
        completions_per_prompt=K, labelers_per_prompt=N,
    )
    with jsonl.open("rb") as binary:
        record = services.prompts_import(project=project, binary=binary, filename=jsonl.name,
                                         imported_by=admin)
    tokens = []
    for i in range(users):
        user, _ = services.labeler_add(project=project, username=f"labeler-{i:04d}")
        tokens.append(Token.objects.create(user=user).key)
    return {"project": project.id, "prompts": record.prompt_count, "tokens": tokens}


def database_url() -> str:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + DB_NAME


def setup(prompts: int, users: int) -> tuple[str, dict]:
    sys.path.insert(0, str(Path(__file__).parent))
    from import_prompts import write_file  # same generated file as the import benchmark

    SCRATCH.mkdir(parents=True, exist_ok=True)
    jsonl = SCRATCH / f"prompts-{prompts}-k{K}.jsonl"
    if not jsonl.exists():
        write_file(jsonl, prompts, K)
    url = database_url()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": url,
           "VAR_DIR": str(SCRATCH / "var"), "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                   env=env, check=True)
    child = subprocess.run(
        [sys.executable, __file__, "--child-setup", str(jsonl), "--child-users", str(users)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    if child.returncode:
        sys.exit(f"setup failed:\n{child.stderr}")
    import psycopg

    # Planner statistics, as autovacuum would have them a minute after an import.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return url, json.loads(child.stdout.strip().splitlines()[-1])


# --- gunicorn ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn in its own session, so it and its workers stop together."""

    def __init__(self, url: str, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        self.port = free_port()
        gunicorn = Path(sys.executable).parent / "gunicorn"
        command = [str(gunicorn), "config.wsgi:application", "--bind", f"{HOST}:{self.port}",
                   "--workers", str(workers), "--threads", str(threads),
                   "--log-level", "warning"]
        env = {**os.environ, "DJANGO_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(40),
               "ALLOWED_HOSTS": HOST, "SECURE_SSL_REDIRECT": "false", "DEBUG": "false",
               "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "VAR_DIR": str(SCRATCH / "var")}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.log = (SCRATCH / "gunicorn.log").open("ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log,
                                        stderr=self.log, start_new_session=True)
        self._wait_healthy()

    @property
    def name(self) -> str:
        kind = "sync" if self.threads == 1 else "gthread"
        return f"{self.workers} workers x {self.threads} threads ({kind})"

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"gunicorn exited with {self.process.returncode}; see "
                         f"{SCRATCH / 'gunicorn.log'}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
                conn.request("GET", "/healthz/", headers={"Host": HOST})
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit("gunicorn did not answer /healthz/ with 200 in time")

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


# --- CPU accounting from /proc ----------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields and int(fields[1]) == parent:
                found.append(int(entry))
    return found


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        fields = proc_stat(pid)
        if fields:
            found[pid] = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    return found


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_by_pid(pids).values())


def postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "postgres":
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def host_busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICK


class CpuMeter:
    """Average cores busy in this client, the gunicorn processes, PostgreSQL, and the host.

    PostgreSQL backends come and go with connections; one that started during the run counts
    from zero, one that ended during it is missed (connections persist: CONN_MAX_AGE=60).
    """

    def __init__(self, server: Server):
        self.server = server
        self.start = self._sample()

    def _sample(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"wall": time.perf_counter(), "client": usage.ru_utime + usage.ru_stime,
                "server": cpu_seconds(self.server.pids()), "pg": cpu_by_pid(postgres_pids()),
                "host": host_busy_seconds()}

    def stop(self) -> dict:
        end = self._sample()
        wall = end["wall"] - self.start["wall"]
        used = {name: end[name] - self.start[name] for name in ("client", "server", "host")}
        used["pg"] = sum(cpu - self.start["pg"].get(pid, 0.0) for pid, cpu in end["pg"].items())
        return {name: seconds / wall for name, seconds in used.items()}


# --- the simulated labelers -------------------------------------------------------------------


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.next_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.lag_ms: list[float] = []
        self.rankings = 0
        self.done_labelers = 0
        self.errors = 0
        self.error_samples: list[str] = []

    def error(self, what: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(what)


class Labeler:
    """One user with one keep-alive connection; reconnects when the server closed it."""

    def __init__(self, port: int, project: int, token: str, stats: Stats, keepalive: float):
        self.port, self.stats, self.keepalive = port, stats, keepalive
        self.headers = {"Authorization": f"Token {token}", "Host": HOST,
                        "Content-Type": "application/json"}
        self.next_path = f"/api/projects/{project}/next-prompt/"
        self.submit_path = f"/api/projects/{project}/rankings/"
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)
        self.last_used = 0.0

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes, float]:
        # An idle connection past gunicorn's keep-alive is closed by the server: open anew.
        if time.monotonic() - self.last_used > self.keepalive:
            self.conn.close()
        for attempt in (1, 2):
            reused = self.conn.sock is not None
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                # Safe to retry: next-prompt returns the open lease, a submit carries its key.
                if reused and attempt == 1:
                    continue
                raise
            elapsed = (time.perf_counter() - started) * 1000
            self.last_used = time.monotonic()
            return response.status, data, elapsed
        raise AssertionError("unreachable")

    def iteration(self) -> bool:
        """GET next-prompt then POST a ranking of it; False once nothing is left (204)."""
        stats = self.stats
        try:
            status, data, next_ms = self._request("GET", self.next_path, None)
        except OSError as exc:
            stats.error(f"next-prompt: {exc!r}")
            return True
        if status == 204:
            with stats.lock:
                stats.next_ms.append(next_ms)
                stats.done_labelers += 1
            return False
        if status != 200:
            stats.error(f"next-prompt {status}: {data[:200]!r}")
            return True
        page = json.loads(data)
        shown = [completion["id"] for completion in page["completions"]]
        order = random.sample(shown, len(shown))
        body = json.dumps({
            "prompt": page["prompt"]["id"], "tiers": [[cid] for cid in order],
            "idempotency_key": str(uuid.uuid4()), "displayed_order": shown,
            "time_spent_ms": random.randint(2_000, 60_000),
        }).encode()
        try:
            status, data, submit_ms = self._request("POST", self.submit_path, body)
        except OSError as exc:
            stats.error(f"submit: {exc!r}")
            return True
        with stats.lock:
            stats.next_ms.append(next_ms)
            if status == 201:
                stats.submit_ms.append(submit_ms)
                stats.rankings += 1
        if status != 201:
            stats.error(f"submit {status}: {data[:200]!r}")
        return True

    def close(self) -> None:
        self.conn.close()


def closed_loop(server: Server, project: int, tokens: list[str], seconds: float) -> dict:
    stats = Stats()
    labelers = [Labeler(server.port, project, token, stats, keepalive=1.5) for token in tokens]
    start_gate = threading.Barrier(len(labelers) + 1)
    deadline = [0.0]

    def run(labeler: Labeler) -> None:
        start_gate.wait()
        while time.perf_counter() < deadline[0] and labeler.iteration():
            pass
        labeler.close()

    threads = [threading.Thread(target=run, args=(labeler,), daemon=True) for labeler in labelers]
    for thread in threads:
        thread.start()
    meter = CpuMeter(server)
    started = time.perf_counter()
    deadline[0] = started + seconds
    start_gate.wait()
    for thread in threads:
        thread.join(seconds + 120)
    wall = time.perf_counter() - started
    return summarize(stats, wall, meter.stop(), concurrency=str(len(tokens)))


def open_loop(server: Server, project: int, tokens: list[str], seconds: float,
              interval: float) -> dict:
    stats = Stats()
    # gunicorn's default keep-alive is 2 s; a labeler idle longer than that reconnects first.
    labelers = [Labeler(server.port, project, token, stats, keepalive=1.5) for token in tokens]
    scheduled = [0]
    started = time.perf_counter()
    end = started + seconds

    def run(labeler: Labeler, rng: random.Random) -> None:
        due = started + rng.expovariate(1 / interval)
        while due < end:
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            lag = (time.perf_counter() - due) * 1000
            with stats.lock:
                scheduled[0] += 1
                stats.lag_ms.append(lag)
            if not labeler.iteration():
                break
            due += rng.expovariate(1 / interval)  # from the schedule, not from the response
        labeler.close()

    meter = CpuMeter(server)
    threads = [threading.Thread(target=run, args=(labeler, random.Random(i)), daemon=True)
               for i, labeler in enumerate(labelers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    wall = time.perf_counter() - started
    result = summarize(stats, wall, meter.stop(), concurrency=f"{len(tokens)} (open)")
    result["offered"] = scheduled[0] / seconds
    result["lag_p99"] = percentile(stats.lag_ms, 99)
    return result


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def summarize(stats: Stats, wall: float, cpu: dict, concurrency: str) -> dict:
    return {
        "concurrency": concurrency, "rate": stats.rankings / wall, "rankings": stats.rankings,
        "next": [percentile(stats.next_ms, p) for p in (50, 95, 99)],
        "submit": [percentile(stats.submit_ms, p) for p in (50, 95, 99)],
        "errors": stats.errors, "error_samples": stats.error_samples,
        "done_labelers": stats.done_labelers, "cpu": cpu, "wall": wall,
    }


# --- invariants -------------------------------------------------------------------------------

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


def check_invariants(url: str) -> list[str]:
    import psycopg

    violations = []
    with psycopg.connect(url) as conn:
        for name, sql in CHECKS.items():
            rows = conn.execute(sql).fetchall()
            if rows:
                violations.append(f"{name}: {len(rows)} rows, e.g. {rows[:3]}")
    return violations


def progress(url: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*), coalesce(sum(ranking_count), 0) "
                            "FROM annotate_prompt").fetchone()


# --- main -------------------------------------------------------------------------------------


def parse_configs(text: str) -> list[tuple[int, int]]:
    configs = []
    for item in text.split(","):
        workers, threads = item.lower().split("x")
        configs.append((int(workers), int(threads)))
    return configs


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=20, help="seconds per closed run")
    parser.add_argument("--open-duration", type=float, default=60, help="seconds of open loop")
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--concurrency", default="1,8,32", help="closed-loop labelers per run")
    parser.add_argument("--open-labelers", type=int, default=200)
    parser.add_argument("--open-interval", type=float, default=10.0,
                        help="mean seconds between one open-loop labeler's submits")
    parser.add_argument("--configs", default="4x1,8x1,2x8,2x4",
                        help="gunicorn WORKERSxTHREADS to try (threads > 1 means gthread)")
    parser.add_argument("--trial-duration", type=float, default=8,
                        help="seconds of closed loop per gunicorn configuration tried")
    parser.add_argument("--child-setup", help=argparse.SUPPRESS)
    parser.add_argument("--child-users", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_setup:
        print(json.dumps(child_setup(Path(args.child_setup), args.child_users)))
        return

    began = time.perf_counter()
    levels = [int(c) for c in args.concurrency.split(",")]
    configs = parse_configs(args.configs)
    warmup = 4
    # Every run and every warm-up gets labelers no other run used.
    users = (len(configs) * (max(levels) + warmup) + warmup + sum(levels)
             + args.open_labelers)
    log(f"setup: {args.prompts:,} prompts x {K} completions, N={N}, {users} labelers ...")
    url, data = setup(args.prompts, users)
    project, tokens = data["project"], data["tokens"]
    pool = iter(tokens)

    def take(count: int) -> list[str]:
        return [next(pool) for _ in range(count)]

    log(f"setup done in {time.perf_counter() - began:.0f} s")
    violations: list[str] = []

    def after_run(label: str) -> None:
        found = check_invariants(url)
        prompts, ranked = progress(url)
        log(f"  {label}: invariants {'ok' if not found else 'VIOLATED'}; "
            f"{ranked:,} of {prompts * N:,} rankings done")
        violations.extend(f"{label}: {v}" for v in found)

    def warm(server: Server) -> None:
        closed_loop(server, project, take(warmup), 1.5)

    # 1. Choose the gunicorn configuration: most rankings/s at the highest concurrency.
    trials = []
    for workers, threads in configs:
        server = Server(url, workers, threads)
        try:
            warm(server)
            result = closed_loop(server, project, take(max(levels)), args.trial_duration)
        finally:
            server.stop()
        trials.append((result["rate"], server.name, (workers, threads), result))
        log(f"trial {server.name}: {result['rate']:.0f} rankings/s, next p95 "
            f"{result['next'][1]:.0f} ms, submit p95 {result['submit'][1]:.0f} ms, "
            f"errors {result['errors']}")
        after_run(f"trial {server.name}")
    best = max(trials, key=lambda trial: trial[0])
    workers, threads = best[2]

    # 2. The measured runs, on the chosen configuration.
    rows = []
    server = Server(url, workers, threads)
    try:
        warm(server)
        for level in levels:
            result = closed_loop(server, project, take(level), args.duration)
            rows.append(("closed", result))
            log(f"closed {level}: {result['rate']:.0f} rankings/s, errors {result['errors']}")
            after_run(f"closed {level}")
        result = open_loop(server, project, take(args.open_labelers), args.open_duration,
                           args.open_interval)
        rows.append(("open", result))
        log(f"open: {result['rate']:.1f} rankings/s of {result['offered']:.1f} offered")
        after_run("open")
    finally:
        server.stop()

    prompts, ranked = progress(url)
    print(f"Labeler loop: {prompts:,} prompts x {K} completions, N={N}, PostgreSQL, gunicorn "
          f"{server.name} (chosen: most rankings/s at {max(levels)} closed-loop labelers)")
    print("gunicorn trials, closed loop at {} labelers for {:.0f} s: {}".format(
        max(levels), args.trial_duration,
        "; ".join(f"{name} {rate:.0f}/s" for rate, name, _, _ in trials)))
    header = (f"{'scenario':<8} | {'concurrency':>11} | {'rankings/s':>10} | "
              f"{'next p50/p95/p99 ms':>20} | {'submit p50/p95/p99 ms':>22} | {'errors':>6}")
    print(header)
    print("-" * len(header))
    for scenario, result in rows:
        print(f"{scenario:<8} | {result['concurrency']:>11} | {result['rate']:>10.1f} | "
              f"{fmt(result['next']):>20} | {fmt(result['submit']):>22} | {result['errors']:>6}")
    print(f"CPU, in cores busy on average ({os.cpu_count()} in all): "
          "client / gunicorn / PostgreSQL / anything else on the host")
    noisy = False
    for scenario, result in rows:
        cpu = result["cpu"]
        other = cpu["host"] - cpu["client"] - cpu["server"] - cpu["pg"]
        noisy |= other > 0.25
        print(f"  {scenario} {result['concurrency']}: {cpu['client']:.2f} / {cpu['server']:.2f}"
              f" / {cpu['pg']:.2f} / {other:.2f}")
    if noisy:
        print("WARNING: other processes used the CPU during a run; its figures are low")
    for scenario, result in rows:
        if scenario == "open":
            print(f"open loop: offered {result['offered']:.1f} rankings/s, achieved "
                  f"{result['rate']:.1f}; p99 lateness of a scheduled start "
                  f"{result['lag_p99']:.1f} ms")
        if result["done_labelers"]:
            print(f"{scenario} {result['concurrency']}: {result['done_labelers']} labelers "
                  f"got 204 (nothing left)")
        for sample in result["error_samples"]:
            print(f"error sample ({scenario} {result['concurrency']}): {sample}")
    print(f"{ranked:,} of {prompts * N:,} rankings done; "
          f"total {time.perf_counter() - began:.0f} s")
    if violations:
        print("invariants: VIOLATED")
        for violation in violations:
            print("  " + violation)
        sys.exit(1)
    print("invariants: ok (after every run)")


if __name__ == "__main__":
    main()
