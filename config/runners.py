"""Who runs a background job (a training job, an export), and whether that runner is gone.

A job row records its runner as host:pid and a heartbeat. A redelivered Celery message
(a worker killed mid-job, or the broker's visibility timeout passing while the job still
runs) may take the job over only when that runner is gone: on this host its process is
dead; elsewhere its heartbeat is older than the stale limit.
"""

import os
import socket
from datetime import datetime, timedelta


def runner_id() -> str:
    """This process, as host:pid.

    >>> runner_id().endswith(f":{os.getpid()}")
    True
    """
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_gone(worker: str, heartbeat_at: datetime | None, *, now: datetime,
                stale_seconds: float) -> bool:
    """Whether the runner `worker` (host:pid) that last beat at `heartbeat_at` is gone."""
    host, _, pid = worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not process_alive(int(pid))
    return heartbeat_at is None or heartbeat_at < now - timedelta(seconds=stale_seconds)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
