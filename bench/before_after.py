"""Before/after: the labeler loop and the soak on two or more commits, side by side, in one
invocation on one machine, alternating the commits run by run so the machine's noise hits
each alike.

    git worktree add --detach /tmp/bench-OLD OLD      # one worktree per commit
    .venv/bin/python bench/before_after.py labeler-loop --trees /tmp/bench-OLD,/tmp/bench-NEW \
        --out bench/results/x-labeler-loop.jsonl
    .venv/bin/python bench/before_after.py soak --trees /tmp/bench-OLD,/tmp/bench-NEW \
        --duration 180 --out bench/results/x-soak.jsonl
    .venv/bin/python bench/before_after.py table bench/results/x-labeler-loop.jsonl

Each run is a child process in its tree, with this virtualenv's Python and PYTHONPATH set to
the tree, so the server, the worker and every helper import that tree's code (the editable
install of this checkout would otherwise win in processes that drop the working directory
from sys.path). The child runs the tree's own bench/labeler_loop.py (its Run: setup, import,
closed loops, top-up, export; the open loop is skipped) or bench/soak.py, with the tree's own
bench/rlhf_studio.py, which speaks that commit's API (the import answered 201 before the
imports moved to a worker, 202 after). The PostgreSQL database is named after the tree
(bench_<commit>, dropped at the end). One JSON line per run goes to --out, with the load
average sampled every 2 s during the run.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

PYTHON = sys.executable
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")

LABELER_LOOP = r"""
import argparse, json, os, sys, time
sys.path.insert(0, "bench")
import labeler_loop, rlhf_studio
cfg = json.loads(sys.argv[1])
rlhf_studio.DB_NAME = cfg["db_name"]
args = argparse.Namespace(prompts=cfg["prompts"], duration=cfg["duration"], open_duration=0.1,
                          concurrency=cfg["concurrency"], open_labelers=0, open_interval=10.0,
                          export_rankings=cfg["export_rankings"], configs="2x4",
                          trial_duration=8)
system = labeler_loop.make_system(cfg["database"], [(2, 4)])
run = labeler_loop.Run(system, args)
try:
    run(__import__("pathlib").Path(cfg["jsonl"]), [(2, 4)])
finally:
    system.stop()
print(json.dumps({"imported": run.imported, "loops": [r for s, r in run.loops if s == "closed"],
                  "export": run.export, "rankings_at_export": run.rankings_at_export,
                  "violations": run.violations, "setup_s": run.setup_s,
                  "total_s": run.total_s, "server": run.server_name}))
"""

SOAK = r"""
import json, sys
sys.path.insert(0, "bench")
import soak
from loadgen import percentile
cfg = json.loads(sys.argv[1])
soak.DB_NAME = cfg["db_name"]
original = soak.report

def report(args, stats, wall, samples, admin, final, final_count, violations, total):
    requests = len(stats.next_ms) + stats.rankings + stats.errors
    print("RESULT " + json.dumps({
        "wall": wall, "rankings": stats.rankings, "rate": stats.rankings / wall,
        "requests": requests, "errors": stats.errors, "error_kinds": dict(stats.error_kinds),
        "next": [percentile(stats.next_ms, p) for p in (50, 95, 99)],
        "submit": [percentile(stats.submit_ms, p) for p in (50, 95, 99)],
        "samples": samples, "exports": admin.exports, "jobs": admin.jobs,
        "admin_errors": admin.errors[:5], "final": final, "final_count": final_count,
        "violations": violations, "total": total}), flush=True)
    original(args, stats, wall, samples, admin, final, final_count, violations, total)

soak.report = report
sys.argv = ["soak.py", "--duration", str(cfg["duration"]), "--labelers", str(cfg["labelers"]),
            "--prompts", str(cfg["prompts"])]
