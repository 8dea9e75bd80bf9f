"""The model registry: each trained model, versioned under its name, with its lineage."""

from django.db.models import Max

from ..kinds.base import var_relative
from ..models import ModelArtifact, TrainingJob


def artifact_register(job: TrainingJob, kind: str, *, model_dir: str, merged_dir: str | None,
                      **fields) -> ModelArtifact:
    """The next version of the job's model name (default <project>-<kind>) in the registry."""
    name = job.params.get("model_name") or f"{job.project.slug}-{kind}"
    latest = ModelArtifact.objects.filter(project=job.project, name=name).aggregate(
        latest=Max("version"))["latest"] or 0
    return ModelArtifact.objects.create(
        project=job.project, name=name, version=latest + 1, kind=kind, job=job,
        base_model=job.base_model, path=var_relative(model_dir),
        merged_path=var_relative(merged_dir) if merged_dir else "", **fields)
