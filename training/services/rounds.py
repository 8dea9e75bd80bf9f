"""Rounds of the loop: snapshot -> reward model -> policy -> generated prompts to rank.

round_start queues the snapshot (an export); rounds_advance moves every active round on
when its current step has finished. It runs every minute with the reaper, and at once when
a training job ends, so a round needs no process of its own and survives restarts.
"""

import copy
import logging

from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.db.models import Count, Max

from annotate import services as annotate_services
from annotate.models import Export, Project
from config.errors import Conflict, Invalid, reason_line

from ..kinds import KINDS, JobRequest
from ..ml.policy import ALGORITHMS
from ..models import ModelArtifact, Round, TrainingJob
from ..selectors import round_to_go_on_from
from .jobs import job_cancel, job_run
from .requests import ARTIFACT_PREFIX, job_request, model_resolve

logger = logging.getLogger(__name__)

# A round's policy step: the policy kind's algorithms (PPO, RLOO, GRPO, iterative DPO on the
# reward model's best and worst of K), or DPO on the labelers' own pairs (the round's
# snapshot, ranked by people rather than by the reward model).
LABELERS_DPO = Round.LABELERS_DPO
ROUND_ALGORITHMS = (*ALGORITHMS, LABELERS_DPO)

DEFAULT_PLAN = {
    "export": {"min_votes": 2, "min_agreement": 2 / 3, "test_fraction": 0.1},
    "reward": {"params": {"method": "kway"}},
    "policy": {"params": {"algorithm": "ppo"}},
    # Of each prompt's K completions, the previous round's policy and the reference (the
    # policy the loop started from) write one each, so that the labelers' rankings say
    # whether the new policy is better (annotate.winrates).
    "generate": {"params": {"previous_count": 1, "reference_count": 1}},
}


def round_start(*, project: Project, created_by: AbstractUser | None, reward_model: str = "",
                policy_model: str = "", plan: dict | None = None,
                algorithm: str = "") -> Round:
    """Start the next round. Models are choices as a job request takes them (a catalog name
    or "model:<id>"); without them it goes on from the last round's reward model and policy
    (and its plan). The first round needs both. `algorithm` (ppo, rloo, grpo or dpo, the
    policy kind's, or dpo-labelers: DPO on the snapshot's pairs) sets how the round trains
    its policy; without it, as the last round."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(id=project.id).first()
        if project.rounds.filter(status__in=Round.ACTIVE).exists():
            raise Conflict("A round of this project is still running; wait for it.")
        last = round_to_go_on_from(project)
        plan = _merged(last.plan if last else DEFAULT_PLAN, plan or {})
        if algorithm:
            _set_algorithm(plan, algorithm)
        plan["reward"]["model"] = reward_model or (
            f"{ARTIFACT_PREFIX}{last.reward_artifact_id}" if last and last.reward_artifact_id
            else "")
        plan["policy"]["model"] = policy_model or (
            f"{ARTIFACT_PREFIX}{last.policy_artifact_id}" if last and last.policy_artifact_id
            else "")
        # The reference every round's policy is judged against: where the loop started.
        plan.setdefault("reference_model", plan["policy"]["model"])
        for part in ("reward", "policy"):
            if not plan[part]["model"]:
                why = "the last round has none" if last else "the first round needs one"
                raise Invalid(f"{part}_model: choose a {part} model to start from ({why})")
            slot = KINDS[part].models[0]  # both kinds declare their base model first
            model_resolve(project, slot, plan[part]["model"], field=f"{part}_model")
        _check_rankings(project, plan["export"])
        number = (project.rounds.aggregate(n=Max("number"))["n"] or 0) + 1
        round_ = Round(project=project, number=number, plan=plan, created_by=created_by)
        round_.status, fields = _start_export(round_)
        round_.export = fields["export"]
        round_.save()
        return round_


def _set_algorithm(plan: dict, algorithm: str) -> None:
    if algorithm not in ROUND_ALGORITHMS:
        raise Invalid(f"algorithm: must be one of {', '.join(ROUND_ALGORITHMS)}")
    plan["policy"]["preferences"] = "labelers" if algorithm == LABELERS_DPO else "reward_model"
    if algorithm != LABELERS_DPO:
        plan["policy"]["params"] = KINDS["policy"].validate_params(
            {**plan["policy"]["params"], "algorithm": algorithm})


def _export_plan(plan: dict) -> dict:
    """The export step's settings, refused (Invalid) as the export would refuse them."""
    try:
        annotate_services.ExportParams(**plan, formats=("trl-jsonl",))
    except (TypeError, ValueError) as refused:
        raise Invalid(f"export: {refused}") from None
    return plan