soak.main()
"""


REQUESTS = r"""
import json, os, random, sys, tempfile, time, uuid
from pathlib import Path
cfg = json.loads(sys.argv[1])
os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_ENV": "production",
                   "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "testserver", "DEBUG": "false",
                   "SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "WARNING",
                   "VAR_DIR": tempfile.mkdtemp(prefix="bench-requests-")})
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.pop("DATABASE_URL", None)
if cfg["database_url"]:
    os.environ["DATABASE_URL"] = cfg["database_url"]
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from annotate import services
call_command("migrate", verbosity=0)
admin = get_user_model().objects.create_user("bench-admin", is_staff=True)
project = services.project_create(created_by=admin, slug="bench", name="Bench",
                                  criterion="helpfulness", completions_per_prompt=4,
                                  labelers_per_prompt=3)
with open(cfg["jsonl"], "rb") as binary:
    services.prompts_import(project=project, binary=binary, filename="p.jsonl",
                            imported_by=admin)
if connection.vendor == "postgresql":
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
random.seed(0)
clients = []
for i in range(cfg["labelers"]):
    user, _ = services.labeler_add(project=project, username=f"labeler-{i}")
    clients.append(Client(HTTP_AUTHORIZATION="Token " + Token.objects.create(user=user).key))
base = f"/api/projects/{project.id}/"
queries = {"next": [], "submit": []}
cpu = {"next": 0.0, "submit": 0.0}
wall = {"next": 0.0, "submit": 0.0}

def one(client, count):
    t0, c0 = time.perf_counter(), time.process_time()
    with CaptureQueriesContext(connection) as q:
        answer = client.get(base + "next-prompt/")
    t1, c1 = time.perf_counter(), time.process_time()
    assert answer.status_code == 200, answer.status_code
    page = answer.json()
    shown = [c["id"] for c in page["completions"]]
    body = {"prompt": page["prompt"]["id"], "tiers": [[c] for c in random.sample(shown, 4)],
            "idempotency_key": str(uuid.uuid4()), "displayed_order": shown,
            "time_spent_ms": 5000}
    with CaptureQueriesContext(connection) as q2:
        answer = client.post(base + "rankings/", body, content_type="application/json")
    t2, c2 = time.perf_counter(), time.process_time()
    assert answer.status_code == 201, (answer.status_code, answer.content[:300])
    if count:
        queries["next"].append(len(q)); queries["submit"].append(len(q2))
        cpu["next"] += c1 - c0; cpu["submit"] += c2 - c1
        wall["next"] += t1 - t0; wall["submit"] += t2 - t1

for i in range(cfg["warmup"]):
    one(clients[i % len(clients)], False)
for i in range(cfg["iterations"]):
    one(clients[i % len(clients)], True)
