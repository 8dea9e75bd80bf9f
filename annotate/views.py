"""HTML pages: read the request, call one service or selector, render."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.errors import ApplicationError

from . import rate_views, selectors, services, work_summaries
from .agreement import PAIR_SHARE_BINS
from .charts import bar_chart, line_chart
from .forms import ExportForm, ImportForm, ProjectForm
from .labeling_pages import KEYS, page_data
from .models import Export, Membership, Project, PromptImport
from .quality import project_quality
from .ranking import FLAG_NAMES
from .rating_quality import project_rating_agreement
from .services.demonstrations import MAX_TEXT_CHARS


@require_GET
def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "database": connection.vendor})


@login_required
@require_GET
def home(request):
    projects = selectors.project_list_with_counts(request.user).order_by("name")
    rows = [(project, selectors.labeler_progress(project, request.user)) for project in projects]
    return render(request, "annotate/home.html", {
        "rows": rows,
        "can_create": selectors.user_can_create_projects(request.user),
    })


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request):
    if not selectors.user_can_create_projects(request.user):
        raise PermissionDenied
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.project_create(created_by=request.user, **form.cleaned_data)
        messages.success(request, f"Project {project.name} created.")
        return redirect("project_detail", slug=project.slug)
    return render(request, "annotate/project_form.html", {"form": form})


@login_required
@require_GET
def project_detail(request, slug: str):
    project = selectors.project_get_visible(request.user, slug=slug)
    return _render_project(request, project)


def _render_project(request, project, import_form=None, import_errors=None, export_form=None):
    role = selectors.project_role(request.user, project)
    is_admin = role == Membership.Role.ADMIN
    context = {"project": project, "is_admin": is_admin, "prompt_count": project.prompts.count(),
               "is_member": role is not None,
               "progress": selectors.labeler_progress(project, request.user)}
    if is_admin:
        context |= {
            "import_form": import_form or ImportForm(),
            "import_errors": import_errors,
            "memberships": project.memberships.select_related("user").order_by(
                "role", "user__username"
            ),
            "imports": project.imports.order_by("-created_at", "-id")[:10],
            "imports_in_progress": project.imports.filter(
                status__in=PromptImport.ACTIVE).exists(),
            "export_form": export_form or ExportForm(project=project),
            "exports": project.exports.all()[:20],
            "exports_in_progress": project.exports.filter(
                status__in=[Export.Status.QUEUED, Export.Status.RUNNING]
            ).exists(),
        }
    return render(request, "annotate/project_detail.html", context)


def _project_for_admin(request, slug: str):
    return selectors.project_get_administered(request.user, slug=slug)


@login_required
@require_POST
def project_import(request, slug: str):
    project = _project_for_admin(request, slug)
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render_project(request, project, import_form=form)
    try:
        record = services.prompts_import_upload(
            project=project,
            upload=form.cleaned_data["file"],
            file_format=form.cleaned_data["format"],
            skip_invalid=form.cleaned_data["skip_invalid"],
            imported_by=request.user,
        )
    except services.ImportRejected as exc:
        errors = [error.describe(exc.filename) for error in exc.errors]
        return _render_project(request, project, import_form=form, import_errors=errors)
    except ApplicationError as refused:
        messages.error(request, str(refused))
        return redirect("project_detail", slug=project.slug)
    messages.success(request, f"{record.filename} is queued for import; this page updates "
                              "itself.")
    return redirect("project_detail", slug=project.slug)


# --- labeling -----------------------------------------------------------------------------


@login_required
@require_GET
def rank_next(request, slug: str):
    """Resume the labeler's open lease, or lease them the next prompt."""
    project = selectors.project_get_visible(request.user, slug=slug)
    assignment = services.assignment_next(project=project, labeler=request.user)
    if assignment is None:
        progress = selectors.labeler_progress(project, request.user)
        context = {"project": project, "progress": progress}
        return render(request, "annotate/rank_done.html", context)
    return redirect("rank_page", slug=project.slug, prompt_id=assignment.prompt_id)


@login_required
@require_GET
def rank_page(request, slug: str, prompt_id: int):
    project = selectors.project_get_visible(request.user, slug=slug)
    if project.annotation_mode == Project.Mode.RATE:
        return rate_views.rate_page(request, project, prompt_id)
    if project.annotation_mode == Project.Mode.DEMONSTRATE:
        return _demonstrate_page(request, project, prompt_id)
    page = selectors.rank_page_get(project, request.user, prompt_id)
    rank_data = {
        **page_data(request, project, page.prompt, draft="draft", submit="rankings"),
        "allowTies": project.allow_ties,
        "autoPlaceLast": project.auto_place_last,
        "completions": [{"id": c.id, "key": KEYS[i]} for i, c in enumerate(page.completions)],
        "displayedOrder": [c.id for c in page.completions],
        "initialTiers": page.ranking.tiers if page.ranking else None,
        "initialFlags": page.ranking.flags if page.ranking else {},
        "initialComment": page.ranking.comment if page.ranking else "",
        "revision": page.ranking.revision if page.ranking else 0,
    }
    return render(request, "annotate/rank.html", {
        "project": project,
        "page": page,
        "keyed_completions": list(zip(KEYS, page.completions, strict=False)),
        "progress": selectors.labeler_progress(project, request.user),
        "rank_data": rank_data,
        "flag_names": FLAG_NAMES,
    })


