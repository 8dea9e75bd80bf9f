"""Reads. Every page and endpoint finds projects through these, so scoping lives in one place."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, QuerySet
from django.http import Http404

from .models import Membership, Project


def projects_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    """Return the projects `user` may see: all for a superuser, else those they belong to."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    # A subquery, not a join, so annotations on the result count every member.
    return Project.objects.filter(id__in=Membership.objects.filter(user=user).values("project_id"))


def projects_administered_by(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    """Return the projects `user` may manage (import, add labelers, export, train)."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    admin_of = Membership.objects.filter(user=user, role=Membership.Role.ADMIN)
    return Project.objects.filter(id__in=admin_of.values("project_id"))


def project_get_visible(user, **lookup) -> Project:
    """Return the project matching `lookup` that `user` may see, or raise Http404."""
    try:
        return projects_visible_to(user).get(**lookup)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


def project_role(user, project: Project) -> str | None:
    """Return 'admin', 'labeler' or None; a superuser counts as admin everywhere."""
    if user.is_superuser:
        return Membership.Role.ADMIN
    return (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )


def user_can_create_projects(user) -> bool:
    return user.is_authenticated and user.is_active and user.is_staff


def project_list_with_counts(user) -> QuerySet[Project]:
    return projects_visible_to(user).annotate(
        prompt_count=Count("prompts", distinct=True),
        member_count=Count("memberships", distinct=True),
    )
