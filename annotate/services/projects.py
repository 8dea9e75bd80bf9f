"""Projects and their members."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import transaction

from config.errors import Conflict, Invalid

from ..models import PROJECT_SETTINGS, Membership, Project, Ranking
from ..ratings import rating_settings_errors

User = get_user_model()


def project_create(*, created_by: AbstractUser | None, **fields) -> Project:
    """Create a project from model field values; its creator, if any, becomes its admin."""
    project = Project(**fields)
    _check_rating_settings(project)  # first: the model's check would say less
    project.full_clean()
    with transaction.atomic():
        project.save()
        if created_by is not None:
            membership_set(project=project, user=created_by, role=Membership.Role.ADMIN)
    return project


def membership_set(*, project: Project, user: AbstractUser, role: str) -> Membership:
    """Make `user` a member of `project` with `role`, changing the role if already a member."""
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


# Settings that cannot change once the project has prompts, and why.
FIXED_ONCE_PROMPTS = {
    "completions_per_prompt": (
        "Completions per prompt (K) cannot change once the project has prompts: every prompt "
        "was imported with exactly K completions and every ranking orders all of them, so "
        "another K would make them invalid. Start a new project for another K."
    ),
}


_FIXED_WHAT_IS_DONE = (
    "cannot change once the project has rankings: they were given {how}, and the "
    "exports, agreement and consensus read them that way. Start a new project to {other}."
)
# Settings that cannot change once the project has rankings (ratings are rankings), and why.
FIXED_ONCE_RANKINGS = {
    "annotation_mode": "The annotation mode " + _FIXED_WHAT_IS_DONE.format(
        how="in this mode (ranked, or rated with scores)", other="label another way"),
    "rating_scale_min": "The scale " + _FIXED_WHAT_IS_DONE.format(
        how="as scores on this scale", other="use another scale"),
    "rating_scale_max": "The scale " + _FIXED_WHAT_IS_DONE.format(
        how="as scores on this scale", other="use another scale"),
    "rating_aspects": "The aspects " + _FIXED_WHAT_IS_DONE.format(
        how="as scores of these aspects", other="score other aspects"),
}


def fixed_settings(project: Project) -> dict[str, str]:
    """The settings of `project` that can no longer change, each with why."""
    fixed = {}
    if project.prompts.exists():
        fixed |= FIXED_ONCE_PROMPTS
    if Ranking.objects.filter(prompt__project=project).exists():
        fixed |= FIXED_ONCE_RANKINGS
    return fixed


def _check_rating_settings(project: Project) -> None:
    errors = rating_settings_errors(project.rating_scale_min, project.rating_scale_max,
                                    project.rating_aspects)
    if errors:
        field, message = next(iter(errors.items()))
        raise Invalid(f"{field}: {message}", extra={"field": field, "errors": errors})


def project_update(*, project: Project, **fields) -> Project:
    """Change settings of `project` (names from PROJECT_SETTINGS). Rankings already given
    stay as they were; the new settings apply from now on, except those fixed_settings names
    (K once there are prompts; the mode, scale and aspects once there are rankings)."""
    unknown = set(fields) - set(PROJECT_SETTINGS)
    if unknown:
        raise Invalid(f"Not a project setting: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=project.id)
        for name, reason in fixed_settings(project).items():
            if name in fields and fields[name] != getattr(project, name):
                raise Conflict(reason, extra={"field": name})
        for name, value in fields.items():
            setattr(project, name, value)
        _check_rating_settings(project)
        try:
            project.full_clean()
        except ValidationError as exc:
            raise Invalid(" ".join(exc.messages), extra={"errors": exc.message_dict}) from None
        project.save(update_fields=list(fields) or None)
    return project
