"""Training pages for project admins: start jobs, watch them, browse and use the registry."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotate import selectors as annotate_selectors
from annotate import services as annotate_services
from annotate.charts import line_chart
from config.errors import ApplicationError

from . import selectors, services
from .apis import model_files
from .catalog import catalog_models
from .forms import JobForm, RoundForm, RoundRetryForm, ScoreForm
from .kinds import KINDS, JobRequest
from .models import Round
from .services.requests import ARTIFACT_PREFIX


@login_required
@require_http_methods(["GET", "POST"])
def project_training(request, slug: str):
    project = annotate_selectors.project_get_administered(request.user, slug=slug)
    which = request.POST.get("form") if request.method == "POST" else None
    catalog = catalog_models()
    forms = [JobForm(request.POST if which == kind.name else None, kind=kind, project=project,
                     catalog=catalog) for kind in KINDS.values()]
    form = next((f for f in forms if f.kind.name == which), None)
    if form is not None and form.is_valid():
        try:
            job, created = services.job_request(project=project, request=form.to_request(),
                                                created_by=request.user)
        except ApplicationError as refused:
            form.add_refusal(refused)
        else:
            if not created:
                messages.info(request, "The same job is already queued or running: here it is.")
            return redirect("training_job", job_id=job.id)
    return render(request, "training/project_training.html", {
        "project": project, "forms": forms,
        "jobs": selectors.jobs_for_admin(request.user, project)[:50],
        "models": selectors.artifacts_for_admin(request.user, project)[:50],
    })


@login_required
@require_http_methods(["GET", "POST"])
def project_rounds(request, slug: str):
    project = annotate_selectors.project_get_administered(request.user, slug=slug)
    form = RoundForm(request.POST if request.method == "POST" else None, project=project,
                     last=selectors.round_to_go_on_from(project))
    if request.method == "POST" and form.is_valid():
        try:
            round_ = services.round_start(
                project=project, created_by=request.user,
                reward_model=form.cleaned_data["reward_model"],
                policy_model=form.cleaned_data["policy_model"],
                algorithm=form.cleaned_data["algorithm"])
        except ApplicationError as refused:
            messages.error(request, str(refused))
        else:
            messages.success(request, f"Round {round_.number} started: exporting the dataset.")
        return redirect("project_rounds", slug=project.slug)
    rounds = [(round_, progress, steps, RoundRetryForm(round_=round_)
               if round_.status == Round.Status.FAILED else None)
              for round_, progress, steps in selectors.rounds_with_progress(project)]
    judged = selectors.rounds_judged([round_ for round_, *_ in rounds])
    return render(request, "training/rounds.html", {
        "project": project, "rounds": rounds, "form": form, "judged": judged,
        "judged_chart": mark_safe(selectors.judged_chart(judged))  # noqa: S308 - escaped
        if sum(1 for j in judged if j.human) >= 2 else "",  # a line needs two rounds
        "active_statuses": [str(status) for status in Round.ACTIVE],
        "active": any(round_.status in Round.ACTIVE for round_, *_ in rounds)})


@login_required
@require_POST
def project_round_retry(request, slug: str, number: int):
    round_ = selectors.round_get_for_admin(request.user, slug, number)
    project = round_.project
    form = RoundRetryForm(request.POST, round_=round_)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{name}: {' '.join(errors)}"
                                          for name, errors in form.errors.items()))
        return redirect("project_rounds", slug=project.slug)
    try:
        round_ = services.round_retry(round_, created_by=request.user, params=form.changes())
    except ApplicationError as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"Round {round_.number}: {round_.get_status_display()}, "
                                  "again.")
    return redirect("project_rounds", slug=project.slug)


@login_required
@require_POST
def project_round_cancel(request, slug: str, number: int):
    round_ = selectors.round_get_for_admin(request.user, slug, number)
    project = round_.project
    try:
        services.round_cancel(round_)
    except ApplicationError as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"Round {round_.number} cancelled.")
    return redirect("project_rounds", slug=project.slug)


@login_required
@require_GET
def job_detail(request, job_id: int):
    job = selectors.job_get_for_admin(request.user, job_id)
    context = {"job": job, "project": job.project, "charts": _charts(job),
               "output_model": selectors.job_output_artifact(job)}
    if request.GET.get("fragment"):  # what job.js swaps in while the job is active
        return render(request, "training/_job_live.html", context)
    return render(request, "training/job_detail.html", context)


def _charts(job) -> list:
    kind = KINDS.get(job.kind)
    curves = kind.curves_for(job.params) if kind else ()
    return [mark_safe(line_chart(selectors.job_metric_series(job, curve.metrics),  # noqa: S308 - escaped
                                 title=curve.title)) for curve in curves]


@login_required
@require_POST
def job_cancel(request, job_id: int):
    job = services.job_cancel(selectors.job_get_for_admin(request.user, job_id))
    if job.status == job.Status.CANCELLED:
        messages.success(request, "Cancelled.")
    else:
        messages.success(request, "Stopping at the end of the current step.")
    return redirect("training_job", job_id=job.id)


@login_required
@require_http_methods(["GET", "POST"])
def model_detail(request, artifact_id: int):
    artifact = selectors.artifact_get_for_admin(request.user, artifact_id)
    form = ScoreForm(request.POST or None)
    scores = None
    if request.method == "POST" and form.is_valid():
        try:
            scores = services.model_score(
                artifact, [(form.cleaned_data["prompt"], form.cleaned_data["response"])],
                alpha=form.cleaned_data["alpha"])
        except ApplicationError as refused:
            form.add_error(None, str(refused))
    return render(request, "training/model_detail.html", {
        "artifact": artifact, "project": artifact.project, "form": form,
        "reward": scores.rewards[0] if scores else None, "cut": bool(scores and scores.truncated),
        "lineage": selectors.lineage(artifact),
        "evaluation": selectors.policy_evaluation(artifact),
        "disagreements": selectors.disagreements(artifact, limit=30),
        "scored": artifact.scores.exists(), "files": model_files(artifact),
    })


@login_required
@require_POST
def model_score_project(request, artifact_id: int):
    artifact = selectors.artifact_get_for_admin(request.user, artifact_id)
    try:
        job, _ = services.job_request(
            project=artifact.project, created_by=request.user,
            request=JobRequest("score", {}, {"reward": f"{ARTIFACT_PREFIX}{artifact.id}"}))
    except ApplicationError as refused:
        messages.error(request, str(refused))
        return redirect("training_model", artifact_id=artifact.id)
    return redirect("training_job", job_id=job.id)


@login_required
@require_POST
def model_request_more(request, artifact_id: int):
    artifact = selectors.artifact_get_for_admin(request.user, artifact_id)
    # isdigit() alone passes "²", which int() refuses; 18 digits fit a bigint.
    prompt_ids = [int(value) for value in request.POST.getlist("prompt")
                  if value.isascii() and value.isdigit() and len(value) <= 18]
    count = annotate_services.prompts_request_more_rankings(project=artifact.project,
                                                            prompt_ids=prompt_ids)
    messages.success(request, f"{count} prompts sent back for one more ranking each.")
    return redirect("training_model", artifact_id=artifact.id)
