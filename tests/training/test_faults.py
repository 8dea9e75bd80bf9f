"""Faults, with real processes: a Redis of our own that we hang, kill and start again, the
web app under gunicorn, Celery workers we SIGKILL, PostgreSQL under all of them.

Carol administers the project; alice and bob label it. The stories:
- Redis hangs, then dies, while alice and bob rank and carol asks for a model and an export:
  the rankings are saved, every answer comes back, the two requests wait queued, and once
  Redis is back the minute tick (beat, every 2 s here) sends them and a worker does both.
- A worker is SIGKILLed while it builds an export: the export is built again, once.
- A job outlives the broker's visibility timeout, so Redis hands its message to a second
  worker: the second worker leaves it alone; it runs once.
- A hundred identical requests at once make one job and one export; a crowd of different
  ones fills the quotas, and the rest answer 429.
(A worker SIGKILLed mid-training: test_worker.py.)
"""

import io
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection, transaction
from rest_framework.authtoken.models import Token

from annotate import services as annotate_services
from annotate.models import Export, Membership, Ranking
from tests.processes import BIN, app_env, free_port, port_open, start_logged, stop, wait_for_text
from training.ml.synthetic import prompt_records
from training.models import ModelArtifact, TrainingJob

from .conftest import FAST_REWARD

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIENT_TIMEOUT_S = 90  # generous: a request must answer, not hang on a dead broker
# The parameters of learnable_export (v1): a rebuild of them counts the same.
V1_PARAMS = {"min_votes": 2, "min_agreement": 0.66, "test_fraction": 0.25, "seed": 1,
             "formats": ["trl-jsonl"]}


class Redis:
    """A redis-server of this test's own on a free port: start, hang, kill, start again."""

    def __init__(self, folder: Path):
        self.port, self.folder = free_port(), folder
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = start_logged(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)], os.environ.copy(),
            self.folder / f"redis-{time.monotonic_ns()}.log")
        _wait(lambda: port_open("127.0.0.1", self.port), 20, "redis-server to listen")

    def hang(self) -> None:
        self.process.send_signal(signal.SIGSTOP)  # the port still accepts; nothing answers

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


