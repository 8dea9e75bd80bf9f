"""Projects and their members."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction

from ..models import Membership, Project

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


def labeler_add(
    *, project: Project, username: str, password: str | None = None
) -> tuple[AbstractUser, bool]:
    """Add `username` to `project` as a labeler, creating the user if needed.

    Return the user and whether it was created. An existing member keeps an admin role.
    `password` is set only on a user created here: an existing user's password is theirs
    (else any project's admin could take over any account, a superuser's included).
    """
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username)
        if created:
            if password:
                user.set_password(password)
            else:
                user.set_unusable_password()
            user.save(update_fields=["password"])
        if not Membership.objects.filter(project=project, user=user).exists():
            membership_set(project=project, user=user, role=Membership.Role.LABELER)
    return user, created
