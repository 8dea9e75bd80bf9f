"""Training jobs: create, dispatch, claim, run, cancel, and reap the ones whose worker died.

The job row is the source of truth. A Celery task only carries the id and calls job_run,
which claims the row with one conditional UPDATE, so a duplicate or redelivered message is
a no-op unless the runner that held the job is gone (then it takes over and the training
resumes from its last checkpoint). The training itself runs in a child process
(training.ml.run): CUDA stays out of the worker, and a cancel is a SIGTERM that the
trainer honours at the end of the step it is in.
"""

import hashlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.models import Export, Project
from config.celery import app as celery_app
from config.errors import QuotaExceeded, reason_line
from config.runners import MAX_ATTEMPTS, PUBLISH_RETRY, row_claim, rows_reap

from ..kinds import KINDS
from ..ml.run import EXIT_CANCELLED
from ..models import TrainingJob
from .registry import artifact_register

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIG = ROOT / "config" / "accelerate" / "multi_gpu.yaml"
FLUSH_EVERY_S = 1.0  # progress and metrics reach the row at most this often
CANCEL_POLL_S = 0.5
LOG_TAIL_CHARS = 20_000
STOP_GRACE_S = 120  # after SIGTERM, how long a step may take to finish before SIGKILL
JOB_RUN_TASK = "training.job_run"  # training.tasks.job_run_task


def job_directory(job: TrainingJob) -> Path:
    return settings.VAR_DIR / "jobs" / str(job.id)


# --- create and dispatch ----------------------------------------------------------------------


def job_create(*, project: Project, kind: str, params: dict, base_model: str,
               created_by: AbstractUser | None, export: Export | None = None,
               dataset_path: str = "", eval_file: str = "", base_location: str = "",
               base_artifact=None, reward_artifact=None, other_models: dict | None = None,
               dispatch: bool = True) -> tuple[TrainingJob, bool]:
    """Create a queued job and dispatch it after commit (unless the caller will run it in
    the foreground); return (job, created). Validated requests come through
    training.services.requests.job_request.

    An identical request (same kind, data and params) while one is active returns that job.
    """
    key = dedupe_key(kind=kind, export_id=export.id if export else None,
                     dataset_path=dataset_path, eval_file=eval_file,
                     base_location=base_location, base_model=base_model,
                     base_artifact_id=base_artifact.id if base_artifact else None,
                     reward_artifact_id=reward_artifact.id if reward_artifact else None,
                     params=params, **({"other_models": other_models} if other_models else {}))
    with transaction.atomic():
        # One request at a time per project: the quota below counts what is committed, so
        # two requests counting side by side would both fit under it.
        Project.objects.select_for_update().filter(id=project.id).first()
        existing = TrainingJob.objects.filter(project=project, dedupe_key=key,
                                              status__in=TrainingJob.ACTIVE).first()
        if existing is not None:
            return existing, False
        active = TrainingJob.objects.filter(project=project, status__in=TrainingJob.ACTIVE)
        if active.count() >= settings.TRAINING_MAX_ACTIVE_JOBS:
            raise QuotaExceeded(
                f"This project already has {settings.TRAINING_MAX_ACTIVE_JOBS} queued or running "
                "jobs; wait for one to finish or cancel one.")
        try:
            with transaction.atomic():
                job = TrainingJob.objects.create(
                    project=project, kind=kind, params=params, base_model=base_model,
                    export=export, dataset_path=dataset_path, eval_file=eval_file,
                    base_location=base_location, base_artifact=base_artifact,
                    reward_artifact=reward_artifact, dedupe_key=key, created_by=created_by,
                    other_models=other_models or {},
                )
        except IntegrityError:  # the same request, committed a moment ago by another process
            return TrainingJob.objects.get(project=project, dedupe_key=key,
                                           status__in=TrainingJob.ACTIVE), False
        if dispatch:
            transaction.on_commit(lambda: job_dispatch(job.id))
    return job, True


def dedupe_key(**request) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def job_dispatch(job_id: int) -> bool:
    """Send the job's task to the broker. If the broker is down the job stays queued, and
    the reaper sends it again once the broker is back."""
    try:
        # By the task's name: the tasks module calls services, so services do not import it.
        sent = celery_app.send_task(JOB_RUN_TASK, (job_id,), retry=True,
                                    retry_policy=PUBLISH_RETRY)
    except Exception as exc:  # the broker is unreachable: not the request's failure
        logger.warning("training job %s stays queued: the broker did not take it (%s)",
                       job_id, exc)
        return False
    TrainingJob.objects.filter(id=job_id).update(dispatched_at=timezone.now(),
                                                 celery_task_id=sent.id)
    return True


# --- claim and run ----------------------------------------------------------------------------