def _demonstrate_page(request, project, prompt_id: int):
    """A demonstrate project's labeling page: write the response the prompt should get."""
    page = selectors.demonstration_page_get(project, request.user, prompt_id)
    written = page.demonstration
    write_data = {
        **page_data(request, project, page.prompt, draft="demonstration-draft",
                    submit="demonstrations"),
        # Raw texts: "Start from this one" copies a completion into the editor as written.
        "completions": [{"id": c.id, "key": KEYS[i], "text": c.text}
                        for i, c in enumerate(page.completions)],
        "initial": ({"text": written.text, "sourceId": written.source_completion_id,
                     "comment": written.comment} if written else None),
        "revision": written.revision if written else 0,
        "maxChars": MAX_TEXT_CHARS,
    }
    return render(request, "annotate/demonstrate.html", {
        "project": project,
        "page": page,
        "keyed_completions": list(zip(KEYS, page.completions, strict=False)),
        "progress": selectors.labeler_progress(project, request.user),
        "write_data": write_data,
        "max_chars": MAX_TEXT_CHARS,
    })


@login_required
@require_GET
def my_rankings(request, slug: str):
    """The labeler's own work in the project, as its mode leaves it, and their skips."""
    project = selectors.project_get_visible(request.user, slug=slug)
    return render(request, "annotate/my_rankings.html", {
        "project": project,
        "progress": selectors.labeler_progress(project, request.user),
        **_work_of(project, request.user),
    })


def _work_of(project, labeler, limit: int | None = None) -> dict:
    """The labeler's work as the project's mode leaves it (the lists' context), and skips."""
    context = {"skips": selectors.skips_of_labeler(project, labeler)}
    if project.annotation_mode == Project.Mode.RATE:
        context["ratings"] = work_summaries.rating_summaries(project, labeler, limit=limit)
        context["named_aspects"] = bool(project.rating_aspects)
    elif project.annotation_mode == Project.Mode.DEMONSTRATE:
        context["demonstrations"] = work_summaries.demonstration_summaries(project, labeler,
                                                                           limit=limit)
    else:
        context["rankings"] = selectors.ranking_summaries(project, labeler, limit=limit)
    return context


@login_required
@require_POST
def project_export_create(request, slug: str):
    project = _project_for_admin(request, slug)
    form = ExportForm(request.POST, project=project)
    if not form.is_valid():
        return _render_project(request, project, export_form=form)
    params = services.ExportParams(**{**form.cleaned_data,
                                      "formats": tuple(form.cleaned_data["formats"])})
    try:
        export = services.export_create(project=project, params=params, created_by=request.user)
    except ApplicationError as refused:
        messages.error(request, str(refused))
        return redirect("project_detail", slug=project.slug)
    messages.success(request, f"Export v{export.version} is queued; this page updates itself.")
    return redirect("project_detail", slug=project.slug)


@login_required
@require_GET
def project_dashboard(request, slug: str):
    project = _project_for_admin(request, slug)
    quality = project_quality(project)
    progress = selectors.labeler_progress(project, request.user)
    charts = {
        "agreement": bar_chart(quality.pair_agreement_histogram, PAIR_SHARE_BINS,
                               title="Pairs with 2+ votes, by agreement",
                               x_label="larger side's share of the votes",
                               y_label="pairs"),
        "position": bar_chart(
            quality.top_share_by_position,
            [f"#{n + 1}" for n in range(len(quality.top_share_by_position))],
            title="Ranked first, by position shown", value_format="{:.0%}",
            reference=quality.expected_top_share, reference_label="no bias",
            x_label="position on the page", y_label="share ranked first",
        ),
        "throughput": _throughput_chart(quality.throughput),
    }
    return render(request, "annotate/dashboard.html", {
        "project": project, "quality": quality, "progress": progress,
        "rating": project_rating_agreement(project),  # None unless the project rates
        "exports": project.exports.all()[:20],
        "export_form": ExportForm(project=project),
        "charts": {name: mark_safe(svg) for name, svg in charts.items()},  # noqa: S308 - escaped
    })


def _throughput_chart(throughput) -> str:
    starts = [start for start, _ in throughput.buckets]
    hourly = throughput.unit == "hour"
    label = "%d %b %H:00" if hourly else "%d %b"
    return line_chart(
        {f"rankings per {throughput.unit}": [[n, count] for n, (_, count)
                                             in enumerate(throughput.buckets)]},
        title=f"Rankings per {throughput.unit}, last {'48 hours' if hourly else '14 days'}",
        value_format="{:g}", x_label="hour" if hourly else "day", y_label="rankings",
        x_format=lambda n: starts[int(n)].strftime(label), width=860,
    )


@login_required
@require_GET
def project_labeler(request, slug: str, username: str):
    """One labeler as the project's admins see them: their numbers and latest rankings."""
    project = _project_for_admin(request, slug)
    labeler = selectors.project_labeler_get(project, username)
    quality = next((q for q in project_quality(project).labelers if q.user_id == labeler.id),
                   None)
    return render(request, "annotate/labeler.html", {
        "project": project, "labeler": labeler, "quality": quality,
        **_work_of(project, labeler, limit=20),
    })
