"""Training jobs through the services: create, run (a real training process), cancel, fail,
claim, reap, score, and send prompts back. The worker itself is in test_worker.py."""

import os
import shutil
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotate import services as annotate_services
from annotate.models import Completion, Prompt
from config.errors import Invalid, QuotaExceeded, status_of
from config.runners import runner_id
from training import selectors, services
from training.kinds.base import var_absolute
from training.models import CompletionScore, ModelArtifact, TrainingJob
from training.services import jobs as job_services

from .conftest import FAST_REWARD, request_job

pytestmark = pytest.mark.django_db


def reward_job(project, export, base: str, **params):
    job, _ = request_job(project, "reward", params=FAST_REWARD | params, base=base,
                         export=export)
    return job


@pytest.fixture
def tiny_reward(catalog):
    return catalog["reward"]  # the tiny reward model, by its name in the catalog


@pytest.mark.slow
def test_a_reward_job_trains_registers_a_model_and_scores_the_project(
        project, learnable_export, tiny_reward):
    job, created = request_job(project, "reward",
                               params={**FAST_REWARD, "model_name": "helpful-rm"},
                               base=tiny_reward, export=learnable_export)
    assert created and job.status == "queued"
    services.job_run(job.id)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.attempts == 1 and job.step == job.total_steps > 0
    assert [m["step"] for m in job.metrics] == list(range(1, job.total_steps + 1))
    assert {"loss", "accuracy", "margin"} <= set(job.metrics[-1])
    assert "evaluating on" in job.log_tail
    artifact = ModelArtifact.objects.get(job=job)
    assert (artifact.name, artifact.version, artifact.kind) == ("helpful-rm", 1, "reward")
    assert artifact.export == learnable_export and artifact.base_model == tiny_reward
    assert artifact.metrics["eval"]["pairs"] == learnable_export.counts["pairs"]["test"]
    assert artifact.metrics["eval"]["accuracy"] >= 0.85
    assert (var_absolute(artifact.path) / "config.json").is_file()

    scoring, _ = request_job(project, "score", reward=artifact)
    assert scoring.reward_artifact == artifact and scoring.base_artifact is None
    services.job_run(scoring.id)
    scoring.refresh_from_db()
    assert scoring.status == "succeeded", scoring.error
    assert CompletionScore.objects.filter(artifact=artifact).count() == (
        Completion.objects.filter(prompt__project=project).count())
    found = selectors.disagreements(artifact)
    assert len(found) == 32 and found == sorted(found, key=lambda d: (d.agreement, d.prompt_id))
    assert sum(d.agreement for d in found) / len(found) > 0.8  # it learned what labelers said
    sent = annotate_services.prompts_request_more_rankings(project=project,
                                                           prompt_ids=[found[0].prompt_id])
    assert sent == 1 and Prompt.objects.get(id=found[0].prompt_id).extra_rankings == 1


@pytest.mark.slow
def test_a_failing_training_process_fails_the_job_with_its_reason(project, learnable_export,
                                                                  tiny_models, tmp_path,
                                                                  settings):
    # A catalog model that was there when the job was asked for, and is gone when it runs.
    settings.MODEL_ROOTS = [tmp_path / "models"]
    shutil.copytree(tiny_models["reward"], tmp_path / "models" / "no-such-model")
    job, _ = request_job(project, "reward", params=FAST_REWARD, base="no-such-model",
                         export=learnable_export)
    shutil.rmtree(tmp_path / "models" / "no-such-model")
    services.job_run(job.id)
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at is not None
    # One line that says why, without the server's paths (the traceback is in the log).
    assert job.error.startswith("Reward model failed: ") and "no-such-model" in job.error
    assert "\n" not in job.error and str(tmp_path) not in job.error
    assert "Traceback" in job.log_tail
    assert not ModelArtifact.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_job_at_the_end_of_a_step(project, learnable_export,
                                                         tiny_reward):
    job = reward_job(project, learnable_export, base=tiny_reward, epochs=100, batch_size=2)

    def run() -> None:
        try:
            services.job_run(job.id)
        finally:
            connection.close()  # the thread's own: left open, the test database stays in use

    runner = threading.Thread(target=run)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.step >= 2:
                break
            time.sleep(0.2)
        assert job.step >= 2, job.log_tail
        services.job_cancel(job)
    finally:
        runner.join(timeout=60)
    job.refresh_from_db()
    assert job.status == "cancelled" and job.step < job.total_steps
    # The trainer stops at the end of the step in which the signal came: the last step it
    # reported is the one it names.
    assert "cancel requested" in job.log_tail
    assert f"cancelled: stopped after step {job.step} of {job.total_steps}" in job.log_tail
    assert not ModelArtifact.objects.exists()


