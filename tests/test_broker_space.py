"""Each test run has a broker space and a test database of its own, and leaves nothing behind
(issue 15, item 10). The run's space is made in tests/settings.py and deleted by
tests/conftest.py; a worker of the run gets it through tests.processes.run_broker_env."""

import json
import subprocess
import sys
from pathlib import Path
from queue import Empty

import pytest
from django.conf import settings
from django.db import connection
from kombu import Connection

from annotate.services.export_runs import export_dispatch
from config.celery import app as celery_app
from tests.broker_space import broker_space_clean, broker_space_keys, broker_space_make, run_name
from tests.processes import ROOT, app_env, port_open
from training.services.jobs import job_dispatch

REDIS_URL = "redis://127.0.0.1:6379/15"  # CI's database for the broker


SEND_PING = """\
import json
from config import settings
from config.celery import ping
print(json.dumps({"options": settings.CELERY_BROKER_TRANSPORT_OPTIONS, "id": ping.delay().id}))
"""


def send_ping(space: dict[str, str], var_dir: Path) -> tuple[dict, str]:
    """Send a ping from a process of the app started in `space`, as a test run would; return
    the broker options that the app's settings gave it, and the task's id."""
    result = subprocess.run([sys.executable, "-c", SEND_PING], cwd=ROOT, check=True, text=True,
                            capture_output=True, env=app_env(VAR_DIR=str(var_dir), **space))
    sent = json.loads(result.stdout)
    return sent["options"], sent["id"]


def message_files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.msg")} if folder.is_dir() else set()


@pytest.fixture
def queues_emptied_after():
    """What a test sends into the run's space is taken out again after it."""
    yield
    with celery_app.connection_for_write() as conn:
        for queue in ("default", "gpu"):
            conn.default_channel.queue_purge(queue)


@pytest.mark.django_db
def test_a_job_and_an_export_sent_by_a_test_land_in_the_runs_space_not_the_repositorys(
        queues_emptied_after):
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        # Not the repository's var/broker, which `make run`'s worker reads.
        repo_queue = settings.BASE_DIR / "var" / "broker" / "queue"
        run_queue = Path(options["data_folder_in"])
        assert not run_queue.is_relative_to(settings.BASE_DIR), run_queue
        repo_before, run_before = message_files(repo_queue), message_files(run_queue)
        assert job_dispatch(1) and export_dispatch(1)
        assert message_files(repo_queue) == repo_before
        assert len(message_files(run_queue) - run_before) == 2
    elif settings.CELERY_BROKER_URL.startswith("redis://"):
        prefix = options.get("global_keyprefix", "")
        assert prefix and settings.TEST_RUN in prefix, options  # not db 15's shared keys
        assert job_dispatch(1) and export_dispatch(1)
        space = {"CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
                 "CELERY_BROKER_KEY_PREFIX": prefix}
        assert {f"{prefix}gpu", f"{prefix}default"} <= set(broker_space_keys(space))
    else:
        pytest.skip(f"no space of its own on {settings.CELERY_BROKER_URL.split(':')[0]}")


def test_two_runs_on_one_redis_database_see_only_their_own_messages_and_clean_only_theirs(
        tmp_path):
    if not port_open("127.0.0.1", 6379):
        pytest.skip("no Redis on 127.0.0.1:6379 (CI always has one)")
    ours, theirs = (broker_space_make(REDIS_URL, run_name()) for _ in range(2))
    assert ours["CELERY_BROKER_KEY_PREFIX"] != theirs["CELERY_BROKER_KEY_PREFIX"]
    try:
        send_ping(theirs, tmp_path)
        options, our_id = send_ping(ours, tmp_path)
        # A worker of ours takes our message, and then there is nothing more for it.
        with Connection(REDIS_URL, transport_options=options) as conn:
            queue = conn.SimpleQueue("default")
            message = queue.get(timeout=5)
            message.ack()  # else the connection hands it back to Redis when it closes
            assert message.headers["id"] == our_id
            with pytest.raises(Empty):
                queue.get(timeout=1)

        assert f"{theirs['CELERY_BROKER_KEY_PREFIX']}default" in broker_space_keys(theirs)
        assert broker_space_clean(theirs) > 0
        assert broker_space_keys(theirs) == []
        assert broker_space_keys(ours)  # a run cleans its own space only
        broker_space_clean(ours)
        assert broker_space_keys(ours) == []
    finally:
        for space in (ours, theirs):
            broker_space_clean(space)


def test_a_run_on_the_filesystem_broker_has_a_folder_of_its_own_and_cleaning_removes_it(
        tmp_path):
    ours, theirs = (broker_space_make("filesystem://", run_name()) for _ in range(2))
    var_dir = tmp_path / "var"
    try:
        their_options, _ = send_ping(theirs, var_dir)
        their_queue = Path(their_options["data_folder_in"])
        assert their_queue.parent == Path(theirs["CELERY_BROKER_DIR"]).resolve()
        assert len(message_files(their_queue)) == 1
        assert not (var_dir / "broker").exists()  # nothing under VAR_DIR
        assert Path(ours["CELERY_BROKER_DIR"]) != Path(theirs["CELERY_BROKER_DIR"])

        assert broker_space_clean(theirs) > 0
        assert not Path(theirs["CELERY_BROKER_DIR"]).exists()
        assert Path(ours["CELERY_BROKER_DIR"]).exists()  # a run cleans its own space only
    finally:
        for space in (ours, theirs):
            broker_space_clean(space)


@pytest.mark.django_db
def test_the_test_database_is_named_after_the_run():
    if connection.vendor == "sqlite":
        pytest.skip("SQLite's test database lives in the run's memory: no name to share")
    configured = settings.DATABASES["default"]["TEST"]["NAME"]
    assert connection.settings_dict["NAME"] == configured
    assert configured.endswith(f"_{settings.TEST_RUN}"), configured