def _check_rankings(project: Project, export_plan: dict) -> None:
    """Refuse a round whose snapshot cannot hold a pair: no prompt has enough rankings."""
    min_votes = export_plan.get("min_votes", 2)
    sources = ["labeler", "imported"] if export_plan.get("include_imported") else ["labeler"]
    enough = (project.prompts.filter(rankings__source__in=sources)
              .annotate(votes=Count("rankings")).filter(votes__gte=min_votes))
    if not enough.exists():
        raise Invalid(f"No prompt has {min_votes} rankings yet, so the round's dataset would "
                      "hold no pairs: rank some prompts first.")


def _merged(base: dict, changes: dict) -> dict:
    merged = copy.deepcopy(base)
    for part, values in changes.items():
        if isinstance(values, dict):
            merged.setdefault(part, {}).update(values)
        else:  # reference_model: a choice
            merged[part] = values
    for part in ("reward", "policy", "generate"):
        merged.setdefault(part, {}).setdefault("params", {})
    return merged


def job_run_and_rounds_advance(job_id: int) -> None:
    """Run the job to its end, then move on at once any round that waited for it."""
    try:
        job_run(job_id)
    finally:
        rounds_advance()


def training_tick() -> dict[str, int]:
    """Every minute (beat) and at worker start: reap jobs whose worker died, send jobs the
    broker missed, and move rounds whose step has finished."""
    from .jobs import jobs_reap

    counts = jobs_reap()
    counts["rounds_moved"] = rounds_advance()
    return counts


def rounds_advance() -> int:
    """Move each active round past the steps that have finished, and give each generation
    job asked for on its own a round; return how many rounds moved."""
    moved = 0
    for round_ in Round.objects.filter(status__in=Round.ACTIVE).select_related(
            "project", "export", "reward_job", "policy_job", "generation_job"):
        try:
            moved += _advance(round_)
        except Invalid as refused:
            _fail(round_, str(refused))
    return moved + _rounds_for_lone_generations()


def _advance(round_: Round) -> bool:
    step = {Round.Status.EXPORTING: _after_export,
            Round.Status.TRAINING_REWARD: _after_reward,
            Round.Status.TRAINING_POLICY: _after_policy,
            Round.Status.GENERATING: _after_generation}[round_.status]
    return step(round_)


def _after_export(round_: Round) -> bool:
    export = round_.export
    if export.status == Export.Status.FAILED:
        return _fail(round_, f"export v{export.version} failed: {reason_line(export.error)}")
    if export.status != Export.Status.SUCCEEDED:
        return False
    if not export.counts.get("pairs", {}).get("train"):
        plan = round_.plan["export"]
        return _fail(round_, f"export v{export.version} kept no pairs to train on (a pair "
                     f"needs {plan.get('min_votes', 2)} votes and {plan.get('min_agreement', 0)}"
                     " agreement): rank more prompts, then retry")
    return _moved(round_, *_start_reward(round_))


def _after_reward(round_: Round) -> bool:
    if not _finished(round_, round_.reward_job):
        return False
    return _moved(round_, *_start_policy(round_))


def _after_policy(round_: Round) -> bool:
    if not _finished(round_, round_.policy_job):
        return False
    return _moved(round_, *_start_generation(round_))


