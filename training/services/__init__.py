"""Writes for training: jobs and the model registry, named <entity>_<action>.

Views, API endpoints, commands and tasks call `services.<function>`.
"""

from .jobs import (
    JobRefused,
    job_cancel,
    job_claim,
    job_create,
    job_directory,
    job_dispatch,
    job_run,
    jobs_reap,
)
from .kinds import var_absolute
from .registry import (
    Disagreement,
    disagreements,
    generate_job_create,
    model_score,
    policy_job_create,
    prompts_request_more_rankings,
    reward_job_create,
    score_job_create,
)
from .rounds import round_start, rounds_advance, training_tick

__all__ = [
    "Disagreement",
    "JobRefused",
    "disagreements",
    "generate_job_create",
    "job_cancel",
    "job_claim",
    "job_create",
    "job_directory",
    "job_dispatch",
    "job_run",
    "jobs_reap",
    "model_score",
    "policy_job_create",
    "prompts_request_more_rankings",
    "reward_job_create",
    "round_start",
    "rounds_advance",
    "training_tick",
    "score_job_create",
    "var_absolute",
]
