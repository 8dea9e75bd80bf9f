"""Rounds of the loop: snapshot -> reward model -> policy -> generated prompts to rank.

round_start queues the snapshot (an export); rounds_advance moves every active round on
when its current step has finished. It runs every minute with the reaper, and at once when
a training job ends, so a round needs no process of its own and survives restarts.
"""

import logging

from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.db.models import Max

from annotate import services as annotate_services
from annotate.models import Export, Project

from ..models import ModelArtifact, Round, TrainingJob
from .jobs import JobRefused
from .registry import generate_job_create, policy_job_create, reward_job_create

logger = logging.getLogger(__name__)

DEFAULT_PLAN = {
    "export": {"min_votes": 2, "min_agreement": 2 / 3, "test_fraction": 0.1},
    "reward": {"params": {"method": "kway"}},
    "policy": {"params": {"algorithm": "ppo"}},
    "generate": {"params": {}},
}


def round_start(*, project: Project, created_by: AbstractUser | None, reward_base: str = "",
                policy_base: str = "", plan: dict | None = None) -> Round:
    """Start the next round. Without base models it goes on from the last round's reward
    model and policy (and its plan); the first round needs both bases."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(id=project.id).first()
        if project.rounds.filter(status__in=Round.ACTIVE).exists():
            raise JobRefused("A round of this project is still running; wait for it.", 409)
        last = project.rounds.exclude(status=Round.Status.FAILED).order_by("-number").first()
        plan = _merged(last.plan if last else DEFAULT_PLAN, plan or {})
        plan["reward"]["base_model"] = reward_base or plan["reward"].get("base_model", "")
        plan["policy"]["base_model"] = policy_base or plan["policy"].get("base_model", "")
        plan["reward"]["continue_from"] = (last.reward_artifact_id if last and not reward_base
                                           else None)
        plan["policy"]["continue_from"] = (last.policy_artifact_id if last and not policy_base
                                           else None)
        for part in ("reward", "policy"):
            if not plan[part]["base_model"] and not plan[part]["continue_from"]:
                raise JobRefused(f"{part}: the first round needs a base model (a name or path)")
        number = (project.rounds.aggregate(n=Max("number"))["n"] or 0) + 1
        try:
            export = annotate_services.export_create(
                project=project, created_by=created_by,
                params=annotate_services.ExportParams(**plan["export"], formats=("trl-jsonl",)))
        except annotate_services.ExportRefused as refused:
            raise JobRefused(str(refused), refused.status) from None
        return Round.objects.create(project=project, number=number, plan=plan, export=export,
                                    created_by=created_by)


def _merged(base: dict, changes: dict) -> dict:
    merged = {part: dict(values) for part, values in base.items()}
    for part, values in changes.items():
        merged.setdefault(part, {}).update(values)
    for part in ("reward", "policy", "generate"):
        merged.setdefault(part, {}).setdefault("params", {})
    return merged


def training_tick() -> dict[str, int]:
    """Every minute (beat) and at worker start: reap jobs whose worker died, send jobs the
    broker missed, and move rounds whose step has finished."""
    from .jobs import jobs_reap

    counts = jobs_reap()
    counts["rounds_moved"] = rounds_advance()
    return counts


def rounds_advance() -> int:
    """Move each active round past the steps that have finished; return how many moved."""
    moved = 0
    for round_ in Round.objects.filter(status__in=Round.ACTIVE).select_related(
            "project", "export", "reward_job", "policy_job", "generation_job"):
        try:
            moved += _advance(round_)
        except JobRefused as refused:
            _fail(round_, str(refused))
    return moved


def _advance(round_: Round) -> bool:
    step = {Round.Status.EXPORTING: _after_export,
            Round.Status.TRAINING_REWARD: _after_reward,
            Round.Status.TRAINING_POLICY: _after_policy}.get(round_.status)
    if step is None:  # generating: the generation job's completion marks the round ranking
        job = round_.generation_job
        if job is not None and job.status in (TrainingJob.Status.FAILED,
                                              TrainingJob.Status.CANCELLED):
            return _fail(round_, f"generation job {job.id} {job.status}")
        return False
    return step(round_)


def _after_export(round_: Round) -> bool:
    export = round_.export
    if export.status == Export.Status.FAILED:
        return _fail(round_, f"export v{export.version} failed")
    if export.status != Export.Status.SUCCEEDED:
        return False
    plan = round_.plan["reward"]
    job, _ = reward_job_create(
        project=round_.project, params=plan["params"], base_model=plan["base_model"],
        created_by=round_.created_by, export=export, base_artifact=_artifact(
            plan.get("continue_from")))
    return _moved(round_, Round.Status.TRAINING_REWARD, reward_job=job)


def _after_reward(round_: Round) -> bool:
    job = round_.reward_job
    if not _finished(round_, job):
        return False
    reward = ModelArtifact.objects.get(job=job)
    plan = round_.plan["policy"]
    policy_job, _ = policy_job_create(
        project=round_.project, params=plan["params"], reward_artifact=reward,
        base_model=plan["base_model"], base_artifact=_artifact(plan.get("continue_from")),
        created_by=round_.created_by)
    return _moved(round_, Round.Status.TRAINING_POLICY, reward_artifact=reward,
                  policy_job=policy_job)


def _after_policy(round_: Round) -> bool:
    job = round_.policy_job
    if not _finished(round_, job):
        return False
    policy = ModelArtifact.objects.get(job=job)
    generation, _ = generate_job_create(
        project=round_.project, params=round_.plan["generate"]["params"],
        base_artifact=policy, created_by=round_.created_by)
    return _moved(round_, Round.Status.GENERATING, policy_artifact=policy,
                  generation_job=generation)


def _finished(round_: Round, job: TrainingJob) -> bool:
    if job.status in (TrainingJob.Status.FAILED, TrainingJob.Status.CANCELLED):
        _fail(round_, f"{job.get_kind_display()} job {job.id} {job.status}")
        return False
    return job.status == TrainingJob.Status.SUCCEEDED


def _artifact(artifact_id: int | None) -> ModelArtifact | None:
    return ModelArtifact.objects.filter(id=artifact_id).first() if artifact_id else None


def _moved(round_: Round, status: str, **fields) -> bool:
    """Move on, unless another advancer moved this round first."""
    return bool(Round.objects.filter(id=round_.id, status=round_.status).update(
        status=status, **fields))


def _fail(round_: Round, error: str) -> bool:
    logger.warning("round %s of %s failed: %s", round_.number, round_.project, error)
    return bool(Round.objects.filter(id=round_.id, status__in=Round.ACTIVE).update(
        status=Round.Status.FAILED, error=error))
