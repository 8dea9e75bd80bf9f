"""What the training commands share: follow a queued job until it ends."""

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.core.management.base import CommandError

from training import services
from training.models import TrainingJob

POLL_S = 2.0


def follow(job: TrainingJob) -> TrainingJob:
    """Print the job's progress until it ends; Ctrl-C stops following, not the job."""
    shown = -1
    try:
        while job.is_active:
            time.sleep(POLL_S)
            job.refresh_from_db()
            if job.step != shown:
                shown = job.step
                sys.stdout.write(f"\r{job.status}: step {job.step}/{job.total_steps or '?'}")
                sys.stdout.flush()
    except KeyboardInterrupt:
        raise CommandError(f"stopped following job {job.id}; it goes on") from None
    sys.stdout.write("\n")
    if job.status != TrainingJob.Status.SUCCEEDED:
        raise CommandError(f"job {job.id} {job.status}: {job.error[-2000:]}")
    return job


def queue_and_follow(stdout, create: Callable[[], tuple[TrainingJob, bool]],
                     report: Callable[[dict], None], out: Path | None,
                     result_dir: str) -> TrainingJob:
    """Create the job (a refusal is a CommandError), follow it, copy its output to `out`."""
    try:
        job, created = create()
    except services.JobRefused as refused:
        raise CommandError(str(refused)) from None
    stdout.write(f"{'Queued' if created else 'Already active:'} job {job.id}; "
                         "following it (Ctrl-C stops following, not the job)")
    job = follow(job)
    report(job.result)
    if out:
        shutil.copytree(job.result[result_dir], out, dirs_exist_ok=True)
        stdout.write(f"Copied to {out}")
    return job
