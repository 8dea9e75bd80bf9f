"""Exports built on a worker: send, claim, keep alive, and reap the ones the broker lost.

The same rules as training jobs (training/services/jobs.py). The Export row is the source of
truth; the Celery task carries only the id. A request never fails because the broker is
down: the export stays queued, and the minute tick sends it once the broker is back. A
redelivered message (the worker was killed, or the visibility timeout passed while the
export was still building) builds it again only if the builder that held it is gone.
"""

import logging
import threading

from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.runners import MAX_ATTEMPTS, PUBLISH_RETRY, row_claim, rows_reap

from ..models import Export

logger = logging.getLogger(__name__)


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
    now = timezone.now()
    taken_from = row_claim(Export, export_id, now=now,
                           stale_seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS)
    if taken_from is None:
        return None
    if taken_from:
        logger.warning("export %s: took over from %s, which is gone", export_id, taken_from)
    export = Export.objects.select_related("project").get(id=export_id)
    if export.attempts > MAX_ATTEMPTS:
        Export.objects.filter(id=export_id, worker=export.worker).update(
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
    return rows_reap(
        Export, now=now or timezone.now(),
        stale_seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS, dispatch=export_dispatch,
        lost_error=lambda export: (f"No heartbeat from worker {export.worker} after "
                                   f"{export.attempts} attempts."))
