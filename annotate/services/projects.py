"""Projects and their members."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import transaction

from config.errors import Conflict, Invalid

from ..models import PROJECT_SETTINGS, Membership, Project

User = get_user_model()


def project_create(*, created_by: AbstractUser | None, **fields) -> Project:
    """Create a project from model field values; its creator, if any, becomes its admin."""
    project = Project(**fields)
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


def project_update(*, project: Project, **fields) -> Project:
    """Change settings of `project` (names from PROJECT_SETTINGS). Rankings already given
    stay as they were; the new settings apply from now on, except those FIXED_ONCE_PROMPTS."""
    unknown = set(fields) - set(PROJECT_SETTINGS)
    if unknown:
        raise Invalid(f"Not a project setting: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=project.id)
        for name, reason in FIXED_ONCE_PROMPTS.items():
            if name in fields and fields[name] != getattr(project, name) and (
                    project.prompts.exists()):
                raise Conflict(reason, extra={"field": name})
        for name, value in fields.items():
            setattr(project, name, value)
        try:
            project.full_clean()
        except ValidationError as exc:
            raise Invalid(" ".join(exc.messages), extra={"errors": exc.message_dict}) from None
        project.save(update_fields=list(fields) or None)
    return project