n = cfg["iterations"]
print(json.dumps({"queries": {k: sorted(set(v)) for k, v in queries.items()},
                  "queries_mean": {k: sum(v) / len(v) for k, v in queries.items()},
                  "cpu_ms": {k: 1000 * v / n for k, v in cpu.items()},
                  "wall_ms": {k: 1000 * v / n for k, v in wall.items()}}))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def commit_of(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()


class LoadSampler:
    """Every 2 s during a run: the 1-minute load average, and the CPU seconds of the run's own
    processes (the child and its descendants by kind, and the PostgreSQL backends of its
    database) against the whole host's, so "others" is what the rest of the machine used.
    The load average counts the run's own waiting threads too; "others" does not."""

    def __init__(self, root: int | None = None, db_name: str | None = None):
        self.root, self.db_name = root, db_name
        self.loads, self._stop = [], threading.Event()
        self.start_busy, self.start_wall = _busy(), time.monotonic()
        self.first, self.last, self.kind = {}, {}, {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(2.0):
            self.loads.append(os.getloadavg()[0])
            if self.root:
                self._sample()

    def _sample(self):
        parents, cpu, cmd = {}, {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                text = Path(f"/proc/{pid}/stat").read_text()
                line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()
            parents[pid], cmd[pid] = int(fields[1]), line.decode(errors="replace")
            cpu[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for pid in cpu:
            kind, up = None, pid
            while up > 1:
                if up == self.root:
                    kind = _kind(cmd[pid], pid == self.root)
                    break
                up = parents.get(up, 0)
            if kind is None and self.db_name and f" {self.db_name} " in cmd[pid]:
                kind = "postgres"
            if kind is None:
                continue
            if pid not in self.first:
                self.first[pid] = 0.0  # every process counted was started by the run
            self.last[pid], self.kind[pid] = cpu[pid], kind

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self.start_wall
        busy = (_busy() - self.start_busy) / wall
        cores = {}
        for pid, kind in self.kind.items():
            cores[kind] = cores.get(kind, 0.0) + (self.last[pid] - self.first[pid]) / wall
        if cores:
            cores["others"] = busy - sum(cores.values())
        return {"load_mean": statistics.mean(self.loads) if self.loads else os.getloadavg()[0],
                "load_max": max(self.loads, default=os.getloadavg()[0]),
                "host_busy_cores": busy, "cores": cores}


def _kind(cmdline: str, root: bool) -> str:
    if root:
        return "client"
    for kind in ("gunicorn", "training.ml.run", "celery", "manage.py"):
        if kind in cmdline:
            return kind
    return "helpers"


def _busy() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


# This checkout is installed editable: its finder would hand a tree any module the tree lacks
# (an older commit lacks training/templatetags, say) from this checkout. Every process of a run
# drops it, through a sitecustomize on PYTHONPATH, so a tree runs its own code only.
SITECUSTOMIZE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
"""


def child_env(tree: Path) -> dict:
    site = Path(tree) / "bench" / ".scratch" / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {**os.environ, "PYTHONPATH": f"{tree}:{site}"}


def run_child(tree: Path, code: str, cfg: dict, marker: str | None = None) -> dict:
    env = child_env(tree)
    load_before = os.getloadavg()[0]
    child = subprocess.Popen([PYTHON, "-c", code, json.dumps(cfg)], cwd=tree, env=env,
                             stdout=subprocess.PIPE, text=True)
    sampler = LoadSampler(child.pid, cfg.get("db_name"))
    stdout, _ = child.communicate()
    done = subprocess.CompletedProcess(child.args, child.returncode, stdout)
    load = sampler.stop()
    lines = done.stdout.strip().splitlines()
    if marker:
        found = [line[len(marker):] for line in lines if line.startswith(marker)]
        sys.stdout.write("\n".join(line for line in lines if not line.startswith(marker)) + "\n")
    else:
        found = lines[-1:] if done.returncode == 0 else []
    if not found:
        raise RuntimeError(f"{tree}: child exited {done.returncode} with no result")
    return {**json.loads(found[-1]), "returncode": done.returncode,
            "load_before": load_before, **load}


def drop(db_name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")


def labeler_loop(args) -> None:
    trees = [Path(t) for t in args.trees.split(",")]
    jsonl = Path(args.jsonl)
    if not jsonl.exists():
        sys.path.insert(0, str(Path(__file__).parent))
        from import_prompts import write_file

        write_file(jsonl, args.prompts, 4)
    with open(args.out, "a") as out:
        for rnd in range(args.rounds):
            for database in args.databases.split(","):
                # Alternate: the order of the trees flips every round and every database.
                flip = (rnd + args.databases.split(",").index(database)) % 2
                for tree in (trees[::-1] if flip else trees):
                    commit = commit_of(tree)
                    cfg = {"database": database, "db_name": f"bench_{commit}",
                           "prompts": args.prompts, "duration": args.duration,
                           "concurrency": args.concurrency, "jsonl": str(jsonl),
                           "export_rankings": args.export_rankings}
                    log(f"round {rnd + 1}: {commit} on {database} ...")
                    try:
                        result = run_child(tree, LABELER_LOOP, cfg)
                    finally:
                        if database == "postgres":
                            drop(cfg["db_name"])
                    record = {"benchmark": "labeler-loop", "round": rnd + 1, "commit": commit,
                              "database": database, **result}
                    out.write(json.dumps(record) + "\n")
                    out.flush()
                    log(f"  closed rates {[round(r['rate'], 1) for r in record['loops']]}, "
                        f"load {record['load_mean']:.1f}")


def requests(args) -> None:
    """SQL queries and this process's CPU per next-prompt and per submit, through Django's
    test client in one process (no server, no client threads): the cost of a request
    alone, which the machine's other load disturbs far less than throughput."""
    trees = [Path(t) for t in args.trees.split(",")]
    jsonl = Path(args.jsonl)
    if not jsonl.exists():
        sys.path.insert(0, str(Path(__file__).parent))
        from import_prompts import write_file

        write_file(jsonl, args.prompts, 4)
    with open(args.out, "a") as out:
        for rnd in range(args.rounds):
            for d, database in enumerate(args.databases.split(",")):
                for tree in (trees[::-1] if (rnd + d) % 2 else trees):
                    commit = commit_of(tree)
                    db_name = f"bench_{commit}_requests"
                    url = ""
                    if database == "postgres":
                        import psycopg

                        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                            conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
                            conn.execute(f"CREATE DATABASE {db_name}")
                        url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + db_name
                    cfg = {"database_url": url, "jsonl": str(jsonl), "labelers": args.labelers,
                           "warmup": 20, "iterations": args.iterations}
                    log(f"requests round {rnd + 1}: {commit} on {database} ...")
                    try:
                        result = run_child(tree, REQUESTS, cfg)
                    finally:
                        if url:
                            drop(db_name)
                    record = {"benchmark": "requests", "round": rnd + 1, "commit": commit,
                              "database": database, **result}
                    out.write(json.dumps(record) + "\n")
                    out.flush()
                    log(f"  {result['queries']} cpu ms {result['cpu_ms']}")


def soak(args) -> None:
    trees = [Path(t) for t in args.trees.split(",")]
    with open(args.out, "a") as out:
        for rnd in range(args.rounds):
            for tree in (trees[::-1] if rnd % 2 else trees):
                commit = commit_of(tree)
                cfg = {"db_name": f"bench_{commit}_soak", "duration": args.duration,
                       "labelers": args.labelers, "prompts": args.prompts}
                log(f"soak round {rnd + 1}: {commit} ...")
                try:
                    result = run_child(tree, SOAK, cfg, marker="RESULT ")
                finally:
                    drop(cfg["db_name"])
                record = {"benchmark": "soak", "round": rnd + 1, "commit": commit, **result}
                out.write(json.dumps(record) + "\n")
                out.flush()


# --- the tables -------------------------------------------------------------------------------


def mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.mean(values) if values else float("nan")


def fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 \
        else f"{value:.2f}"


def table(args) -> None:
    records = [json.loads(line) for line in open(args.results)]
    commits = list(dict.fromkeys(r["commit"] for r in records))
    base = args.base or commits[0]
    rows = []  # (group, measure, {commit: [values]}, higher_is_better)
    if records[0]["benchmark"] == "requests":
        for database in dict.fromkeys(r["database"] for r in records):
            mine = [r for r in records if r["database"] == database]

            def values(get, mine=mine):
                found = {}
                for r in mine:
                    found.setdefault(r["commit"], []).append(get(r))
                return found

            for kind in ("next", "submit"):
                rows += [
                    (database, f"{kind}: SQL queries", values(
                        lambda r, k=kind: r["queries_mean"][k]), False),
                    (database, f"{kind}: CPU ms in process", values(
                        lambda r, k=kind: r["cpu_ms"][k]), False),
                    (database, f"{kind}: wall ms", values(lambda r, k=kind: r["wall_ms"][k]),
                     False),
                ]
            rows.append((database, "load average, mean during the run",
                         values(lambda r: r["load_mean"]), None))
    elif records[0]["benchmark"] == "labeler-loop":
        for database in dict.fromkeys(r["database"] for r in records):
            mine = [r for r in records if r["database"] == database]
            levels = [loop["concurrency"] for loop in mine[0]["loops"]]

            def values(get, mine=mine):
                found = {}
                for r in mine:
                    found.setdefault(r["commit"], []).append(get(r))
                return found

            for i, level in enumerate(levels):
                rows += [
                    (database, f"closed {level}: rankings/s",
                     values(lambda r, i=i: r["loops"][i]["rate"]), True),
                    (database, f"closed {level}: next p50 ms",
                     values(lambda r, i=i: r["loops"][i]["next"][0]), False),
                    (database, f"closed {level}: next p95 ms",
                     values(lambda r, i=i: r["loops"][i]["next"][1]), False),
                    (database, f"closed {level}: submit p50 ms",
                     values(lambda r, i=i: r["loops"][i]["submit"][0]), False),
                    (database, f"closed {level}: submit p95 ms",
                     values(lambda r, i=i: r["loops"][i]["submit"][1]), False),
                    (database, f"closed {level}: errors",
                     values(lambda r, i=i: r["loops"][i]["errors"]), None),
                    (database, f"closed {level}: server cores busy",
                     values(lambda r, i=i: r["loops"][i]["cpu"].get("server", 0)
                            + r["loops"][i]["cpu"].get("database", 0)), None),
                    (database, f"closed {level}: server+db CPU ms per ranking",
                     values(lambda r, i=i: 1000 * (r["loops"][i]["cpu"].get("server", 0)
                                                   + r["loops"][i]["cpu"].get("database", 0))
                            / max(r["loops"][i]["rate"], 1e-9)), False),
                    (database, f"closed {level}: other processes' cores busy",
                     values(lambda r, i=i: r["loops"][i]["cpu"].get("other", 0)), None),
                ]
            rows += [
                (database, "import 10,000 prompts, s",
                 values(lambda r: r["imported"]["seconds"]), False),
                (database, "export 10,000 rankings, s", values(lambda r: r["export"]["seconds"]),
                 False),
                (database, "export peak RSS MB", values(lambda r: r["export"]["peak_rss_mb"]),
                 False),
                (database, "invariant violations", values(lambda r: len(r["violations"])), None),
                (database, "load average, mean during the run",
                 values(lambda r: r["load_mean"]), None),
            ]
    else:
        def values(get):
            found = {}
            for r in records:
                found.setdefault(r["commit"], []).append(get(r))
            return found

        def window(r, col, which):
            samples = r["samples"]
            minute = min(60.0, r["wall"] / 5)
            last = samples[-1][0]
            start, end = (minute, 2 * minute) if which == "early" else (last - minute, last + 1)
            return mean([s[col] for s in samples if start <= s[0] < end])

        rows += [
            ("soak", "rankings/s", values(lambda r: r["rate"]), True),
            ("soak", "requests", values(lambda r: r["requests"]), None),
            ("soak", "errors", values(lambda r: r["errors"]), None),
            ("soak", "next p50 ms", values(lambda r: r["next"][0]), False),
            ("soak", "next p95 ms", values(lambda r: r["next"][1]), False),
            ("soak", "submit p50 ms", values(lambda r: r["submit"][0]), False),
            ("soak", "submit p95 ms", values(lambda r: r["submit"][1]), False),
            ("soak", "exports under load (succeeded)",
             values(lambda r: sum(e["status"] == "succeeded" for e in r["exports"][:-1])), None),
            ("soak", "training jobs (succeeded)",
             values(lambda r: sum(j["status"] == "succeeded" for j in r["jobs"])), None),
            ("soak", "final export rankings - rankings stored",
             values(lambda r: r["final"]["rankings"] - r["final_count"]), None),
            ("soak", "gunicorn RSS growth %",
             values(lambda r: 100 * (window(r, 1, "late") / window(r, 1, "early") - 1)), None),
            ("soak", "worker RSS growth %",
             values(lambda r: 100 * (window(r, 2, "late") / window(r, 2, "early") - 1)), None),
            ("soak", "gunicorn RSS MB, peak",
             values(lambda r: max(s[1] for s in r["samples"])), None),
            ("soak", "worker RSS MB, peak",
             values(lambda r: max(s[2] for s in r["samples"])), None),
            ("soak", "load average, mean during the run", values(lambda r: r["load_mean"]), None),
            ("soak", "cores busy: gunicorn", values(
                lambda r: r.get("cores", {}).get("gunicorn", float("nan"))), None),
            ("soak", "cores busy: Celery worker (+ training jobs)", values(
                lambda r: r.get("cores", {}).get("celery", float("nan"))
                + r.get("cores", {}).get("training.ml.run", 0)), None),
            ("soak", "cores busy: PostgreSQL (this database)", values(
                lambda r: r.get("cores", {}).get("postgres", float("nan"))), None),
            ("soak", "cores busy: labelers (client)", values(
                lambda r: r.get("cores", {}).get("client", float("nan"))), None),
            ("soak", "cores busy: other processes on the host", values(
                lambda r: r.get("cores", {}).get("others", float("nan"))), None),
            ("soak", "gunicorn CPU ms per ranking", values(
                lambda r: 1000 * r.get("cores", {}).get("gunicorn", float("nan"))
                * r["total"] / max(r["rankings"], 1)), False),
        ]
    others = [c for c in commits if c != base]
    header = ["", "measure", *[f"{c}{' (base)' if c == base else ''}" for c in [base, *others]],
              *[f"{c} / {base}" for c in others]]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for group, measure, found, _ in rows:
        cells = [" / ".join(fmt(v) for v in found.get(c, [])) for c in [base, *others]]
        ratios = []
        for c in others:
            b, a = mean(found.get(base, [])), mean(found.get(c, []))
            ratios.append(f"{a / b:.2f}x" if b and not math.isnan(a / b) else "")
        print("| " + " | ".join([group, measure, *cells, *ratios]) + " |")
    print("\nCells: each round's value, in round order; ratios: mean after / mean base.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    loop = sub.add_parser("labeler-loop")
    loop.add_argument("--trees", required=True, help="worktrees, comma-separated, base first")
    loop.add_argument("--databases", default="postgres,sqlite")
    loop.add_argument("--rounds", type=int, default=2)
    loop.add_argument("--prompts", type=int, default=10_000)
    loop.add_argument("--duration", type=float, default=20)
    loop.add_argument("--concurrency", default="1,32")
    loop.add_argument("--export-rankings", type=int, default=10_000)
    loop.add_argument("--jsonl", default="/tmp/bench-prompts-10000-k4.jsonl")
    loop.add_argument("--out", required=True)
    sk = sub.add_parser("soak")
    sk.add_argument("--trees", required=True)
    sk.add_argument("--rounds", type=int, default=1)
    sk.add_argument("--duration", type=float, default=180)
    sk.add_argument("--labelers", type=int, default=60)
    sk.add_argument("--prompts", type=int, default=10_000)
    sk.add_argument("--out", required=True)
    rq = sub.add_parser("requests")
    rq.add_argument("--trees", required=True)
    rq.add_argument("--databases", default="postgres,sqlite")
    rq.add_argument("--rounds", type=int, default=2)
    rq.add_argument("--prompts", type=int, default=2_000)
    rq.add_argument("--labelers", type=int, default=4)
    rq.add_argument("--iterations", type=int, default=300)
    rq.add_argument("--jsonl", default="/tmp/bench-prompts-2000-k4.jsonl")
    rq.add_argument("--out", required=True)
    tb = sub.add_parser("table")
    tb.add_argument("results")
    tb.add_argument("--base")
    args = parser.parse_args()
    {"labeler-loop": labeler_loop, "soak": soak, "requests": requests,
     "table": table}[args.command](args)


if __name__ == "__main__":
    main()
