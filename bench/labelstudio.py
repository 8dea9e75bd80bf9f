"""Label Studio as a system under the labeler-loop benchmark (see bench/labeler_loop.py).

Installed the first time with `pip install label-studio==1.23.2` into its own virtualenv,
bench/.scratch/labelstudio/venv (python3.11 -m venv). Started as `label-studio start` does by
default (Django's threaded development server, SQLite database and media under its data
directory, here bench/.scratch/labelstudio/data), on 127.0.0.1, with every outbound call it
would make switched off in its settings:

    COLLECT_ANALYTICS=false       usage telemetry, a POST to tele.labelstud.io per request
                                  (core/utils/contextlog.py, ContextLogMiddleware)
    LATEST_VERSION_CHECK=false    a GET to pypi.org at import (core/utils/common.py)
    SENTRY_DSN= FRONTEND_SENTRY_DSN=
                                  core/settings/label_studio.py defaults both to sentry.io
    FEATURE_FLAGS_OFFLINE=true    LaunchDarkly offline; community flags come from its bundled
                                  feature_flags.json (the default, stated)
    CONVERTER_DOWNLOAD_RESOURCES=false
                                  exports never fetch task resources

and, to prove it, an audit hook (a sitecustomize on its PYTHONPATH) that refuses and logs any
name lookup or connection to an address off loopback, in the server and in the setup children.

Users: one admin and one user per simulated labeler, created with Label Studio's own models
in a child process of its virtualenv (the community edition has no API that hands out another
user's token). Their organization has legacy API tokens enabled, as `label-studio start
--enable-legacy-api-token` would make it: 1.23 turns JWT personal access tokens on by default
and legacy tokens off for new organizations. The project: List + Ranker (no buckets), the
"LLM ranker" template reduced to an ordering of 4 completions, and maximum_annotations=3.
"""

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import loadgen

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "bench" / ".scratch" / "labelstudio"
VENV = HOME / "venv"
PACKAGE = "label-studio==1.23.2"
DATA = HOME / "data"
MIGRATED = HOME / "migrated"  # an empty, migrated data directory, copied for every run
GUARD = HOME / "guard"
NET_LOG = HOME / "off-loopback.log"
N = 3

LABEL_CONFIG = """<View>
  <Text name="prompt" value="$prompt"/>
  <List name="answers" value="$items" title="Completions"/>
  <Ranker name="rank" toName="answers"/>
</View>"""

SITECUSTOMIZE = '''"""Loopback only: refuse (and log) a lookup or connection off loopback."""
import os
import socket
import sys

_LOG = os.environ.get("BENCH_NET_GUARD_LOG")
_LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", ""}


def _guard(event, args):
    if event == "socket.connect":
        if args[0].family not in (socket.AF_INET, socket.AF_INET6):
            return
        host = str(args[1][0])
    elif event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else str(args[0] or "")
    else:
        return
    if host in _LOCAL or host.startswith("127."):
        return
    if _LOG:
        with open(_LOG, "a") as log:
            log.write(f"{os.getpid()} {event} {host}\\n")
    raise OSError(f"bench: {event} to {host} refused, loopback only")


sys.addaudithook(_guard)
'''


def python() -> Path:
    """Label Studio's virtualenv, created and installed the first time (a few minutes)."""
    ls_python = VENV / "bin" / "python"
    if not (VENV / "bin" / "label-studio").exists():
        HOME.mkdir(parents=True, exist_ok=True)
        print(f"installing {PACKAGE} into {VENV} (log: {HOME / 'pip.log'}) ...",
              file=sys.stderr, flush=True)
        with (HOME / "pip.log").open("ab") as pip_log:
            subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
            subprocess.run([str(ls_python), "-m", "pip", "install", "--disable-pip-version-check",
                            PACKAGE], check=True, stdout=pip_log, stderr=pip_log)
    return ls_python


def version() -> str:
    done = subprocess.run([str(python()), "-c", "import label_studio; "
                           "print(label_studio.__version__)"], capture_output=True, text=True,
                          env=env())
    return done.stdout.strip() or "?"


