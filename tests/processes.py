"""Helpers for tests that run the app's real processes (a worker, `make run`)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def app_env(**overrides: str) -> dict[str, str]:
    """The environment of a fresh app process: nothing of the test run's own configuration."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "CELERY_BROKER_DIR",
            "CELERY_BROKER_KEY_PREFIX",
            "DJANGO_ENV",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "VAR_DIR",
            "DJANGO_SETTINGS_MODULE",
        }
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def run_broker_env() -> dict[str, str]:
    """The environment of this test run's broker and its space of its own (tests/settings.py):
    for a worker that must take what the tests send."""
    from django.conf import settings

    return dict(settings.TEST_BROKER_SPACE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_text(path: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def stop(process: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True, and everything it started."""
    try:
        os.killpg(process.pid, 15)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, 9)
        process.wait()


def start_logged(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `command` in its own session (so stop() ends its children too), logging to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
