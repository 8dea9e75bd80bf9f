"""A whole round on a real worker with the minute tick switched off (no beat): each step
starts within seconds of the last one's end, because the end of a step moves the round on.

Needs PostgreSQL and Redis (the worker is another process), as tests/training/test_worker.py.
"""

import time

import pytest

from tests.processes import stop
from training import services
from training.models import Round

from .conftest import FAST_REWARD
from .test_policy_jobs import FAST_PPO
from .test_worker import start_worker, worker_env  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GAP_SECONDS = 5


def test_consecutive_steps_start_within_seconds_without_the_tick(
        worker_env, tmp_path, project, learnable_export, ppo_catalog, settings):  # noqa: F811
    plan = {"reward": {"params": FAST_REWARD},
            "policy": {"params": {**FAST_PPO, "total_episodes": 16}},
            "generate": {"params": {"max_new_tokens": 4}}, "export": {"min_agreement": 0.66}}
    # No -B: the worker runs no beat, so nothing ticks but its one reap at start.
    # The worker asks for each next step, so it checks the catalog's models too.
    env = {**worker_env, "MODEL_ROOTS": ":".join(str(p) for p in settings.MODEL_ROOTS)}
    worker = start_worker(env, tmp_path / "worker.log", "rounds", queues="gpu,default")
    try:
        round_ = services.round_start(project=project, created_by=None, plan=plan,
                                      reward_model=ppo_catalog["reward"],
                                      policy_model=ppo_catalog["policy"])
        deadline = time.monotonic() + 600
        while round_.status in Round.ACTIVE and time.monotonic() < deadline:
            time.sleep(0.5)
            round_.refresh_from_db()
    finally:
        stop(worker)
    assert round_.status == "ranking", (round_.status, round_.error)
    ends_and_starts = [
        ("export -> reward", round_.export.finished_at, round_.reward_job.started_at),
        ("reward -> policy", round_.reward_job.finished_at, round_.policy_job.started_at),
        ("policy -> generation", round_.policy_job.finished_at,
         round_.generation_job.started_at)]
    for name, ended, began in ends_and_starts:
        gap = (began - ended).total_seconds()
        assert 0 <= gap < GAP_SECONDS, f"{name}: {gap:.1f} s between the steps"