def env() -> dict:
    """A clean environment: Label Studio reads bare names such as HOST, PORT and USERNAME."""
    GUARD.mkdir(parents=True, exist_ok=True)
    (GUARD / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {
        "PATH": f"{VENV / 'bin'}:/usr/bin:/bin", "HOME": str(HOME), "LANG": "C.UTF-8",
        "PYTHONPATH": str(GUARD), "BENCH_NET_GUARD_LOG": str(NET_LOG),
        "LABEL_STUDIO_BASE_DATA_DIR": str(DATA), "LOG_LEVEL": "WARNING",
        "COLLECT_ANALYTICS": "false", "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "FEATURE_FLAGS_OFFLINE": "true",
        "CONVERTER_DOWNLOAD_RESOURCES": "false",
    }


def blocked_calls() -> list[str]:
    return NET_LOG.read_text().splitlines() if NET_LOG.exists() else []


class LabelStudioProtocol(loadgen.Protocol):
    """GET /api/projects/{id}/next/ (404: nothing left), then POST the task's annotation."""

    def __init__(self, project: int):
        self.project = project

    def next_path(self) -> str:
        return f"/api/projects/{self.project}/next/"

    def read_next(self, status: int, data: bytes) -> dict | None:
        if status == 404 and b"no tasks" in data:
            return None
        if status != 200:
            raise loadgen.ProtocolError(f"{status}: {data[:200]!r}")
        return json.loads(data)

    def submit(self, task: dict) -> tuple[str, bytes]:
        ids = [item["id"] for item in task["data"]["items"]]
        body = json.dumps({
            "result": [ranker_result(loadgen.random_order(ids))],
            "lead_time": round(random.uniform(2, 60), 3),
            "started_at": datetime.now(UTC).isoformat(), "project": str(self.project),
        }).encode()
        return f"/api/tasks/{task['id']}/annotations/?project={self.project}", body


def ranker_result(order: list[str]) -> dict:
    """What Label Studio's editor saves for a List + Ranker ordering."""
    return {"from_name": "rank", "to_name": "answers", "type": "ranker", "origin": "manual",
            "value": {"ranker": {"rank": order}}}


def task_of(record: dict) -> dict:
    """One prompt of the benchmark's JSONL file as a Label Studio task of the same content."""
    items = [{"id": f"c{j}", "title": chr(ord("A") + j), "body": text}
             for j, text in enumerate(record["completions"])]
    return {"prompt": record["prompt"], "items": items, "source_id": record["id"],
            "metadata": record["metadata"]}


class LabelStudio:
    """One Label Studio: its data directory, its server process, its checks."""

    name = "Label Studio, SQLite"

    def __init__(self):
        self.process: subprocess.Popen | None = None

    # --- setup ---

    def prepare(self, users: int) -> None:
        """A fresh data directory, users with tokens, the server, the project (not timed)."""
        ls_python = python()
        NET_LOG.unlink(missing_ok=True)
        if not (MIGRATED / "label_studio.sqlite3").exists():
            shutil.rmtree(DATA, ignore_errors=True)
            self._child(ls_python, "migrate")  # about a minute, the first time only
            shutil.rmtree(MIGRATED, ignore_errors=True)
            shutil.copytree(DATA, MIGRATED)
        shutil.rmtree(DATA, ignore_errors=True)
        shutil.copytree(MIGRATED, DATA)
        data = self._child(ls_python, "setup", "--users", str(users))
        self.admin_token, self.tokens = data["admin_token"], data["tokens"]
        self.start()
        status, body = self.api("POST", "/api/projects/", {
            "title": "LLM ranking", "label_config": LABEL_CONFIG, "maximum_annotations": N,
        })
        if status != 201:
            raise RuntimeError(f"Label Studio: project create answered {status}: {body[:300]!r}")
        self.project = json.loads(body)["id"]
        self.protocol = LabelStudioProtocol(self.project)

    def _child(self, ls_python: Path, part: str, *args: str) -> dict:
        done = subprocess.run([str(ls_python), __file__, "--ls-child", part, *args],
                              env=env(), capture_output=True, text=True, cwd=HOME)
        if done.returncode:
            raise RuntimeError(f"Label Studio: {part} failed:\n{done.stderr[-3000:]}")
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else {}

    def api(self, method: str, path: str, payload=None, raw: bytes | None = None,
            timeout: float = 900) -> tuple[int, bytes]:
        body = raw if raw is not None else (None if payload is None else json.dumps(payload)
                                            .encode())
        headers = {"Authorization": f"Token {self.admin_token}",
                   "Content-Type": "application/json"}
        return loadgen.request(self.port, method, path, body, headers, timeout=timeout)

    # --- serving ---

    def start(self) -> None:
        self.port = loadgen.free_port()
        self.log = (HOME / "server.log").open("ab")
        self.process = subprocess.Popen(
            [str(VENV / "bin" / "label-studio"), "start", "--no-browser",
             "--internal-host", loadgen.HOST, "--port", str(self.port)],
            env=env(), cwd=HOME, stdout=self.log, stderr=self.log, start_new_session=True,
        )
        loadgen.wait_until_up(self.port, "/health", lambda: self.process.poll() is None,
                              f"label-studio (log: {HOME / 'server.log'})")

    def restart(self) -> None:
        self.stop()
        self.start()
        self.api("GET", f"/api/projects/{self.project}/")  # load the code paths once

    server_name = "label-studio start (Django's threaded runserver, one process)"

    def groups(self) -> dict:
        return {"server": lambda: [self.process.pid, *loadgen.children(self.process.pid)]}

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        self.process = None

    # --- the measured operations ---

    def import_prompts(self, jsonl: Path) -> dict:
        """POST the prompts as a JSON list of tasks to the project's import API."""
        body = json.dumps([task_of(record) for record in loadgen.jsonl_records(jsonl)]).encode()
        started = time.perf_counter()
        status, data = self.api("POST", f"/api/projects/{self.project}/import", raw=body)
        seconds = time.perf_counter() - started
        if status != 201:
            raise RuntimeError(f"Label Studio: import answered {status}: {data[:500]!r}")
        return {"seconds": seconds, "prompts": json.loads(data)["task_count"]}

    def top_up(self, total: int) -> int:
        """Annotations in bulk with its own models until `total` exist (not timed)."""
        data = self._child(python(), "top-up", "--total", str(total), "--project",
                           str(self.project))
        return data["rankings"]

    def export(self) -> dict:
        """Both of its JSON exports, each on a freshly started server whose resident memory is
        sampled from the request to the last byte: the export snapshot (POST exports/, then
        download; the API the UI uses) and the older one-request GET export (deprecated)."""
        results = {}
        self.restart()
        with loadgen.RssSampler(self.process.pid) as rss:
            started = time.perf_counter()
            status, body = self.api("POST", f"/api/projects/{self.project}/exports/", {
                "title": "bench", "task_filter_options": {"annotated": "only"},
            })
            snapshot = json.loads(body)
            if status != 201 or snapshot.get("status") != "completed":
                raise RuntimeError(f"Label Studio: export answered {status}: {body[:300]!r}")
            status, data = self.api("GET", f"/api/projects/{self.project}/exports/"
                                    f"{snapshot['id']}/download?exportType=JSON")
            seconds = time.perf_counter() - started
        results["snapshot"] = self._export_result(status, data, seconds, rss)
        self.restart()
        with loadgen.RssSampler(self.process.pid) as rss:
            started = time.perf_counter()
            status, data = self.api("GET", f"/api/projects/{self.project}/export?exportType=JSON")
            seconds = time.perf_counter() - started
        results["sync"] = self._export_result(status, data, seconds, rss)
        return results

    @staticmethod
    def _export_result(status: int, data: bytes, seconds: float, rss) -> dict:
        if status != 200:
            raise RuntimeError(f"Label Studio: export download answered {status}: {data[:300]!r}")
        tasks = json.loads(data)
        return {"seconds": seconds, "bytes": len(data), "tasks": len(tasks),
                "rankings": sum(len(task["annotations"]) for task in tasks),
                "peak_rss_mb": rss.peak, "rss_growth_mb": rss.growth,
                "process": "server (the request's thread)"}

    # --- checks, in SQL on its database ---

    def _query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(f"file:{DATA / 'label_studio.sqlite3'}?mode=ro", uri=True) as conn:
            return conn.execute(sql).fetchall()

    def check(self) -> list[str]:
        return loadgen.violations(CHECKS, self._query)

    def progress(self) -> tuple[int, int]:
        return self._query("SELECT (SELECT count(*) FROM task), (SELECT count(*) FROM "
                           "task_completion WHERE was_cancelled = 0)")[0]


CHECKS = {
    "task with more annotations than maximum_annotations": """
        SELECT t.id, count(a.id), p.maximum_annotations FROM task t
        JOIN project p ON p.id = t.project_id
        JOIN task_completion a ON a.task_id = t.id AND a.was_cancelled = 0
        GROUP BY t.id HAVING count(a.id) > p.maximum_annotations""",
    "a labeler annotated a task twice": """
        SELECT task_id, completed_by_id, count(*) FROM task_completion WHERE was_cancelled = 0
        GROUP BY task_id, completed_by_id HAVING count(*) > 1""",
    "total_annotations differs from the annotations stored": """
        SELECT t.id, t.total_annotations, count(a.id) FROM task t
        LEFT JOIN task_completion a ON a.task_id = t.id AND a.was_cancelled = 0
        GROUP BY t.id HAVING t.total_annotations <> count(a.id)""",
}


# --- child processes, in Label Studio's virtualenv ----------------------------------------------


def ls_django() -> None:
    import django
    import label_studio

    sys.path.insert(0, str(Path(label_studio.__file__).parent))  # as label-studio start does
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "label_studio.core.settings.label_studio")
    django.setup()


