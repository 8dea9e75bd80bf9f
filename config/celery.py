"""The Celery app. Tasks live in each app's tasks.py and only call services."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("rlhf_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="rlhf_studio.ping")
def ping() -> str:
    """Answer 'pong': lets a test or an operator see that a worker takes tasks from the broker."""
    return "pong"
