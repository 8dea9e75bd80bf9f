"""Celery tasks: take an id, call one service.

Training tasks go to the `gpu` queue (CELERY_TASK_ROUTES). acks_late with
reject_on_worker_lost: a worker killed mid-job hands the message back, and job_run on the
next delivery takes the job over only if its runner is really gone.
"""

from celery import shared_task
from celery.signals import worker_ready

from . import services


@shared_task(acks_late=True, reject_on_worker_lost=True, name="training.job_run")
def job_run_task(job_id: int) -> None:
    services.job_run_and_rounds_advance(job_id)


@shared_task(name="training.jobs_reap")
def jobs_reap_task() -> dict:
    return services.training_tick()


@worker_ready.connect
def reap_at_start(**kwargs) -> None:
    """A restarted worker first looks for jobs its predecessor left behind."""
    jobs_reap_task.delay()
