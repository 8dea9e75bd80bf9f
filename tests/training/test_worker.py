"""Training jobs through a real Celery worker on Redis and PostgreSQL, killed mid-job too.

The worker is a separate process, so it must reach the test database: these tests need
PostgreSQL (CI runs them there) and Redis.
"""

import os
import signal
import time

import pytest
from django.db import connection

from tests.processes import (
    BIN,
    app_env,
    port_open,
    run_broker_env,
    start_logged,
    stop,
    wait_for_text,
)
from training.models import ModelArtifact, TrainingJob

from .conftest import FAST_REWARD, import_policy_prompts, request_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker_env(settings, var_dir):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (CI runs it there): the worker shares the test database")
    if not settings.CELERY_BROKER_URL.startswith("redis://") or not port_open("127.0.0.1", 6379):
        pytest.skip("needs Redis as the broker (CI runs it there)")
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    # The run's broker space: the worker takes what these tests send, and nothing else.
    return app_env(DATABASE_URL=url, **run_broker_env(), VAR_DIR=str(var_dir),
                   TRAINING_HEARTBEAT_STALE_SECONDS="5")


def start_worker(env, log, name, queues: str = "gpu"):
    command = [str(BIN / "celery"), "-A", "config", "worker", "-Q", queues, "--concurrency", "1",
               "--prefetch-multiplier", "1", "--hostname", f"{name}@%h", "--loglevel", "INFO"]
    worker = start_logged(command, env, log)
    if not wait_for_text(log, "ready.", timeout=60):
        stop(worker)
        raise AssertionError(log.read_text())
    return worker


def wait_for(job, predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if predicate(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job.id} is {job.status} at step {job.step}:\n{job.log_tail}")


def test_a_worker_on_redis_runs_a_reward_job(worker_env, tmp_path, project, learnable_export,
                                             catalog):
    worker = start_worker(worker_env, tmp_path / "worker.log", "train")
    try:
        job, _ = request_job(project, "reward", params=FAST_REWARD, base=catalog["reward"],
                             export=learnable_export)
        job = wait_for(job, lambda j: not j.is_active, timeout=120)
    finally:
        stop(worker)
    assert job.status == "succeeded", job.error
    assert job.dispatched_at and job.celery_task_id and job.worker
    assert ModelArtifact.objects.get(job=job).metrics["eval"]["accuracy"] >= 0.85


def test_a_worker_killed_mid_job_resumes_it_from_the_checkpoint(worker_env, tmp_path, project,
                                                               learnable_export, catalog):
    log = tmp_path / "worker.log"
    worker = start_worker(worker_env, log, "killed")
    try:
        params = {**FAST_REWARD, "epochs": 40, "batch_size": 4, "checkpoint_every": 20}
        job, _ = request_job(project, "reward", params=params, base=catalog["reward"],
                             export=learnable_export)
        job = wait_for(job, lambda j: "checkpoint at step" in j.log_tail, timeout=120)
        runner_pid = int(job.worker.rsplit(":", 1)[1])  # the worker's pool process
        os.kill(runner_pid, signal.SIGKILL)
        job = wait_for(job, lambda j: j.attempts == 2 or not j.is_active, timeout=120)
        job = wait_for(job, lambda j: not j.is_active, timeout=300)
    finally:
        stop(worker)
    assert job.status == "succeeded", f"{job.error}\n{log.read_text()[-3000:]}"
    assert job.attempts == 2 and job.result["resumed_from_step"] >= 20
    assert "resuming from the checkpoint" in job.log_tail
    assert ModelArtifact.objects.filter(job=job).count() == 1  # one effect
    # The metrics show both attempts, the second starting where the checkpoint was.
    second = [m["step"] for m in job.metrics if m["attempt"] == 2]
    assert second[0] == job.result["resumed_from_step"] + 1 and second[-1] == job.total_steps


def test_a_job_whose_whole_worker_died_is_requeued_by_the_next_worker(
        worker_env, tmp_path, project, learnable_export, catalog):
    """SIGKILL the worker and all its processes: nothing hands the message back, so the next
    worker's reaper (at start, then every minute) finds the silent job and queues it again."""
    first = start_worker(worker_env, tmp_path / "first.log", "first")
    try:
        params = {**FAST_REWARD, "epochs": 40, "batch_size": 4, "checkpoint_every": 20}
        job, _ = request_job(project, "reward", params=params, base=catalog["reward"],
                             export=learnable_export)
        job = wait_for(job, lambda j: "checkpoint at step" in j.log_tail, timeout=120)
    finally:  # the kill below is the test; a failure before it must not leave the worker
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    time.sleep(6)  # past TRAINING_HEARTBEAT_STALE_SECONDS
    env = {**worker_env}
    second = start_logged(
        [str(BIN / "celery"), "-A", "config", "worker", "-Q", "gpu,default", "--concurrency",
         "1", "--hostname", "second@%h", "--loglevel", "INFO"], env, tmp_path / "second.log")
    try:
        job = wait_for(job, lambda j: not j.is_active, timeout=300)
    finally:
        stop(second)
    assert job.status == "succeeded", job.error
    assert job.attempts == 2 and job.result["resumed_from_step"] >= 20
    assert TrainingJob.objects.filter(status="running").count() == 0


def test_a_ppo_job_killed_mid_run_resumes_from_its_checkpoint(worker_env, tmp_path, project,
                                                              ppo_setup, ppo_catalog):
    import_policy_prompts(project, 40)
    reward = ModelArtifact.objects.create(project=project, name="rm", version=1, kind="reward",
                                          base_model="tiny", path=ppo_setup["reward"])
    log = tmp_path / "worker.log"
    worker = start_worker(worker_env, log, "ppo")
    try:
        job, _ = request_job(
            project, "policy", base=ppo_catalog["policy"], reward=reward,
            params={"total_episodes": 1600, "batch_size": 16, "mini_batch_size": 8,
                    "learning_rate": 0.003, "response_length": 16, "checkpoint_every": 10,
                    "threads": 1})
        job = wait_for(job, lambda j: "checkpoint at step" in j.log_tail, timeout=120)
        os.kill(int(job.worker.rsplit(":", 1)[1]), signal.SIGKILL)
        job = wait_for(job, lambda j: not j.is_active and j.attempts >= 1, timeout=300)
    finally:
        stop(worker)
    assert job.status == "succeeded", f"{job.error}\n{log.read_text()[-3000:]}"
    assert job.attempts == 2 and job.result["resumed_from_step"] >= 10
    policy = ModelArtifact.objects.get(job=job)
    assert policy.kind == "policy" and ModelArtifact.objects.filter(job=job).count() == 1
    second = [m["step"] for m in job.metrics if m["attempt"] == 2]
    assert second[0] == job.result["resumed_from_step"] + 1 and second[-1] == job.total_steps