def test_a_queued_job_is_cancelled_at_once(project, learnable_export, tiny_reward):
    job = reward_job(project, learnable_export, base=tiny_reward)
    assert services.job_cancel(job).status == "cancelled"
    assert services.job_claim(job.id) is None  # a late delivery finds nothing to do


def test_bad_parameters_are_refused_naming_the_field(project, learnable_export, other_project,
                                                     tiny_reward):
    def refused(project=project, params=None, base=tiny_reward):
        with pytest.raises(Invalid) as caught:
            request_job(project, "reward", params=params, base=base, export=learnable_export)
        assert status_of(caught.value) == 400
        return caught.value.message

    assert "epochs" in refused(params={"epochs": 0})
    assert refused(params={"epoch": 2}).startswith("params: unknown epoch; reward jobs take ")
    # Paths are the job's to set: a request cannot name one.
    assert refused(params={"output_dir": "/etc"}).startswith("params: unknown output_dir;")
    assert refused(project=other_project) == (
        f"export: no finished export {learnable_export.id} in this project")
    assert refused(base="") == "base_model: choose a base model"
    assert not TrainingJob.objects.exists()


def test_identical_requests_share_one_active_job_and_a_quota_caps_the_rest(
        project, learnable_export, tiny_reward, settings):
    settings.TRAINING_MAX_ACTIVE_JOBS = 2
    first = reward_job(project, learnable_export, base=tiny_reward)
    for _ in range(5):
        again, created = request_job(project, "reward", params=dict(FAST_REWARD),
                                     base=tiny_reward, export=learnable_export)
        assert again.id == first.id and not created
    reward_job(project, learnable_export, base=tiny_reward, epochs=2)
    with pytest.raises(QuotaExceeded) as caught:
        reward_job(project, learnable_export, base=tiny_reward, epochs=4)
    assert status_of(caught.value) == 429
    services.job_cancel(first)  # a finished job frees its place and its key
    assert reward_job(project, learnable_export, base=tiny_reward).id != first.id


# --- claiming and reaping, with no training process ------------------------------------------


@pytest.fixture
def queued(project, learnable_export, tiny_reward):
    return reward_job(project, learnable_export, base=tiny_reward)


def test_a_redelivered_job_stays_with_a_live_runner(queued):
    assert services.job_claim(queued.id).worker == runner_id()
    assert services.job_claim(queued.id) is None  # this process still runs it


def test_a_job_whose_runner_died_is_taken_over(queued):
    dead = _dead_pid()
    TrainingJob.objects.filter(id=queued.id).update(
        status="running", attempts=1, heartbeat_at=timezone.now(),
        worker=f"{socket.gethostname()}:{dead}")
    taken = services.job_claim(queued.id)
    assert taken is not None and taken.attempts == 2 and taken.worker.endswith(str(os.getpid()))


def test_a_runner_elsewhere_counts_as_gone_only_when_its_heartbeat_is_stale(queued, settings):
    TrainingJob.objects.filter(id=queued.id).update(
        status="running", attempts=1, worker="gpu-node-7:4242", heartbeat_at=timezone.now())
    assert services.job_claim(queued.id) is None
    stale = timezone.now() - timedelta(seconds=settings.TRAINING_HEARTBEAT_STALE_SECONDS + 1)
    TrainingJob.objects.filter(id=queued.id).update(heartbeat_at=stale)
    assert services.job_claim(queued.id).attempts == 2


