"""Exports built on a worker: send, claim, and reap the ones the broker lost.

The same rules as training jobs and imports (config/runners.py). The Export row is the source
of truth; the Celery task carries only the id. A request never fails because the broker is
down: the export stays queued, and the minute tick sends it once the broker is back. A
redelivered message (the worker was killed, or the visibility timeout passed while the
export was still building) builds it again only if the builder that held it is gone.
"""

from django.conf import settings
from django.utils import timezone

from config.runners import Heartbeat as RowHeartbeat
from config.runners import row_dispatch, row_take, rows_reap

from ..models import Export


def export_dispatch(export_id: int) -> bool:
    """Send the export's task to the broker; if the broker is down, leave it queued."""
    from ..tasks import export_run_task

    return row_dispatch(Export, export_id, export_run_task, label="export")


def export_claim(export_id: int) -> Export | None:
    """Take the export for this process, or return None when it is not ours to build."""
    if not row_take(Export, export_id, stale_seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS,
                    label="export"):
        return None
    return Export.objects.select_related("project").get(id=export_id)


class Heartbeat(RowHeartbeat):
    """While the block runs, keep the export's heartbeat fresh."""

    def __init__(self, export: Export):
        super().__init__(Export, export.id, export.worker,
                         stale_seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS)


def exports_reap(now=None) -> dict[str, int]:
    """Requeue (or fail) building exports whose heartbeat stopped; send undelivered ones.

    Runs every minute on the worker (Celery beat) and at worker start.
    """
    return rows_reap(
        Export, now=now or timezone.now(),
        stale_seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS, dispatch=export_dispatch,
        lost_error=lambda export: (f"No heartbeat from worker {export.worker} after "
                                   f"{export.attempts} attempts."))
