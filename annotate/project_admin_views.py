"""A project's settings and members pages, for its admins: read the request, call one
service, render. (Apart from views.py to keep each module short.)"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from config.errors import ApplicationError

from . import selectors, services
from .forms import MemberForm, MemberPasswordForm, MemberRoleForm, ProjectSettingsForm
from .models import PROJECT_SETTINGS, Membership


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request, slug: str):
    project = selectors.project_get_administered(request.user, slug=slug)
    form = ProjectSettingsForm(request.POST or None, instance=project,
                               fixed=services.fixed_settings(project))
    if request.method == "POST" and form.is_valid():
        changed = {name: form.cleaned_data[name] for name in form.changed_data
                   if name in PROJECT_SETTINGS}
        try:
            project = services.project_update(project=project, **changed)
        except ApplicationError as refused:
            form.add_error(refused.extra.get("field"), str(refused))
        else:
            messages.success(request, "Settings saved." if changed else "Nothing changed.")
            return redirect("project_detail", slug=project.slug)
    # The instance holds the form's values by now: show the page under the stored slug.
    stored = selectors.project_get_administered(request.user, id=project.id)
    return render(request, "annotate/project_settings.html", {"project": stored, "form": form})


def _members_page(request, project, *, member_form=None, invitation=None, status=200):
    memberships = list(project.memberships.select_related("user").order_by(
        "role", "user__username"))
    refusals = services.password_refusals(actor=request.user,
                                          users=[membership.user for membership in memberships])
    rows = [(membership, refusals[membership.user_id]) for membership in memberships]
    return render(request, "annotate/project_members.html", {
        "project": project,
        "rows": rows,
        "member_form": member_form or MemberForm(),
        "password_form": MemberPasswordForm(),
        "invitation": invitation,
    }, status=status)


def _invitation_shown(request, user, invitation) -> dict:
    """The link to show once; it is in no message, session or log of ours."""
    url = request.build_absolute_uri(reverse("invitation_accept", args=[invitation.token]))
    return {"username": user.username, "url": url, "expires_at": invitation.expires_at}


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def project_members(request, slug: str):
    project = selectors.project_get_administered(request.user, slug=slug)
    if request.method == "GET":
        return _members_page(request, project)
    form = MemberForm(request.POST)
    if not form.is_valid():
        return _members_page(request, project, member_form=form, status=400)
    added = services.member_add(project=project, username=form.cleaned_data["username"],
                                role=form.cleaned_data["role"],
                                password=form.cleaned_data["password"] or None)
    messages.success(request, added.message())
    if added.invitation is None:
        return redirect("project_members", slug=project.slug)
    # Rendered, not redirected: the link is shown this once and stored nowhere.
    invitation = _invitation_shown(request, added.user, added.invitation)
    return _members_page(request, project, invitation=invitation)


@never_cache
@login_required
@require_POST
def project_member_update(request, slug: str, user_id: int):
    """One change to one member, named by `action`: role, remove, password or invitation."""
    project = selectors.project_get_administered(request.user, slug=slug)
    action = request.POST.get("action")
    try:
        if action == "role":
            form = MemberRoleForm(request.POST)
            if form.is_valid():
                membership = services.member_role_set(project=project, user_id=user_id,
                                                      role=form.cleaned_data["role"])
                messages.success(request, f"{membership.user.username} is now "
                                          f"{services.members.ROLE_NAMES[membership.role]}.")
            else:
                messages.error(request, "Choose admin or labeler.")
        elif action == "remove":
            user, released = services.member_remove(project=project, user_id=user_id)
            held = (f"; the {released} prompt{'s' if released > 1 else ''} they held "
                    "went back to the others" if released else "")
            messages.success(request, f"{user.username} removed; their rankings stay{held}.")
        elif action == "password":
            form = MemberPasswordForm(request.POST)
            if form.is_valid():
                user = services.member_password_set(project=project, actor=request.user,
                                                    user_id=user_id,
                                                    password=form.cleaned_data["password"])
                messages.success(request, f"{user.username}'s password is set; tell them.")
            else:
                messages.error(request, " ".join(form.errors["password"]))
        elif action == "invitation":
            invitation = services.member_invitation_create(project=project, actor=request.user,
                                                           user_id=user_id)
            shown = _invitation_shown(request, invitation.user, invitation)
            return _members_page(request, project, invitation=shown)
        else:
            messages.error(request, "Unknown action.")
    except ApplicationError as refused:
        messages.error(request, str(refused))
    if selectors.project_role(request.user, project) != Membership.Role.ADMIN:
        return redirect("home")  # they removed themselves or gave up their admin role
    return redirect("project_members", slug=project.slug)