def test_a_job_lost_too_often_fails_instead_of_starting_again(queued):
    TrainingJob.objects.filter(id=queued.id).update(
        status="running", attempts=job_services.MAX_ATTEMPTS,
        worker=f"{socket.gethostname()}:{_dead_pid()}", heartbeat_at=timezone.now())
    assert services.job_claim(queued.id) is None
    queued.refresh_from_db()
    assert queued.status == "failed" and "lost 3 times" in queued.error


def test_the_reaper_requeues_silent_jobs_and_fails_hopeless_ones(project, learnable_export,
                                                                 tiny_reward, settings):
    stale = timezone.now() - timedelta(seconds=settings.TRAINING_HEARTBEAT_STALE_SECONDS + 5)
    silent = reward_job(project, learnable_export, base=tiny_reward)
    hopeless = reward_job(project, learnable_export, base=tiny_reward, epochs=2)
    alive = reward_job(project, learnable_export, base=tiny_reward, epochs=4)
    TrainingJob.objects.filter(id=silent.id).update(status="running", attempts=1,
                                                    heartbeat_at=stale, worker="n1:1")
    TrainingJob.objects.filter(id=hopeless.id).update(status="running", attempts=3,
                                                      heartbeat_at=stale, worker="n1:2")
    TrainingJob.objects.filter(id=alive.id).update(status="running", attempts=1,
                                                   heartbeat_at=timezone.now(), worker="n1:3")
    TrainingJob.objects.filter(id=silent.id).update(created_at=stale)
    counts = services.jobs_reap()
    assert counts["requeued"] == 1 and counts["failed"] == 1
    silent.refresh_from_db()
    hopeless.refresh_from_db()
    alive.refresh_from_db()
    assert silent.status == "queued" and silent.dispatched_at is not None  # sent again
    assert hopeless.status == "failed" and "No heartbeat from worker n1:2" in hopeless.error
    assert alive.status == "running"


def test_a_job_created_while_the_broker_is_down_is_sent_once_it_is_back(
        project, learnable_export, tiny_reward, monkeypatch, django_capture_on_commit_callbacks):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(job_services.celery_app, "send_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        job = reward_job(project, learnable_export, base=tiny_reward)
    job.refresh_from_db()
    assert job.status == "queued" and job.dispatched_at is None
    monkeypatch.undo()
    TrainingJob.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(minutes=1))
    assert services.jobs_reap()["dispatched"] == 1
    job.refresh_from_db()
    assert job.dispatched_at is not None and job.celery_task_id


def _dead_pid() -> int:
    """A pid that was just used and is gone."""
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_multi_gpu_job_runs_under_accelerate_launch(tmp_path):
    command = job_services._command({"config": {"num_gpus": 4}}, tmp_path)
    assert command[1:5] == ["launch", "--config_file", str(job_services.ACCELERATE_CONFIG),
                            "--num_processes"]
    assert command[5:] == ["4", "-m", "training.ml.run", str(tmp_path / "spec.json")]
    assert job_services.ACCELERATE_CONFIG.is_file()
    single = job_services._command({"config": {"num_gpus": 1}}, tmp_path)
    assert single[1:] == ["-m", "training.ml.run", str(tmp_path / "spec.json")]


def test_a_runner_whose_job_was_taken_over_registers_no_model(queued, monkeypatch, tmp_path):
    """Its heartbeat went stale, another runner took the job over, and then the first one
    finished after all: the model is the new runner's to register, once."""
    def finished_after_a_takeover(relay, command):
        TrainingJob.objects.filter(id=queued.id).update(worker="gpu-node-7:42")
        return 0, {"model_dir": str(tmp_path / "model"), "steps": 3}

    monkeypatch.setattr(job_services._Relay, "run", finished_after_a_takeover)
    job_services._run(services.job_claim(queued.id))
    queued.refresh_from_db()
    assert queued.status == "running" and queued.worker == "gpu-node-7:42"
    assert not ModelArtifact.objects.exists()
