"""Reads for training: every job and model is reached through its project's admin check.

A job or model of a project the user cannot see is a 404; of a project they only label, 403.
"""

from django.db.models import Count, QuerySet, Sum
from django.http import Http404

from annotate import selectors as annotate_selectors
from annotate.models import Project

from .models import ModelArtifact, Round, TrainingJob


def _visible(queryset: QuerySet, user, object_id: int):
    found = queryset.select_related("project").filter(
        id=object_id, project__in=annotate_selectors.projects_visible_to(user)).first()
    if found is None:
        raise Http404("No such object.")
    annotate_selectors.project_get_administered(user, id=found.project_id)  # 403 for labelers
    return found


def job_get_for_admin(user, job_id: int) -> TrainingJob:
    return _visible(TrainingJob.objects.select_related("export", "base_artifact"), user, job_id)


def artifact_get_for_admin(user, artifact_id: int) -> ModelArtifact:
    return _visible(ModelArtifact.objects.select_related("job", "export"), user, artifact_id)


def jobs_for_admin(user, project: Project | None = None) -> QuerySet[TrainingJob]:
    jobs = TrainingJob.objects.filter(
        project__in=annotate_selectors.projects_administered_by(user))
    return jobs.filter(project=project) if project is not None else jobs


def artifacts_for_admin(user, project: Project | None = None) -> QuerySet[ModelArtifact]:
    artifacts = ModelArtifact.objects.filter(
        project__in=annotate_selectors.projects_administered_by(user))
    return artifacts.filter(project=project) if project is not None else artifacts


def job_output_artifact(job: TrainingJob) -> ModelArtifact | None:
    return job.artifacts.order_by("id").first()


def lineage(artifact: ModelArtifact) -> list[tuple[str, object]]:
    """What made this model, nearest first: its job, dataset, and the models before it."""
    chain: list[tuple[str, object]] = []
    seen = set()
    current = artifact
    while current is not None and current.id not in seen:
        seen.add(current.id)
        chain.append(("model", current))
        job = current.job
        if job is None:
            break
        chain.append(("job", job))
        if job.export is not None:
            chain.append(("dataset", job.export))
        if job.reward_artifact is not None:
            chain.append(("reward model", job.reward_artifact))
        current = job.base_artifact
    return chain


def job_metric_series(job: TrainingJob, names: tuple[str, ...]) -> dict[str, list[list[float]]]:
    """{name: [[step, value], ...]} from the job's metrics, the last attempt's value per step."""
    series: dict[str, dict[int, float]] = {name: {} for name in names}
    for point in job.metrics:
        for name in names:
            if isinstance(point.get(name), int | float):
                series[name][point["step"]] = point[name]
    return {name: sorted([step, value] for step, value in values.items())
            for name, values in series.items()}


def rounds_with_progress(project: Project) -> list[tuple[Round, dict]]:
    """Each round with the ranking progress of the prompts it generated."""
    found = []
    rounds = project.rounds.select_related(
        "export", "reward_job", "policy_job", "generation_job", "reward_artifact",
        "policy_artifact", "prompt_import").order_by("number")
    for round_ in rounds:
        progress = {"prompts": 0, "ranked": 0, "needed": 0}
        if round_.prompt_import_id:
            totals = round_.prompt_import.prompts.aggregate(prompts=Count("id"),
                                                            ranked=Sum("ranking_count"))
            progress = {"prompts": totals["prompts"], "ranked": totals["ranked"] or 0,
                        "needed": totals["prompts"] * project.labelers_per_prompt}
        found.append((round_, progress))
    return found
