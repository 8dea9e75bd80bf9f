"""The time left on a job's page: from measured step times only, never climbing while a step
runs. A fake clock drives a run of 16 steps of 18 s each, after 10 s of loading."""

from training.ml.progress import eta_seconds

STEP_SECONDS = 18.0
LOAD_SECONDS = 10.0


def a_run(steps: int = 16, every: float = 1.0):
    """(now, finished steps) at each heartbeat of a run whose steps take 18 s each."""
    finished = []
    now = 0.0
    while len(finished) < steps:
        now += every
        done = int((now - LOAD_SECONDS) // STEP_SECONDS) if now >= LOAD_SECONDS else 0
        while len(finished) < min(done, steps):
            step = len(finished) + 1
            finished.append((step, LOAD_SECONDS + step * STEP_SECONDS))
        yield now, list(finished)


def test_no_number_before_the_first_step_is_measured():
    heartbeats = [(now, finished) for now, finished in a_run() if not finished]
    assert heartbeats and all(eta_seconds(finished, 16, now) is None
                              for now, finished in heartbeats)


def test_the_eta_never_climbs_within_a_step():
    by_step: dict[int, list[float]] = {}
    for now, finished in a_run():
        eta = eta_seconds(finished, 16, now)
        if eta is not None:
            by_step.setdefault(finished[-1][0], []).append(eta)
    assert set(by_step) == set(range(2, 17))  # two finished steps measure one
    for etas in by_step.values():
        assert all(later <= earlier for earlier, later in zip(etas, etas[1:], strict=False))
    # And it is right: at the second step's end, 14 steps of 18 s are left.
    assert by_step[2][0] == STEP_SECONDS * 14 and by_step[16] == [0.0] * len(by_step[16])


def test_a_reported_step_time_gives_an_eta_after_the_first_step():
    finished = [(1, LOAD_SECONDS + STEP_SECONDS)]
    etas = [eta_seconds(finished, 16, finished[0][1] + t, first_step_seconds=STEP_SECONDS)
            for t in range(0, 40, 5)]
    assert etas[0] == STEP_SECONDS * 15
    assert all(later <= earlier for earlier, later in zip(etas, etas[1:], strict=False))
    assert etas[-1] == STEP_SECONDS * 14  # a slow step: the floor, the steps after it


def test_a_slow_step_raises_the_estimate_only_when_it_ends():
    finished = [(1, 10.0), (2, 20.0)]
    during = [eta_seconds(finished, 4, 20.0 + t) for t in (0, 5, 30)]
    assert during == [20.0, 15.0, 10.0]
    assert eta_seconds(finished + [(3, 60.0)], 4, 60.0) == 25.0  # (60 - 10) / 2 per step


def test_a_running_jobs_eta_does_not_climb_between_heartbeats():
    """What the job page shows, as the heartbeat moves on within the third step."""
    from datetime import UTC, datetime

    from training.models import TrainingJob

    metrics = [{"step": step, "time": time, "attempt": 1, "seconds": STEP_SECONDS}
               for step, time in ((1, 28.0), (2, 46.0))]
    job = TrainingJob(status="running", attempts=1, step=2, total_steps=16, metrics=metrics)
    etas = []
    for now in (46.0, 50.0, 60.0, 80.0, 120.0):
        job.heartbeat_at = datetime.fromtimestamp(now, tz=UTC)
        etas.append(job.eta_seconds)
    assert etas[0] == STEP_SECONDS * 14
    assert all(later <= earlier for earlier, later in zip(etas, etas[1:], strict=False))
    job.metrics = []  # started, nothing measured yet: "estimating"
    assert job.eta_seconds is None


def test_doctests_of_the_eta_and_the_evaluation_pass():
    import doctest

    import training.kinds.policy
    import training.ml.policy
    import training.ml.progress
    import training.selectors

    for module in (training.ml.progress, training.ml.policy, training.kinds.policy,
                   training.selectors):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__
