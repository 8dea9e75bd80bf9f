"""Who runs a background job (a training job, an export, an import), and whether that runner
is gone; and the rules every such job row follows: send, claim, keep alive, reap.

A job row records its runner as host:pid and a heartbeat. A redelivered Celery message
(a worker killed mid-job, or the broker's visibility timeout passing while the job still
runs) may take the job over only when that runner is gone: on this host its process is
dead; elsewhere its heartbeat is older than the stale limit.
"""

import logging
import os
import socket
import threading
from datetime import datetime, timedelta

logger = logging.getLogger(__name__)


def runner_id() -> str:
    """This process, as host:pid.

    >>> runner_id().endswith(f":{os.getpid()}")
    True
    """
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_gone(worker: str, heartbeat_at: datetime | None, *, now: datetime,
                stale_seconds: float) -> bool:
    """Whether the runner `worker` (host:pid) that last beat at `heartbeat_at` is gone."""
    host, _, pid = worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not process_alive(int(pid))
    return heartbeat_at is None or heartbeat_at < now - timedelta(seconds=stale_seconds)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- rows run by one runner at a time (TrainingJob, Export, PromptImport) ---------------------
# These models have status (queued/running/failed), worker, heartbeat_at, attempts,
# dispatched_at, created_at, started_at, finished_at and error; these rules are theirs.

MAX_ATTEMPTS = 3  # a row whose runner died this often fails instead of starting again
UNDELIVERED_AFTER_S = 5  # younger queued rows may still be on their way to the broker
# A request waits at most this for a broker that is down before the row stays queued.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}


def row_claim(model, row_id: int, *, now: datetime, stale_seconds: float,
              **queued_filter) -> str | None:
    """Claim a queued row for this process, or take over a running one whose runner is gone.

    Return the runner it was taken from ("" when it was queued), or None when the row is not
    ours. The takeover is conditional on the row not having changed since we looked, so of
    two takers one wins.
    """
    from django.db.models import F

    me = runner_id()
    if model.objects.filter(id=row_id, status="queued", **queued_filter).update(
            status="running", attempts=F("attempts") + 1, worker=me, heartbeat_at=now,
            started_at=now, error=""):
        return ""
    held = model.objects.filter(id=row_id).first()
    if held is None or held.status != "running" or not runner_gone(
            held.worker, held.heartbeat_at, now=now, stale_seconds=stale_seconds):
        return None
    taken = model.objects.filter(
        id=row_id, status="running", worker=held.worker, heartbeat_at=held.heartbeat_at,
    ).update(attempts=F("attempts") + 1, worker=me, heartbeat_at=now)
    return held.worker if taken else None


def rows_reap(model, *, now: datetime, stale_seconds: float, dispatch, lost_error) -> dict:
    """Requeue (or, after MAX_ATTEMPTS, fail with `lost_error(row)`) running rows whose
    heartbeat stopped; `dispatch(id)` the queued ones that never reached the broker."""
    stale = now - timedelta(seconds=stale_seconds)
    counts = {"requeued": 0, "failed": 0, "dispatched": 0}
    for row in model.objects.filter(status="running", heartbeat_at__lt=stale):
        same_row = model.objects.filter(id=row.id, status="running", worker=row.worker,
                                        heartbeat_at=row.heartbeat_at)
        if row.attempts >= MAX_ATTEMPTS:
            counts["failed"] += same_row.update(status="failed", finished_at=now,
                                                error=lost_error(row))
        elif same_row.update(status="queued", worker="", dispatched_at=None):
            counts["requeued"] += 1
            logger.warning("%s %s: no heartbeat from %s; requeued",
                           model._meta.verbose_name, row.id, row.worker)
    undelivered = model.objects.filter(
        status="queued", dispatched_at__isnull=True,
        created_at__lt=now - timedelta(seconds=UNDELIVERED_AFTER_S))
    for row_id in undelivered.values_list("id", flat=True):
        counts["dispatched"] += dispatch(row_id)
    return counts


def row_dispatch(model, row_id: int, task, *, label: str) -> bool:
    """Send `task` for the row to the broker and note when; if the broker is down, leave the
    row queued (the reaper sends it once the broker is back) and return False."""
    from django.utils import timezone

    try:
        task.apply_async((row_id,), retry=True, retry_policy=PUBLISH_RETRY)
    except Exception as exc:  # the broker is unreachable: not the request's failure
        logger.warning("%s %s stays queued: the broker did not take it (%s)", label, row_id, exc)
        return False
    model.objects.filter(id=row_id).update(dispatched_at=timezone.now())
    return True


def row_take(model, row_id: int, *, stale_seconds: float, label: str) -> bool:
    """Claim the row for this process (row_claim); fail it instead when its runners were
    lost more than MAX_ATTEMPTS times. Return whether it is ours to run now."""
    from django.utils import timezone

    now = timezone.now()
    taken_from = row_claim(model, row_id, now=now, stale_seconds=stale_seconds)
    if taken_from is None:
        return False
    if taken_from:
        logger.warning("%s %s: took over from %s, which is gone", label, row_id, taken_from)
    attempts, worker = model.objects.filter(id=row_id).values_list("attempts", "worker").get()
    if attempts > MAX_ATTEMPTS:
        model.objects.filter(id=row_id, worker=worker).update(
            status="failed", finished_at=now,
            error=f"The {label}'s worker was lost {attempts - 1} times; not again.")
        return False
    return True


class Heartbeat:
    """While the block runs, touch the row's heartbeat (and `fields()`, e.g. progress) from a
    thread with its own connection, so the reaper tells a long run from one whose worker died,
    and a page sees progress that the run's own open transaction would hide."""

    def __init__(self, model, row_id: int, worker: str, *, stale_seconds: float,
                 every: float | None = None, fields=None):
        self.model, self.row_id, self.worker = model, row_id, worker
        self.every = every or max(1.0, stale_seconds / 4)
        self.fields = fields or dict
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True,
                                       name=f"{model._meta.model_name}-{row_id}-heartbeat")

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()  # not joined: a beat waiting on the database must not hold us

    def _beat(self) -> None:
        from django.db import DatabaseError, connection
        from django.utils import timezone

        try:
            while not self.stopped.wait(self.every):
                try:
                    # Only while it runs: a beat that waited on the run's own write must
                    # not write stale progress over the row's end.
                    self.model.objects.filter(
                        id=self.row_id, worker=self.worker, status="running",
                    ).update(heartbeat_at=timezone.now(), **self.fields())
                except DatabaseError as exc:  # e.g. SQLite's write lock, held by the run
                    logger.info("%s %s: heartbeat not written (%s)",
                                self.model._meta.verbose_name, self.row_id, exc)
        finally:
            connection.close()  # this thread's own connection