class Stack:
    """The app's processes on the test database and our Redis; all stopped at the end."""

    def __init__(self, redis: Redis, var_dir: Path, logs: Path, **env: str):
        db = connection.settings_dict
        self.redis, self.logs = redis, logs
        self.env = app_env(
            DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            CELERY_BROKER_URL=redis.url, VAR_DIR=str(var_dir), **env)
        self.processes: list[subprocess.Popen] = []
        self.base = ""

    def web(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.processes.append(start_logged(
            [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "3", "--threads", "8", "--timeout", "120", "--no-control-socket"],
            self.env, self.logs / "web.log"))
        _wait(lambda: port_open("127.0.0.1", port), 60, "gunicorn to listen")

    def worker(self, name: str, *, concurrency: int = 1, beat: bool = False) -> Path:
        log = self.logs / f"{name}.log"
        command = [str(BIN / "celery"), "-A", "config", "worker", "-Q", "gpu,default",
                   "--concurrency", str(concurrency), "--prefetch-multiplier", "1",
                   "--hostname", f"{name}@%h", "--loglevel", "INFO"]
        if beat:
            command += ["--beat", "--schedule", str(self.logs / f"{name}-beat")]
        self.processes.append(start_logged(command, self.env, log))
        assert wait_for_text(log, "ready.", timeout=90), log.read_text()
        return log

    def call(self, token: str, method: str, path: str, body: dict | None = None):
        request = urllib.request.Request(
            self.base + path, method=method, headers={
                "Authorization": f"Token {token}", "Content-Type": "application/json"},
            data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S) as response:
                return response.status, _body(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _body(error.read())

    def close(self) -> None:
        for process in reversed(self.processes):
            stop(process)


def _body(raw: bytes):
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode(errors="replace")[:2000]  # an error page, shown by the assert


@pytest.fixture
def redis(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (CI runs it there): the web app and workers are separate "
                    "processes on the test database")
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary (CI has it): these tests stop their own")
    server = Redis(tmp_path)
    try:
        server.start()
        yield server
    finally:  # also when it did not start listening
        server.close()


@pytest.fixture
def stack_for(redis, var_dir, tmp_path, tiny_models):
    made = []
    # The web app's catalog of base models: the tiny ones, named "policy" and "reward".
    catalog = {"MODEL_ROOTS": str(tiny_models["reward"].parent)}

    def make(**env: str) -> Stack:
        made.append(Stack(redis, var_dir, tmp_path, **catalog | env))
        return made[-1]

    yield make
    for stack in made:
        stack.close()


@pytest.fixture
def carol_token(carol):
    return Token.objects.create(user=carol).key


def labeler_token(make_user, project, name: str) -> str:
    user = make_user(name)
    annotate_services.membership_set(project=project, user=user, role=Membership.Role.LABELER)
    return Token.objects.create(user=user).key


def reward_request(project, export, **params) -> dict:
    return {"project": project.id, "kind": "reward", "export": export.id,
            "base_model": "reward", "params": {**FAST_REWARD, **params}}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def wait_row(row, predicate, timeout: float, logs: Path):
    def ready():
        row.refresh_from_db()
        return predicate(row)

    try:
        _wait(ready, timeout, f"{row}")
    except AssertionError:
        tails = {p.name: p.read_text(errors="replace")[-3000:] for p in logs.glob("*.log")}
        raise AssertionError(f"{row}: {getattr(row, 'error', '')}\n{tails}") from None
    return row


def rank_one(stack: Stack, token: str, project) -> int:
    """Take the next prompt and rank it: completions in the order shown, best first."""
    status, page = stack.call(token, "GET", f"/api/projects/{project.id}/next-prompt/")
    assert status == 200, page
    prompt_id = page["prompt"]["id"]
    status, body = stack.call(token, "POST", f"/api/projects/{project.id}/rankings/", {
        "prompt": prompt_id, "tiers": [[c["id"]] for c in page["completions"]],
        "idempotency_key": f"{token[:8]}-{prompt_id}"})
    assert status == 201, body
    return prompt_id


def import_more_prompts(project, count: int) -> None:
    records = prompt_records(count, k=4, seed=11, first_id=1000)
    annotate_services.prompts_import(
        project=project, filename="more.jsonl",
        binary=io.BytesIO("".join(json.dumps(r) + "\n" for r in records).encode()))


def test_labelers_keep_ranking_while_redis_is_down_and_queued_work_goes_out_when_it_is_back(
        stack_for, redis, project, learnable_export, carol_token, make_user, tmp_path):
    import_more_prompts(project, 4)
    alice, bob = (labeler_token(make_user, project, name) for name in ("alice", "bob"))
    # A tick every 2 s, and a broker that does not answer given up on after 2 s (default 5).
    stack = stack_for(CELERY_TICK_SECONDS="2", CELERY_BROKER_SOCKET_TIMEOUT="2")
    stack.web()
    stack.worker("worker", concurrency=2, beat=True)

    redis.hang()  # first it stops answering...
    alice_prompt = rank_one(stack, alice, project)
    status, job = stack.call(carol_token, "POST", "/api/training-jobs/",
                             reward_request(project, learnable_export))
    assert status == 201 and job["status"] == "queued", job
    redis.kill()  # ...then it is gone
    bob_prompt = rank_one(stack, bob, project)
    status, export = stack.call(carol_token, "POST", f"/api/projects/{project.id}/exports/",
                                {"test_fraction": 0.25, "formats": ["trl-jsonl"]})
    assert status == 202 and export["status"] == "queued", export

    job, export = TrainingJob.objects.get(id=job["id"]), Export.objects.get(id=export["id"])
    assert job.status == "queued" and job.dispatched_at is None  # waiting, not failed
    assert export.status == "queued" and export.dispatched_at is None
    assert Ranking.objects.filter(prompt_id__in=[alice_prompt, bob_prompt]).count() == 2

    redis.start()  # the same port: the worker reconnects, beat's tick sends both
    job = wait_row(job, lambda j: not j.is_active, 300, tmp_path)
    export = wait_row(export, lambda e: e.status not in Export.ACTIVE, 60, tmp_path)
    assert job.status == "succeeded" and job.attempts == 1, job.error
    assert job.dispatched_at is not None and ModelArtifact.objects.filter(job=job).count() == 1
    assert export.status == "succeeded" and export.attempts == 1, export.error
    # The two rankings made while Redis was down are in the export.
    assert export.counts["rankings"] == Ranking.objects.filter(prompt__project=project).count()
    assert export.counts["rankings"] == learnable_export.counts["rankings"] + 2


def test_a_worker_killed_while_it_builds_an_export_builds_it_again_once(
        stack_for, project, learnable_export, carol_token, var_dir, tmp_path):
    stack = stack_for()
    stack.web()
    stack.worker("exports")
    with transaction.atomic():
        # The export stalls on its first read of the rankings, after it claimed the row.
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE annotate_ranking IN ACCESS EXCLUSIVE MODE")
        status, body = stack.call(carol_token, "POST", f"/api/projects/{project.id}/exports/",
                                  V1_PARAMS)
        assert status == 202, body
        export = wait_row(Export.objects.get(id=body["id"]), lambda e: e.status == "running",
                          60, tmp_path)
        os.kill(int(export.worker.rsplit(":", 1)[1]), signal.SIGKILL)  # the pool process
        # The worker hands the message back; the next pool process takes the export over.
        export = wait_row(export, lambda e: e.attempts == 2, 60, tmp_path)
    export = wait_row(export, lambda e: e.status not in Export.ACTIVE, 60, tmp_path)

    assert export.status == "succeeded", export.error
    assert Export.objects.filter(project=project).count() == 2  # v1 and this v2, no other row
    folder = var_dir / "exports" / project.slug
    assert sorted(p.name for p in folder.iterdir()) == ["v1", "v1.zip", "v2", "v2.zip"]
    assert export.counts == learnable_export.counts  # the same rankings, counted once
    train = (folder / "v2" / "train.jsonl").read_text().splitlines()
    assert len(train) == export.counts["pairs"]["train"]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_job_longer_than_the_visibility_timeout_runs_once(
        stack_for, project, learnable_export, carol_token, tmp_path):
    stack = stack_for(CELERY_VISIBILITY_TIMEOUT="3")
    stack.web()
    first_log = stack.worker("first", concurrency=2)
    with transaction.atomic():
        with connection.cursor() as cursor:  # the export waits here: a long export
            cursor.execute("LOCK TABLE annotate_ranking IN ACCESS EXCLUSIVE MODE")
        status, job = stack.call(carol_token, "POST", "/api/training-jobs/",
                                 reward_request(project, learnable_export, epochs=30))
        assert status == 201, job
        status, export = stack.call(carol_token, "POST", f"/api/projects/{project.id}/exports/",
                                    {"test_fraction": 0.25, "formats": ["trl-jsonl"]})
        assert status == 202, export
        job = wait_row(TrainingJob.objects.get(id=job["id"]), lambda j: j.step >= 1, 120,
                       tmp_path)
        export = wait_row(Export.objects.get(id=export["id"]), lambda e: e.status == "running",
                          60, tmp_path)
        # The training pauses (its worker still beats for it): a long job.
        trainer = _children(int(job.worker.rsplit(":", 1)[1]))
        assert trainer, "the training process"
        for pid in trainer:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(4)  # past the visibility timeout: Redis gives both messages again
            second_log = stack.worker("second")
            # The second worker's first sweep hands it both messages; it leaves both alone.
            done = [re.escape(f"training.job_run[{job.celery_task_id}] succeeded"),
                    r"annotate\.export_run\[[-0-9a-f]+\] succeeded"]
            assert _wait(lambda: all(re.search(d, second_log.read_text()) for d in done), 60,
                         "the second worker to get both messages"), second_log.read_text()
            job.refresh_from_db()
            export.refresh_from_db()
            assert job.status == "running" and export.status == "running"
        finally:
            for pid in trainer:
                os.kill(pid, signal.SIGCONT)
    job = wait_row(job, lambda j: not j.is_active, 300, tmp_path)
    export = wait_row(export, lambda e: e.status not in Export.ACTIVE, 60, tmp_path)

    assert job.status == "succeeded" and export.status == "succeeded", (job.error, export.error)
    assert job.attempts == 1 and export.attempts == 1  # claimed once each
    assert {m["attempt"] for m in job.metrics} == {1}
    assert [m["step"] for m in job.metrics] == list(range(1, job.total_steps + 1))
    assert ModelArtifact.objects.filter(job=job).count() == 1
    first = first_log.read_text()
    assert first.count(f"training.job_run[{job.celery_task_id}] received") == 1
    assert first.count("annotate.export_run[") == 2  # received, then succeeded


def test_a_hundred_identical_requests_make_one_job_and_past_the_quota_answer_429(
        stack_for, project, learnable_export, carol_token):
    stack = stack_for(TRAINING_MAX_ACTIVE_JOBS="4", EXPORT_MAX_ACTIVE="3")
    stack.web()  # no worker: everything stays queued
    train_path, export_path = "/api/training-jobs/", f"/api/projects/{project.id}/exports/"

    def send_all(requests: list[tuple[str, dict]]) -> list[tuple[int, dict]]:
        with ThreadPoolExecutor(max_workers=32) as pool:
            return list(pool.map(lambda r: stack.call(carol_token, "POST", *r), requests))

    same_job = reward_request(project, learnable_export)
    same_export = {"test_fraction": 0.25, "seed": 7}
    answers = send_all([(train_path, same_job), (export_path, same_export)] * 100)
    jobs, exports = answers[0::2], answers[1::2]
    refused = [answer for answer in jobs if answer[0] >= 400]
    assert sorted(status for status, _ in jobs) == [200] * 99 + [201], refused[:3]
    assert {body["id"] for _, body in jobs} == {TrainingJob.objects.get().id}
    assert {status for status, _ in exports} == {202}
    assert len({body["id"] for _, body in exports}) == 1
    assert Export.objects.filter(project=project, status="queued").count() == 1

    # Twenty different configs and export parameters, each asked twice, all at once.
    requests = [(train_path, reward_request(project, learnable_export, epochs=n))
                for n in range(10, 30)] + [(export_path, {"seed": n}) for n in range(20)]
    answers = send_all(requests * 2)
    by_request: dict[str, set] = {}
    for (path, body), (status, answer) in zip(requests * 2, answers, strict=True):
        assert status in (200, 201, 202, 429), (status, answer)
        outcome = "refused" if status == 429 else (path, answer["id"])
        by_request.setdefault(json.dumps([path, body], sort_keys=True), set()).add(outcome)
        if status == 429:
            assert "already has" in answer["detail"], answer
    # Each request was answered the same both times: its job or export, or the quota.
    assert all(len(outcomes) == 1 for outcomes in by_request.values()), by_request
    active_jobs = TrainingJob.objects.filter(status__in=TrainingJob.ACTIVE)
    assert active_jobs.count() == 4  # the quota, the first job included
    assert len({job.dedupe_key for job in active_jobs}) == 4
    assert Export.objects.filter(project=project, status__in=Export.ACTIVE).count() == 3
    granted = {next(iter(o)) for o in by_request.values()} - {"refused"}
    assert len(granted) == 3 + 2  # three new jobs and two new exports
