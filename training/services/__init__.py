"""Writes for training, by concern, named <entity>_<action>:

- requests: job_request, the one way a job is asked for (API, pages, commands);
- jobs: create, dispatch, claim, run, cancel, reap;
- registry: artifact_register;
- scoring: model_score on request;
- rounds: round_start, rounds_advance, round_retry, round_cancel, the minute tick.

Views, API endpoints, commands and tasks call `services.<function>`.
"""

from .jobs import (
    job_cancel,
    job_claim,
    job_create,
    job_directory,
    job_dispatch,
    job_run,
    jobs_reap,
)
from .registry import artifact_register
from .requests import job_request, model_resolve
from .rounds import (
    job_run_and_rounds_advance,
    round_cancel,
    round_retry,
    round_start,
    rounds_advance,
    training_tick,
)
from .scoring import model_score

__all__ = [
    "artifact_register",
    "job_cancel",
    "job_claim",
    "job_create",
    "job_directory",
    "job_dispatch",
    "job_request",
    "job_run",
    "job_run_and_rounds_advance",
    "jobs_reap",
    "model_resolve",
    "model_score",
    "round_cancel",
    "round_retry",
    "round_start",
    "rounds_advance",
    "training_tick",
]
