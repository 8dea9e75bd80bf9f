"""A broker space of each test run's own (issue 15, item 10).

On the filesystem broker a run gets a temporary folder, not the repository's `var/broker`
(where `make run`'s worker would take what the tests sent); on Redis it gets a key prefix, so
runs that share a database never take each other's messages. The space is described by the
environment that selects it, which a worker of the run is started with too, and a run deletes
its space when it ends: nothing it sent waits for a later run.
"""

import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path


def run_name() -> str:
    """Return a name for one test run, unique among the runs on this machine at once."""
    return f"{os.getpid()}_{secrets.token_hex(3)}"


def broker_space_make(broker_url: str, run: str) -> dict[str, str]:
    """Return the environment that gives the run a space of its own on `broker_url`.

    >>> broker_space_make("redis://127.0.0.1:6379/15", "42_beef")
    {'CELERY_BROKER_URL': 'redis://127.0.0.1:6379/15', 'CELERY_BROKER_KEY_PREFIX': 'rlhf-studio-test-42_beef:'}
    """  # noqa: E501
    space = {"CELERY_BROKER_URL": broker_url}
    if broker_url.startswith("filesystem://"):
        space["CELERY_BROKER_DIR"] = tempfile.mkdtemp(prefix=f"rlhf-studio-test-{run}-broker-")
    elif broker_url.startswith(("redis://", "rediss://")):
        space["CELERY_BROKER_KEY_PREFIX"] = f"rlhf-studio-test-{run}:"
    return space


def broker_space_clean(space: dict[str, str]) -> int:
    """Delete everything in the space: its folder, or each Redis key under its prefix.
    Return how many message files or keys were left there."""
    if folder := space.get("CELERY_BROKER_DIR"):
        left = sum(1 for path in Path(folder).rglob("*") if path.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return left
    if prefix := space.get("CELERY_BROKER_KEY_PREFIX"):
        return _redis_delete_prefixed(space["CELERY_BROKER_URL"], prefix)
    return 0


def broker_space_keys(space: dict[str, str]) -> list[str]:
    """Return the Redis keys under the space's prefix, sorted."""
    import redis

    with redis.Redis.from_url(space["CELERY_BROKER_URL"]) as client:
        match = _glob_escape(space["CELERY_BROKER_KEY_PREFIX"]) + "*"
        return sorted(key.decode() for key in client.scan_iter(match=match, count=1000))


def _redis_delete_prefixed(url: str, prefix: str) -> int:
    import redis

    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=_glob_escape(prefix) + "*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
        return len(keys)


def _glob_escape(text: str) -> str:
    """Escape Redis's glob characters, so a prefix matches only itself."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
