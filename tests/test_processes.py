"""The real processes: a Celery worker on each broker, and `make run` serving the demo."""

import http.cookiejar
import re
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from tests.broker_space import broker_space_clean, broker_space_keys, broker_space_make, run_name
from tests.processes import (
    BIN,
    ROOT,
    app_env,
    free_port,
    port_open,
    start_logged,
    stop,
    wait_for_text,
)

pytestmark = pytest.mark.slow

SEND_PING = "from config.celery import ping; print(ping.delay().id)"


def send_ping(env: dict[str, str]) -> str:
    sent = subprocess.run([sys.executable, "-c", SEND_PING], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return sent.stdout.strip()


@pytest.fixture
def redis_spaces():
    """Make broker spaces on Redis, as two test runs would; delete them at the end."""
    if not port_open("127.0.0.1", 6379):
        pytest.skip("no Redis on 127.0.0.1:6379 (CI always has one)")
    made = []

    def make() -> dict[str, str]:
        made.append(broker_space_make("redis://127.0.0.1:6379/14", run_name()))
        return made[-1]

    yield make
    for space in made:
        broker_space_clean(space)


@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_a_worker_takes_a_task_from_the_broker(tmp_path, broker, request):
    env = app_env(VAR_DIR=str(tmp_path))  # the filesystem broker's folders: under VAR_DIR
    if broker == "redis":
        env.update(request.getfixturevalue("redis_spaces")())
    log = tmp_path / "worker.log"
    command = [
        str(BIN / "celery"),
        "-A",
        "config",
        "worker",
        "-Q",
        "default",
        "--concurrency",
        "1",
        "--hostname",
        f"test-{broker}@%h",
        "--loglevel",
        "INFO",
    ]
    worker = start_logged(command, env, log)
    try:
        assert wait_for_text(log, "ready.", timeout=60), log.read_text()
        task_id = send_ping(env)
        assert wait_for_text(log, f"rlhf_studio.ping[{task_id}] succeeded", timeout=30), (
            log.read_text()
        )
    finally:
        stop(worker)


def test_a_worker_takes_nothing_another_test_run_sent(tmp_path, redis_spaces):
    """Two runs on one Redis database (issue 15, item 10): the ping the other run sent
    stays in the other run's space; the worker takes only its own run's."""
    ours, theirs = redis_spaces(), redis_spaces()
    env = app_env(VAR_DIR=str(tmp_path), **ours)
    log = tmp_path / "worker.log"
    worker = start_logged([str(BIN / "celery"), "-A", "config", "worker", "-Q", "default",
                           "--concurrency", "1", "--hostname", "ours@%h", "--loglevel", "INFO"],
                          env, log)
    try:
        assert wait_for_text(log, "ready.", timeout=60), log.read_text()
        their_id = send_ping(app_env(VAR_DIR=str(tmp_path), **theirs))
        our_id = send_ping(env)
        assert wait_for_text(log, f"rlhf_studio.ping[{our_id}] succeeded", timeout=30), (
            log.read_text()
        )
    finally:
        stop(worker)
    assert their_id not in log.read_text()
    assert f"{theirs['CELERY_BROKER_KEY_PREFIX']}default" in broker_space_keys(theirs)


def test_make_run_serves_the_login_page_and_the_demo_project(tmp_path):
    port = free_port()
    log = tmp_path / "run.log"
    env = app_env(VAR_DIR=str(tmp_path / "var"), PORT=str(port), HOST="127.0.0.1")
    run = start_logged(["bash", "scripts/run"], env, log)
    try:
        assert wait_for_text(log, "Quit the server with", timeout=120), log.read_text()
        assert wait_for_text(log, "ready.", timeout=60), log.read_text()  # the worker
        text = log.read_text()
        assert "alice  password: alice-demo" in text

        base = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        login_page = opener.open(f"{base}/accounts/login/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page).group(1)
        form = urllib.parse.urlencode(
            {"username": "alice", "password": "alice-demo", "csrfmiddlewaretoken": token}
        ).encode()
        home = (
            opener.open(
                urllib.request.Request(
                    f"{base}/accounts/login/",
                    data=form,
                    headers={"Referer": f"{base}/accounts/login/"},
                )
            )
            .read()
            .decode()
        )
        assert "Demo: helpfulness" in home
        project_page = opener.open(f"{base}/projects/demo-helpfulness/").read().decode()
        assert "Rank the answers from <strong>most</strong>" in project_page
    finally:
        stop(run)