def _after_generation(round_: Round) -> bool:
    job = round_.generation_job
    if job is None or not _finished(round_, job):
        return False
    return _moved(round_, Round.Status.RANKING,
                  {"prompt_import_id": job.result.get("prompt_import_id")})


# --- starting a step: (the round's status while it runs, the round's fields it sets) -------


def _start_export(round_: Round) -> tuple[str, dict]:
    export = annotate_services.export_create(
        project=round_.project, created_by=round_.created_by,
        params=annotate_services.ExportParams(**round_.plan["export"], formats=("trl-jsonl",)))
    return Round.Status.EXPORTING, {"export": export}


def _start_reward(round_: Round) -> tuple[str, dict]:
    plan = round_.plan["reward"]
    job, _ = job_request(project=round_.project, created_by=round_.created_by,
                         request=JobRequest("reward", plan["params"], {"base": plan["model"]},
                                            export_id=round_.export_id))
    return Round.Status.TRAINING_REWARD, {"reward_job": job}


def _start_policy(round_: Round) -> tuple[str, dict]:
    reward = ModelArtifact.objects.get(job=round_.reward_job)
    plan = round_.plan["policy"]
    if round_.policy_algorithm == LABELERS_DPO:
        # The labelers' pairs themselves; the reward model still judges the round.
        request = JobRequest("dpo", round_.plan.get("dpo", {}).get("params", {}),
                             {"base": plan["model"]}, export_id=round_.export_id)
    else:
        request = JobRequest("policy", plan["params"], {
            "base": plan["model"], "reward": f"{ARTIFACT_PREFIX}{reward.id}"})
    job, _ = job_request(project=round_.project, created_by=round_.created_by,
                         request=request)
    return Round.Status.TRAINING_POLICY, {"reward_artifact": reward, "policy_job": job}


def _start_generation(round_: Round) -> tuple[str, dict]:
    policy = ModelArtifact.objects.get(job=round_.policy_job)
    params, models = generation_mix(round_.plan, round_.project.completions_per_prompt)
    job, _ = job_request(
        project=round_.project, created_by=round_.created_by,
        request=JobRequest("generate", params,
                           {"base": f"{ARTIFACT_PREFIX}{policy.id}", **models}))
    return Round.Status.GENERATING, {"policy_artifact": policy, "generation_job": job}


def generation_mix(plan: dict, k: int) -> tuple[dict, dict]:
    """The generation's params and other models: the previous policy (the one this round's
    policy started from) and the reference write their counts of K, fitted to K so that the
    new policy writes at least half. In round 1 the previous policy is the reference, which
    then writes both shares."""
    params = dict(plan["generate"]["params"])
    previous, reference = plan["policy"]["model"], plan.get("reference_model", "")
    counts = {"previous": params.pop("previous_count", 0),
              "reference": params.pop("reference_count", 0) if reference else 0}
    if previous == reference:
        counts = {"previous": 0, "reference": counts["previous"] + counts["reference"]}
    for slot in ("previous", "reference"):  # trim the previous share first
        while sum(counts.values()) > k // 2 and counts[slot]:
            counts[slot] -= 1
    models = {slot: {"previous": previous, "reference": reference}[slot]
              for slot, count in counts.items() if count}
    return params | {f"{slot}_count": count for slot, count in counts.items() if count}, models


STEP_STARTS = {"export": _start_export, "reward": _start_reward, "policy": _start_policy,
               "generate": _start_generation}


def round_failed_step(round_: Round) -> str:
    """The plan part of the first step that has not succeeded: where a retry starts."""
    for part, field, _ in Round.STEPS:
        work = getattr(round_, field)
        if work is None or work.status != "succeeded":
            return part
    return Round.STEPS[-1][0]