def child_migrate() -> dict:
    from django.core.management import call_command

    call_command("migrate", "--no-color", verbosity=0)
    return {}


def child_setup(users: int) -> dict:
    from organizations.models import Organization
    from users.models import User

    admin = User.objects.create_user(email="admin@bench.local", password=None)
    admin.is_staff = admin.is_superuser = True
    admin.save()
    org = Organization.create_organization(created_by=admin, title="Bench",
                                           legacy_api_tokens_enabled=True)
    admin.active_organization = org
    admin.save(update_fields=["active_organization"])
    tokens = []
    for i in range(users):
        user = User.objects.create_user(email=f"labeler-{i:04d}@bench.local", password=None)
        org.add_user(user)
        user.active_organization = org
        user.save(update_fields=["active_organization"])
        tokens.append(user.auth_token.key)
    return {"admin_token": admin.auth_token.key, "tokens": tokens}


def child_top_up(total: int, project_id: int) -> dict:
    """Fill tasks in id order to N annotations each, by labelers who have not annotated them,
    in bulk as its importer stores annotations, then its own counter update."""
    from django.db.models import Max
    from projects.models import Project
    from tasks.models import Annotation, Task
    from users.models import User

    project = Project.objects.get(id=project_id)
    labelers = list(User.objects.filter(email__startswith="labeler-").order_by("email"))
    stored = Annotation.objects.filter(project=project, was_cancelled=False)
    have = stored.count()
    by_task: dict[int, set[int]] = {}
    for task_id, user_id in stored.values_list("task_id", "completed_by_id"):
        by_task.setdefault(task_id, set()).add(user_id)
    rng = random.Random(0)
    new, touched, turn = [], [], 0
    for task in Task.objects.filter(project=project).order_by("id").only("id", "data"):
        if have + len(new) >= total:
            break
        done = by_task.setdefault(task.id, set())
        ids = [item["id"] for item in task.data["items"]]
        while len(done) < N and have + len(new) < total:
            labeler = labelers[turn % len(labelers)]
            turn += 1
            if labeler.id in done:
                continue
            done.add(labeler.id)
            order = rng.sample(ids, len(ids))
            new.append(Annotation(task=task, project=project, completed_by=labeler,
                                  updated_by=labeler, result=[ranker_result(order)],
                                  lead_time=round(rng.uniform(2, 60), 3)))
        touched.append(task.id)
    next_id = (Annotation.objects.aggregate(top=Max("id"))["top"] or 0) + 1
    for offset, annotation in enumerate(new):  # as its importer does on SQLite
        annotation.id = next_id + offset
    Annotation.objects.bulk_create(new, batch_size=1000)
    project.update_tasks_counters_and_task_states(
        tasks_queryset=Task.objects.filter(id__in=touched), maximum_annotations_changed=False,
        overlap_cohort_percentage_changed=False, tasks_number_changed=False)
    return {"rankings": stored.count()}


def child_main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="children of bench/labelstudio.py")
    parser.add_argument("--ls-child", choices=("migrate", "setup", "top-up"), required=True)
    parser.add_argument("--users", type=int)
    parser.add_argument("--total", type=int)
    parser.add_argument("--project", type=int)
    args = parser.parse_args()
    ls_django()
    if args.ls_child == "migrate":
        result = child_migrate()
    elif args.ls_child == "setup":
        result = child_setup(args.users)
    else:
        result = child_top_up(args.total, args.project)
    print(json.dumps(result))


if __name__ == "__main__":
    child_main()
