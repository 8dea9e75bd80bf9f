"""A project's members: add (with a password or an invitation), change role, remove, and
set or reset a password.

The rules, each enforced here and nowhere else:
- every account made here can log in: it gets the password its admin typed, or an
  invitation link (annotate/services/invitations.py) that lets its owner set one;
- a project always keeps an admin: the last one can be neither removed nor made a labeler;
- removing a member keeps everything they submitted (rankings, revisions, skips) and
  releases their open leases, so others can take those prompts at once;
- a project admin may set or reset the password only of an account that is not staff or a
  superuser and whose every membership is in a project that admin administers (an account
  that belongs elsewhere too is someone else's to manage; staff accounts are the Django
  admin's). Never their own here, and never through "add member": adding an existing
  account leaves its password alone.
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from rest_framework.authtoken.models import Token

from config.errors import Conflict, Forbidden, NotFound

from ..models import Assignment, Membership, Project
from .invitations import Invitation, invitation_create
from .projects import membership_set

User = get_user_model()
ROLE_NAMES = {Membership.Role.ADMIN: "an admin", Membership.Role.LABELER: "a labeler"}


@dataclass(frozen=True)
class MemberAdded:
    """What adding `user` did: outcome is 'created' (a new account), 'added' (an existing
    account joined), 'promoted' (a labeler made admin) or 'unchanged'."""

    user: AbstractUser
    role: str
    outcome: str
    invitation: Invitation | None = None

    @property
    def created(self) -> bool:
        return self.outcome == "created"

    def message(self) -> str:
        name, role = self.user.username, ROLE_NAMES[self.role]
        return {
            "created": f"{name} created and added as {role}.",
            "added": f"{name} added." if self.role == Membership.Role.LABELER
            else f"{name} added as {role}.",
            "promoted": f"{name} is now an admin.",
            "unchanged": f"{name} is already {role}.",
        }[self.outcome]


def member_add(*, project: Project, username: str, role: str = Membership.Role.LABELER,
               password: str | None = None) -> MemberAdded:
    """Add `username` to `project` with `role`, creating the account if there is none.

    A new account gets `password`, or without one an invitation to set it. An existing
    account keeps its password (else any admin could take over any account), and an existing
    member is never demoted here (member_role_set does that).
    """
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username)
        invitation = None
        if created and password:
            user.set_password(password)
            user.save(update_fields=["password"])
        elif created:
            invitation = invitation_create(user=user)
        current = Membership.objects.filter(project=project, user=user).first()
        if current is None:
            membership_set(project=project, user=user, role=role)
            return MemberAdded(user, role, "created" if created else "added", invitation)
        if role == Membership.Role.ADMIN and current.role != role:
            membership_set(project=project, user=user, role=role)
            return MemberAdded(user, role, "promoted")
        return MemberAdded(user, current.role, "unchanged")


def _membership_locked(project: Project, user_id: int) -> Membership:
    """The membership, with the project's row locked so admin counts cannot race."""
    Project.objects.select_for_update().filter(id=project.id).first()
    membership = (Membership.objects.select_related("user")
                  .filter(project=project, user_id=user_id).first())
    if membership is None:
        raise NotFound("No such member of this project.")
    return membership


def _refuse_if_last_admin(membership: Membership, what: str) -> None:
    if membership.role != Membership.Role.ADMIN:
        return
    admins = Membership.objects.filter(project=membership.project_id, role=Membership.Role.ADMIN)
    if admins.count() <= 1:
        raise Conflict(f"{membership.user.username} is this project's last admin and cannot "
                       f"be {what}; make another member admin first.")


def member_role_set(*, project: Project, user_id: int, role: str) -> Membership:
    """Change a member's role; the project's last admin stays an admin."""
    with transaction.atomic():
        membership = _membership_locked(project, user_id)
        if role != Membership.Role.ADMIN:
            _refuse_if_last_admin(membership, "made a labeler")
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def member_remove(*, project: Project, user_id: int) -> tuple[AbstractUser, int]:
    """Remove a member from `project`: their rankings and skips stay, their open leases are
    released. Return the user and how many leases were released. The last admin cannot be
    removed."""
    with transaction.atomic():
        membership = _membership_locked(project, user_id)
        _refuse_if_last_admin(membership, "removed")
        # A leased row holds nothing submitted: deleting it frees the prompt's slot.
        released, _ = Assignment.objects.filter(
            prompt__project=project, labeler_id=user_id, status=Assignment.Status.LEASED
        ).delete()
        membership.delete()
    return membership.user, released


def password_refusal(*, actor: AbstractUser, user: AbstractUser) -> str | None:
    """Why `actor` may not set `user`'s password, or None if they may (see the module's
    rules; the caller checked that `actor` administers a project `user` belongs to)."""
    return password_refusals(actor=actor, users=[user])[user.pk]


def password_refusals(*, actor: AbstractUser,
                      users: list[AbstractUser]) -> dict[int, str | None]:
    """`password_refusal` for each of `users`, by id, in one query (the members page)."""
    outside: set[int] = set()
    if not actor.is_superuser:
        administered = Membership.objects.filter(user=actor, role=Membership.Role.ADMIN)
        outside = set(Membership.objects.filter(user_id__in=[user.pk for user in users])
                      .exclude(project_id__in=administered.values("project_id"))
                      .values_list("user_id", flat=True))
    refusals = {}
    for user in users:
        refusal = None
        if user.pk == actor.pk:
            refusal = "You cannot set your own password here."
        elif user.is_staff or user.is_superuser:
            refusal = (f"{user.username} is a staff account: its password is set in the "
                       "Django admin, not by a project admin.")
        elif user.pk in outside:
            refusal = (f"{user.username} also belongs to projects you do not administer, so "
                       "their password is not yours to set.")
        refusals[user.pk] = refusal
    return refusals


def _member_for_password(project: Project, actor: AbstractUser, user_id: int) -> AbstractUser:
    membership = (Membership.objects.select_related("user")
                  .filter(project=project, user_id=user_id).first())
    if membership is None:
        raise NotFound("No such member of this project.")
    refusal = password_refusal(actor=actor, user=membership.user)
    if refusal:
        raise Forbidden(refusal)
    return membership.user


def member_password_set(*, project: Project, actor: AbstractUser, user_id: int,
                        password: str) -> AbstractUser:
    """Set a member's password (their other sessions end), if `actor` may."""
    with transaction.atomic():
        user = _member_for_password(project, actor, user_id)
        user.set_password(password)
        user.save(update_fields=["password"])
        Token.objects.filter(user=user).delete()  # a reset ends API access with the old one
    return user


def member_invitation_create(*, project: Project, actor: AbstractUser,
                             user_id: int) -> Invitation:
    """A link that lets a member set their password, if `actor` may set it."""
    with transaction.atomic():
        user = _member_for_password(project, actor, user_id)
        return invitation_create(user=user)
