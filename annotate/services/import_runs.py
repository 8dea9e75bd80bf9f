"""Imports run on a worker: the stored upload, send, claim, keep alive, reap.

The same rules as exports and training jobs (config/runners.py). The PromptImport row is the
source of truth; the Celery task carries only the id. A request never fails because the
broker is down: the import stays queued, and the minute tick sends it once the broker is
back. A redelivered message imports the file again only if the importer that held it is
gone (its transaction died with it, so nothing of the first try was written).
"""

import os
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from config.runners import Heartbeat, row_dispatch, row_take, rows_reap

from ..models import PromptImport

UPLOADS = "imports"  # under VAR_DIR, shared by the web server and the workers


def upload_store(upload: UploadedFile) -> str:
    """Copy an upload under VAR_DIR, readable by this user only; return its path there."""
    relative = f"{UPLOADS}/{uuid.uuid4().hex}.upload"  # never the client's file name
    path = settings.VAR_DIR / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return relative


def upload_path(record: PromptImport) -> Path:
    return settings.VAR_DIR / record.upload


def upload_remove(record: PromptImport) -> None:
    """Remove the import's stored upload: it ended, and its rows (or errors) are stored."""
    if record.upload:
        upload_remove_file(record.upload)
        PromptImport.objects.filter(id=record.id, upload=record.upload).update(upload="")


def upload_remove_file(relative: str) -> None:
    (settings.VAR_DIR / relative).unlink(missing_ok=True)


def prompt_import_dispatch(import_id: int) -> bool:
    """Send the import's task to the broker; if the broker is down, leave it queued."""
    from ..tasks import prompt_import_run_task

    return row_dispatch(PromptImport, import_id, prompt_import_run_task, label="import")


def prompt_import_claim(import_id: int) -> PromptImport | None:
    """Take the import for this process, or return None when it is not ours to run."""
    if not row_take(PromptImport, import_id, label="import",
                    stale_seconds=settings.IMPORT_HEARTBEAT_STALE_SECONDS):
        return None
    return PromptImport.objects.select_related("project").get(id=import_id)


# How often a running import writes its heartbeat and the lines read so far.
PROGRESS_EVERY_SECONDS = 2.0


class ImportHeartbeat(Heartbeat):
    """While the block runs, keep the import's heartbeat fresh and write `fields()` with it
    (the lines read: the import's own transaction cannot show them until it ends)."""

    def __init__(self, record: PromptImport, fields):
        stale_seconds = settings.IMPORT_HEARTBEAT_STALE_SECONDS
        super().__init__(PromptImport, record.id, record.worker, stale_seconds=stale_seconds,
                         every=min(PROGRESS_EVERY_SECONDS, stale_seconds / 4), fields=fields)


def prompt_imports_reap(now=None) -> dict[str, int]:
    """Requeue (or fail) running imports whose heartbeat stopped; send undelivered ones;
    remove the uploads of imports that failed that way.

    Runs every minute on the worker (Celery beat) and at worker start.
    """
    counts = rows_reap(
        PromptImport, now=now or timezone.now(),
        stale_seconds=settings.IMPORT_HEARTBEAT_STALE_SECONDS, dispatch=prompt_import_dispatch,
        lost_error=lambda record: (f"{record.filename}: nothing imported: no heartbeat from "
                                   f"worker {record.worker} after {record.attempts} attempts."))
    for record in PromptImport.objects.filter(status=PromptImport.Status.FAILED).exclude(
            upload=""):
        upload_remove(record)
    return counts