def round_retry(round_: Round, *, created_by: AbstractUser | None,
                params: dict | None = None) -> Round:
    """Start a failed round's failed step again, with its settings changed by `params`
    (validated as a new request of that step would be); the round goes on from there."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(id=round_.project_id).first()
        round_ = Round.objects.select_related(*(f for _, f, _ in Round.STEPS)).get(
            id=round_.id)
        if round_.status != Round.Status.FAILED:
            raise Conflict(f"Round {round_.number} is {round_.get_status_display().lower()}; "
                           "only a failed round can be retried.")
        if round_.project.rounds.filter(status__in=Round.ACTIVE).exists():
            raise Conflict("Another round of this project is running; wait for it.")
        part = round_failed_step(round_)
        if params:
            if part == "export":
                round_.plan["export"] = _export_plan({**round_.plan["export"], **params})
            else:
                changed = {**round_.plan[part]["params"], **params}
                round_.plan[part]["params"] = KINDS[part].validate_params(changed)
        status, fields = STEP_STARTS[part](round_)
        Round.objects.filter(id=round_.id).update(status=status, error="", plan=round_.plan,
                                                  created_by=created_by or round_.created_by,
                                                  **fields)
    round_.refresh_from_db()
    return round_


def round_cancel(round_: Round) -> Round:
    """Stop an active round: its running job is asked to stop, and nothing further starts
    (an export already building finishes, unused)."""
    if not Round.objects.filter(id=round_.id, status__in=Round.ACTIVE).update(
            status=Round.Status.CANCELLED, error="Cancelled."):
        round_.refresh_from_db()
        raise Conflict(f"Round {round_.number} is {round_.get_status_display().lower()}; "
                       "only a running round can be cancelled.")
    for _, field, _ in Round.STEPS[1:]:
        job = getattr(round_, field)
        if job is not None and job.is_active:
            job_cancel(job)
    round_.refresh_from_db()
    return round_


def advance_after_export(sender, export_id: int, **kwargs) -> None:
    """An export ended: move on the round that waits for it (connected in TrainingConfig)."""
    if Round.objects.filter(export_id=export_id, status=Round.Status.EXPORTING).exists():
        rounds_advance()


def _rounds_for_lone_generations() -> int:
    """A generation job asked for on its own: its prompts become a round of their own."""
    created = 0
    lone = (TrainingJob.objects.filter(kind="generate", status=TrainingJob.Status.SUCCEEDED)
            .exclude(id__in=Round.objects.filter(generation_job__isnull=False)
                     .values("generation_job_id"))
            .select_related("project", "base_artifact").order_by("id"))
    for job in lone:
        with transaction.atomic():
            Project.objects.select_for_update().filter(id=job.project_id).first()
            if Round.objects.filter(generation_job=job).exists():
                continue  # another advancer made it a moment ago
            latest = job.project.rounds.aggregate(n=Max("number"))["n"] or 0
            Round.objects.create(
                project=job.project, number=latest + 1, generation_job=job,
                policy_artifact=job.base_artifact, created_by=job.created_by,
                plan={"generate": {"params": job.params}}, status=Round.Status.RANKING,
                prompt_import_id=job.result.get("prompt_import_id"))
            created += 1
    return created


def _finished(round_: Round, job: TrainingJob) -> bool:
    if job.status in (TrainingJob.Status.FAILED, TrainingJob.Status.CANCELLED):
        reason = f": {job.error}" if job.error else ""
        _fail(round_, f"{KINDS[job.kind].label} job {job.id} {job.status}{reason}"[:500])
        return False
    return job.status == TrainingJob.Status.SUCCEEDED


def _moved(round_: Round, status: str, fields: dict) -> bool:
    """Move on, unless another advancer moved this round first."""
    return bool(Round.objects.filter(id=round_.id, status=round_.status).update(
        status=status, **fields))


def _fail(round_: Round, error: str) -> bool:
    logger.warning("round %s of %s failed: %s", round_.number, round_.project, error)
    return bool(Round.objects.filter(id=round_.id, status__in=Round.ACTIVE).update(
        status=Round.Status.FAILED, error=error))