def job_claim(job_id: int, *, now=None) -> TrainingJob | None:
    """Take the job for this process, or return None when it is not ours to run.

    Ours: it is queued; or it is running but the runner that held it is gone (a redelivery
    after a worker was killed): then the takeover is conditional on the row not having
    changed since we looked, so of two takers one wins.
    """
    now = now or timezone.now()
    taken_from = row_claim(TrainingJob, job_id, now=now,
                           stale_seconds=settings.TRAINING_HEARTBEAT_STALE_SECONDS,
                           cancel_requested=False)
    if taken_from is None:
        return None
    if taken_from:
        logger.warning("training job %s: took over from %s, which is gone", job_id, taken_from)
    job = TrainingJob.objects.select_related("project", "export", "base_artifact",
                                             "reward_artifact").get(id=job_id)
    if job.attempts > MAX_ATTEMPTS:
        _finish(job, TrainingJob.Status.FAILED,
                error=f"The job's worker was lost {job.attempts - 1} times; not starting again.")
        return None
    return job


def job_run(job_id: int) -> None:
    """Claim the job and run it to its end: succeeded, failed or cancelled."""
    job = job_claim(job_id)
    if job is not None:
        _run(job)


def _run(job: TrainingJob) -> None:
    job_id = job.id
    kind = KINDS[job.kind]
    directory = job_directory(job)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "log.txt"
    try:
        spec = kind.spec(job, directory)
        (directory / "spec.json").write_text(json.dumps(spec, indent=2))
        relay = _Relay(job, log_path)
        returncode, result = relay.run(_command(spec, directory))
    except Exception as exc:
        logger.exception("%s job %s failed before its process ended", kind.label, job_id)
        _finish(job, TrainingJob.Status.FAILED, log_path=log_path,
                error=f"{kind.label} could not start: {reason_line(exc)}")
        return
    if TrainingJob.objects.filter(id=job.id, cancel_requested=True).exists() and (
            returncode != 0 or result is None):
        _finish(job, TrainingJob.Status.CANCELLED, log_path=log_path)
    elif returncode == EXIT_CANCELLED:
        _finish(job, TrainingJob.Status.CANCELLED, log_path=log_path)
    elif returncode != 0 or result is None:
        logger.error("%s job %s: the training process exited with code %s; its log is %s",
                     kind.label, job_id, returncode, log_path)
        reason = reason_line(relay.error) if relay.error else f"exit code {returncode}"
        _finish(job, TrainingJob.Status.FAILED, log_path=log_path,
                error=f"{kind.label} failed: {reason}")
    else:
        try:
            with transaction.atomic():
                extra = _keep_output(job, kind, directory, result)
                if not _finish(job, TrainingJob.Status.SUCCEEDED, result=result | extra,
                               log_path=log_path):
                    raise _TakenOver  # its output is the new runner's to register
        except _TakenOver:
            logger.warning("training job %s: taken over by another runner; this run's "
                           "output is not registered", job_id)
        except Exception as exc:
            logger.exception("training job %s: keeping its output failed", job_id)
            _finish(job, TrainingJob.Status.FAILED, log_path=log_path,
                    error=f"{kind.label} finished, but keeping its output failed: "
                          f"{reason_line(exc)}")


def _keep_output(job: TrainingJob, kind, directory: Path, result: dict) -> dict:
    extra = kind.complete(job, directory, result) or {}
    if kind.registers:
        artifact = artifact_register(job, kind.registers, **kind.artifact_fields(job, result))
        extra["artifact_id"] = artifact.id
    return extra


class _TakenOver(Exception):
    """The job row is no longer ours: roll back what this run registered."""


def _command(spec: dict, directory: Path) -> list[str]:
    gpus = spec.get("config", {}).get("num_gpus", 1)
    if gpus > 1:  # one process per GPU, each running the same training.ml.run
        return [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
                str(ACCELERATE_CONFIG), "--num_processes", str(gpus), "-m", "training.ml.run",
                str(directory / "spec.json")]
    return [sys.executable, "-m", "training.ml.run", str(directory / "spec.json")]


def _finish(job: TrainingJob, status: str, *, error: str = "", result: dict | None = None,
            log_path: Path | None = None) -> bool:
    """End the job, unless another runner took it over meanwhile."""
    fields = {"status": status, "finished_at": timezone.now(), "error": error}
    if result is not None:
        fields["result"] = result
    if log_path is not None and log_path.exists():
        fields["log_tail"] = _tail(log_path)
    return bool(TrainingJob.objects.filter(
        id=job.id, status=TrainingJob.Status.RUNNING, worker=job.worker).update(**fields))


