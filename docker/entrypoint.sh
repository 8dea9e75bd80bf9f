#!/bin/sh
# One image, several roles: the first argument picks what this container runs.
#   web         migrate, then gunicorn on :8000
#   worker      Celery worker for the `default` queue (exports, imports, light work)
#   gpu-worker  Celery worker for the `gpu` queue (training)
#   anything else is exec'd as given, e.g. `python manage.py createsuperuser`
# Extra arguments after a role are passed on to gunicorn / celery.
set -eu

role="${1:-web}"
if [ "$#" -gt 0 ]; then
    shift
fi

case "$role" in
    web)
        # Only web migrates, so several worker containers never race on schema changes.
        python manage.py migrate --noinput
        exec gunicorn config.wsgi:application \
            --bind 0.0.0.0:8000 \
            --workers "${WEB_CONCURRENCY:-3}" \
            --access-logfile - \
            "$@"
        ;;
    worker)
        # -B: this (single) CPU worker also runs beat, which reaps training jobs whose
        # worker died. Run one such worker per deployment, or a separate `celery beat`.
        exec celery -A config worker \
            -Q default -B --schedule /tmp/celerybeat-schedule \
            --loglevel "${CELERY_LOGLEVEL:-INFO}" \
            "$@"
        ;;
    gpu-worker)
        # One training task per GPU worker, and no prefetching: a queued job must stay
        # in the broker so another (idle) GPU worker can pick it up.
        exec celery -A config worker \
            -Q gpu \
            --concurrency 1 \
            --prefetch-multiplier 1 \
            --loglevel "${CELERY_LOGLEVEL:-INFO}" \
            "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
