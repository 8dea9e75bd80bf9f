"""Celery tasks: take an id, call one service."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, name="annotate.export_run")
def export_run_task(export_id: int) -> None:
    services.export_run(export_id)
