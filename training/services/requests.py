"""Job requests: the one way a job is asked for, from the API, a page or a command.

job_request validates a JobRequest against its kind's declaration (settings, models, data),
checks every model before anything is queued, and queues the job. Nothing here knows
which interface asked.
"""

from pathlib import Path

from django.contrib.auth.models import AbstractUser

from annotate.models import Export, Project
from config.errors import Invalid

from ..catalog import CatalogModel, catalog_model, check_role
from ..export_contents import export_refusal
from ..kinds import JobKind, JobRequest, kind_named
from ..kinds.base import ModelSlot, location_store, var_absolute, var_relative
from ..models import ModelArtifact, TrainingJob
from .jobs import job_create

ARTIFACT_PREFIX = "model:"
# How each slot's choice is named in messages: the API's field names.
FIELD_OF = {("base", True): "base_artifact", ("base", False): "base_model",
            ("reward", True): "reward_artifact", ("reward", False): "reward_artifact"}


def job_request(*, project: Project, request: JobRequest, created_by: AbstractUser | None,
                dispatch: bool = True, allow_paths: bool = False) -> tuple[TrainingJob, bool]:
    """Validate the request and queue its job; return (job, created). `allow_paths` lets an
    operator's command name a local model folder; pages and the API never do."""
    kind = kind_named(request.kind)
    params = kind.validate_params(request.params)
    unknown = sorted(set(request.models) - {slot.slot for slot in kind.models})
    if unknown:
        raise Invalid(f"{', '.join(unknown)}: {kind.name} jobs take no such model")
    resolved = {slot.slot: model_resolve(project, slot, request.models.get(slot.slot, ""),
                                         allow_paths=allow_paths)
                for slot in kind.models if slot.required or request.models.get(slot.slot)}
    export = _export(project, kind, request)
    params |= kind.check(project, request, resolved) or {}
    base, reward = resolved.get("base"), resolved.get("reward")
    other_models = {slot: {"shown": _shown(model), "location": _stored(model),
                           "artifact_id": model.id if isinstance(model, ModelArtifact) else None}
                    for slot, model in resolved.items() if slot not in ("base", "reward")}
    return job_create(
        project=project, kind=kind.name, params=params, created_by=created_by, export=export,
        dataset_path=request.dataset_path, eval_file=request.eval_file,
        base_model=_shown(base), base_location=location_store(base) if isinstance(
            base, CatalogModel) else "",
        base_artifact=base if isinstance(base, ModelArtifact) else None,
        reward_artifact=reward if isinstance(reward, ModelArtifact) else None,
        other_models=other_models, dispatch=dispatch)


def model_resolve(project: Project | None, slot: ModelSlot, choice: str, *,
                  allow_paths: bool = False, field: str = "") -> CatalogModel | ModelArtifact:
    """A slot's choice as a registered model of the project or a checked catalog model;
    refusals name `field` (default: the API's field for the slot)."""
    choice = (choice or "").strip()
    is_artifact = choice.startswith(ARTIFACT_PREFIX)
    field = field or FIELD_OF.get((slot.slot, is_artifact), f"models.{slot.slot}")
    if not choice:
        raise Invalid(f"{field}: choose a {slot.label.lower()}")
    if is_artifact:
        return _artifact(project, slot, choice.removeprefix(ARTIFACT_PREFIX), field)
    if not slot.catalog:
        raise Invalid(f"{field}: choose a registered {slot.artifact_kind} model of this project")
    if allow_paths and Path(choice).is_dir():
        model = CatalogModel(name=choice, location=str(Path(choice).resolve()))
    else:
        model = catalog_model(choice, field)
    check_role(model, slot.role, field)
    return model


def _artifact(project: Project | None, slot: ModelSlot, artifact_id: str,
              field: str) -> ModelArtifact:
    found = None
    if artifact_id.isascii() and artifact_id.isdigit() and len(artifact_id) <= 18:
        found = ModelArtifact.objects.filter(id=int(artifact_id), kind=slot.artifact_kind)
        found = (found.filter(project=project) if project is not None else found).first()
    if found is None:  # another project's model reads as one that does not exist
        raise Invalid(f"{field}: no {slot.artifact_kind} model {artifact_id[:20]} in this "
                      "project")
    if not var_absolute(found.path).exists():
        raise Invalid(f"{field}: the files of {found} are missing")
    return found


def _export(project: Project, kind: JobKind, request: JobRequest) -> Export | None:
    if request.dataset_path and not (kind.takes_export or kind.takes_prompts_file):
        raise Invalid(f"dataset: {kind.name} jobs take no file")
    if not kind.takes_export:
        if request.export_id is not None:
            raise Invalid(f"export: {kind.name} jobs take no export")
        return None
    if request.export_id is None:
        if request.dataset_path:
            return None
        raise Invalid("export: choose an export of this project")
    export = Export.objects.filter(id=request.export_id, project=project,
                                   status=Export.Status.SUCCEEDED).first()
    if export is None:
        raise Invalid(f"export: no finished export {request.export_id} in this project")
    settings = {**kind.defaults(), **request.params}
    refusal = export_refusal(version=export.version, counts=export.counts,
                             reads=kind.export_reads(settings), job=kind.job_named(settings))
    if refusal:
        raise Invalid(refusal)
    return export


def _stored(model) -> str:
    """How a job keeps where an optional slot's model is: as base_location does."""
    return var_relative(var_absolute(model.path)) if isinstance(model, ModelArtifact) \
        else location_store(model)


def _shown(model) -> str:
    return "" if model is None else str(model) if isinstance(model, ModelArtifact) \
        else model.name
