import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()


def _warm() -> None:
    """Load as a worker starts what its first request would otherwise wait for (a 10,000-prompt
    upload took 0.31 s as a worker's first request, 0.06 s after; bench/README.md): the URL
    configuration with every view module and reverse()'s map, and Celery's task registry and
    producer pool (which open no connection: a broker that is down fails no start)."""
    from config import celery_app

    get_resolver().reverse_dict  # noqa: B018 (a property that builds the map)
    celery_app.finalize()
    celery_app.producer_pool  # noqa: B018


_warm()