def _tail(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - LOG_TAIL_CHARS))
        return handle.read().decode("utf-8", errors="replace")


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the worker that started it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the trainer notices its parent changed at the next step


class _Relay:
    """Run the training process; copy its reports to the job row; pass a cancel on."""

    def __init__(self, job: TrainingJob, log_path: Path):
        self.job, self.log_path = job, log_path
        self.pending_metrics: list[dict] = []
        self.step = self.total = None
        self.result = None
        self.last_flush = 0.0
        self.cancel_sent_at: float | None = None
        self.error = ""  # the process's own one-line reason, if it failed

    def run(self, command: list[str]) -> tuple[int, dict | None]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}  # a log, not bars
        env.pop("DJANGO_SETTINGS_MODULE", None)  # the training process is plain Python
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=log, stdin=subprocess.DEVNULL,
                                       preexec_fn=_die_with_parent)
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(process.stdout, lines.put),
                                  daemon=True)
        reader.start()
        next_poll = 0.0
        while True:
            try:
                line = lines.get(timeout=CANCEL_POLL_S)
            except queue.Empty:
                line = ""
            if line is None:  # stdout closed: the process is ending
                break
            if line:
                self._handle(line)
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + CANCEL_POLL_S
                self._check_cancel(process)
            self._flush()
        returncode = process.wait()
        self._flush(force=True)
        return returncode, self.result

    def _handle(self, line: str) -> None:
        try:
            event = json.loads(line)
            kind = event["event"]
        except (ValueError, KeyError, TypeError):
            self._log(line.rstrip("\n"))  # a library printed to stdout
            return
        if kind == "step":
            self.step, self.total = event["step"], event["total"]
            self.pending_metrics.append({"step": event["step"], "time": event["time"],
                                         "attempt": self.job.attempts, **event["metrics"]})
        elif kind == "log":
            self._log(event["message"])
        elif kind == "checkpoint":
            self._log(f"checkpoint at step {event['step']}")
        elif kind == "result":
            self.result = event["result"]
        elif kind == "error":
            self.error = str(event.get("message", ""))
            self._log(f"error: {self.error}")

    def _log(self, message: str) -> None:
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(message + "\n")

    def _check_cancel(self, process: subprocess.Popen) -> None:
        if self.cancel_sent_at is None:
            if TrainingJob.objects.filter(id=self.job.id, cancel_requested=True).exists():
                self._log("cancel requested: stopping at the end of this step")
                process.send_signal(signal.SIGTERM)
                self.cancel_sent_at = time.monotonic()
        elif time.monotonic() - self.cancel_sent_at > STOP_GRACE_S and process.poll() is None:
            process.kill()

    def _flush(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.last_flush < FLUSH_EVERY_S:
            return
        self.last_flush = time.monotonic()
        fields = {"heartbeat_at": timezone.now(), "log_tail": _tail(self.log_path)}
        if self.step is not None:
            fields |= {"step": min(self.step, self.total), "total_steps": self.total}
        with transaction.atomic():
            job = (TrainingJob.objects.select_for_update().only("metrics", "worker")
                   .filter(id=self.job.id).first())
            if job is None or job.worker != self.job.worker:
                return  # taken over by another runner: leave the row alone
            if self.pending_metrics:
                fields["metrics"] = job.metrics + self.pending_metrics
                self.pending_metrics = []
            TrainingJob.objects.filter(id=self.job.id).update(**fields)


def _read_lines(stream, put: Callable) -> None:
    for raw in iter(stream.readline, b""):
        put(raw.decode("utf-8", errors="replace"))
    put(None)


# --- cancel and reap --------------------------------------------------------------------------


def job_cancel(job: TrainingJob) -> TrainingJob:
    """Cancel a queued job now; ask a running one to stop at the end of its current step."""
    now = timezone.now()
    TrainingJob.objects.filter(id=job.id, status=TrainingJob.Status.QUEUED).update(
        status=TrainingJob.Status.CANCELLED, cancel_requested=True, finished_at=now)
    TrainingJob.objects.filter(id=job.id, status=TrainingJob.Status.RUNNING).update(
        cancel_requested=True)
    job.refresh_from_db()
    return job


def jobs_reap(now=None) -> dict[str, int]:
    """Requeue (or fail) running jobs whose heartbeat stopped; send undelivered jobs again.

    Runs every minute on the worker (Celery beat) and at worker start.
    """
    return rows_reap(
        TrainingJob, now=now or timezone.now(),
        stale_seconds=settings.TRAINING_HEARTBEAT_STALE_SECONDS, dispatch=job_dispatch,
        lost_error=lambda job: (f"No heartbeat from worker {job.worker} since "
                                f"{job.heartbeat_at.isoformat(timespec='seconds')}, after "
                                f"{job.attempts} attempts."))
