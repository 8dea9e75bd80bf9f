"""Celery tasks: take an id, call one service.

acks_late with reject_on_worker_lost, as for training jobs: a worker killed mid-export or
mid-import hands the message back, and the service runs it again only if its runner is
really gone.
"""

from celery import shared_task
from celery.signals import worker_ready

from . import services


@shared_task(acks_late=True, reject_on_worker_lost=True, name="annotate.export_run")
def export_run_task(export_id: int) -> None:
    services.export_run(export_id)


@shared_task(name="annotate.exports_reap")
def exports_reap_task() -> dict:
    return services.exports_reap()


@shared_task(acks_late=True, reject_on_worker_lost=True, name="annotate.prompt_import_run")
def prompt_import_run_task(import_id: int) -> None:
    services.prompt_import_run(import_id)


@shared_task(name="annotate.prompt_imports_reap")
def prompt_imports_reap_task() -> dict:
    return services.prompt_imports_reap()


@worker_ready.connect
def reap_at_start(**kwargs) -> None:
    """A restarted worker first looks for exports and imports its predecessor left behind."""
    exports_reap_task.delay()
    prompt_imports_reap_task.delay()
