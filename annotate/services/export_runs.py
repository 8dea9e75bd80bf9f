"""Exports built on a worker: send, claim, keep alive, and reap the ones the broker lost.

The same rules as training jobs (training/services/jobs.py). The Export row is the source of
truth; the Celery task carries only the id. A request never fails because the broker is
down: the export stays queued, and the minute tick sends it once the broker is back. A
redelivered message (the worker was killed, or the visibility timeout passed while the
export was still building) builds it again only if the builder that held it is gone.
"""

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from config.runners import runner_gone, runner_id

from ..models import Export

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # an export whose builder died this often (say, out of memory) fails
UNDELIVERED_AFTER_S = 5  # younger queued exports may still be on their way to the broker
# A request waits at most this for a broker that is down before the export stays queued.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}


def export_dispatch(export_id: int) -> bool:
    """Send the export's task to the broker; if the broker is down, leave it queued."""
    from ..tasks import export_run_task

    try:
        export_run_task.apply_async((export_id,), retry=True, retry_policy=PUBLISH_RETRY)
    except Exception as exc:  # the broker is unreachable: not the request's failure
        logger.warning("export %s stays queued: the broker did not take it (%s)", export_id, exc)
        return False
    Export.objects.filter(id=export_id).update(dispatched_at=timezone.now())
    return True


def export_claim(export_id: int) -> Export | None:
    """Take the export for this process, or return None when it is not ours to build."""
    now, me = timezone.now(), runner_id()
    claimed = Export.objects.filter(id=export_id, status=Export.Status.QUEUED).update(
        status=Export.Status.RUNNING, started_at=now, worker=me, heartbeat_at=now,
        attempts=F("attempts") + 1, error="")
    if not claimed:
        held = Export.objects.filter(id=export_id).first()
        if held is None or held.status != Export.Status.RUNNING or not runner_gone(
                held.worker, held.heartbeat_at, now=now,
                stale_seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS):
            return None
        claimed = Export.objects.filter(
            id=export_id, status=Export.Status.RUNNING, worker=held.worker,
            heartbeat_at=held.heartbeat_at,
        ).update(worker=me, heartbeat_at=now, attempts=F("attempts") + 1)
        if not claimed:
            return None  # another taker was first
        logger.warning("export %s: took over from %s, which is gone", export_id, held.worker)
    export = Export.objects.select_related("project").get(id=export_id)
    if export.attempts > MAX_ATTEMPTS:
        Export.objects.filter(id=export_id, worker=me).update(
            status=Export.Status.FAILED, finished_at=now,
            error=f"The export's worker was lost {export.attempts - 1} times; not again.")
        return None
    return export


class Heartbeat:
    """While the block runs, touch the export's heartbeat from a thread, so the reaper tells
    a long export from one whose worker died."""

    def __init__(self, export: Export):
        self.export_id, self.worker = export.id, export.worker
        self.every = max(1.0, settings.EXPORT_HEARTBEAT_STALE_SECONDS / 4)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True,
                                       name=f"export-{export.id}-heartbeat")

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()  # not joined: a beat waiting on the database must not hold us

    def _beat(self) -> None:
        try:
            while not self.stopped.wait(self.every):
                Export.objects.filter(id=self.export_id, worker=self.worker).update(
                    heartbeat_at=timezone.now())
        finally:
            connection.close()  # this thread's own connection


def exports_reap(now=None) -> dict[str, int]:
    """Requeue (or fail) building exports whose heartbeat stopped; send undelivered ones.

    Runs every minute on the worker (Celery beat) and at worker start.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS)
    counts = {"requeued": 0, "failed": 0, "dispatched": 0}
    for export in Export.objects.filter(status=Export.Status.RUNNING, heartbeat_at__lt=stale):
        same_row = Export.objects.filter(id=export.id, status=Export.Status.RUNNING,
                                         worker=export.worker, heartbeat_at=export.heartbeat_at)
        if export.attempts >= MAX_ATTEMPTS:
            counts["failed"] += same_row.update(
                status=Export.Status.FAILED, finished_at=now,
                error=f"No heartbeat from worker {export.worker} after {export.attempts} "
                      "attempts.")
        elif same_row.update(status=Export.Status.QUEUED, worker="", dispatched_at=None):
            counts["requeued"] += 1
            logger.warning("export %s: no heartbeat from %s; requeued", export.id, export.worker)
    undelivered = Export.objects.filter(
        status=Export.Status.QUEUED, dispatched_at__isnull=True,
        created_at__lt=now - timedelta(seconds=UNDELIVERED_AFTER_S))
    for export_id in undelivered.values_list("id", flat=True):
        counts["dispatched"] += export_dispatch(export_id)
    return counts
