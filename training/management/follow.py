"""What the training commands share: follow a queued job until it ends."""

import sys
import time

from django.core.management.base import CommandError

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
