"""Training pages for project admins: start jobs, watch them, browse and use the registry."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotate import selectors as annotate_selectors
from annotate.charts import line_chart

from . import selectors, services
from .forms import GenerateJobForm, PolicyJobForm, RewardJobForm, ScoreForm
from .models import Round

CURVES = (("Loss", ("loss",)), ("Pair accuracy in the batch", ("accuracy",)),
          ("Reward margin (chosen - rejected)", ("margin",)))
SCORE_CURVES = (("Completions scored", ("scored",)),)
POLICY_CURVES = (("Mean reward", ("reward", "rlhf_reward")), ("KL to the reference", ("kl",)),
                 ("Entropy", ("entropy",)), ("Policy and value loss",
                                             ("policy_loss", "value_loss")),
                 ("Clip fraction", ("clip_fraction",)), ("Response length", ("response_length",)))
CURVES_BY_KIND = {"reward": CURVES, "score": SCORE_CURVES, "ppo": POLICY_CURVES,
                  "generate": (("Prompts written", ("prompts",)),)}


@login_required
@require_http_methods(["GET", "POST"])
def project_training(request, slug: str):
    project = annotate_selectors.project_get_administered(request.user, slug=slug)
    which = request.POST.get("form") if request.method == "POST" else None
    reward_form = RewardJobForm(request.POST if which == "reward" else None, project=project)
    policy_form = PolicyJobForm(request.POST if which == "policy" else None, project=project)
    generate_form = GenerateJobForm(request.POST if which == "generate" else None,
                                    project=project)
    form = {"reward": reward_form, "policy": policy_form, "generate": generate_form}.get(which)
    if form is not None and form.is_valid():
        try:
            job, created = form.create_job(project=project, created_by=request.user)
        except services.JobRefused as refused:
            form.add_error(None, str(refused))
        else:
            if not created:
                messages.info(request, "The same job is already queued or running: here it is.")
            return redirect("training_job", job_id=job.id)
    return render(request, "training/project_training.html", {
        "project": project, "form": reward_form, "policy_form": policy_form,
        "generate_form": generate_form,
        "jobs": selectors.jobs_for_admin(request.user, project)[:50],
        "models": selectors.artifacts_for_admin(request.user, project)[:50],
    })


@login_required
@require_http_methods(["GET", "POST"])
def project_rounds(request, slug: str):
    project = annotate_selectors.project_get_administered(request.user, slug=slug)
    if request.method == "POST":
        try:
            round_ = services.round_start(
                project=project, created_by=request.user,
                reward_base=request.POST.get("reward_base", "").strip(),
                policy_base=request.POST.get("policy_base", "").strip())
        except services.JobRefused as refused:
            messages.error(request, str(refused))
        else:
            messages.success(request, f"Round {round_.number} started: exporting the dataset.")
        return redirect("project_rounds", slug=project.slug)
    return render(request, "training/rounds.html", {
        "project": project, "rounds": selectors.rounds_with_progress(project),
        "active": project.rounds.filter(status__in=Round.ACTIVE).exists()})


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
    curves = CURVES_BY_KIND.get(job.kind, CURVES)
    return [mark_safe(line_chart(selectors.job_metric_series(job, names), title=title))  # noqa: S308 - escaped
            for title, names in curves]


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
    reward = None
    if request.method == "POST" and form.is_valid():
        try:
            (reward,) = services.model_score(
                artifact, [(form.cleaned_data["prompt"], form.cleaned_data["response"])],
                alpha=form.cleaned_data["alpha"])
        except services.JobRefused as refused:
            form.add_error(None, str(refused))
    return render(request, "training/model_detail.html", {
        "artifact": artifact, "project": artifact.project, "form": form, "reward": reward,
        "lineage": selectors.lineage(artifact),
        "disagreements": services.disagreements(artifact, limit=30),
        "scored": artifact.scores.exists(),
    })


@login_required
@require_POST
def model_score_project(request, artifact_id: int):
    artifact = selectors.artifact_get_for_admin(request.user, artifact_id)
    try:
        job, _ = services.score_job_create(artifact=artifact, created_by=request.user)
    except services.JobRefused as refused:
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
    count = services.prompts_request_more_rankings(project=artifact.project,
                                                   prompt_ids=prompt_ids)
    messages.success(request, f"{count} prompts sent back for one more ranking each.")
    return redirect("training_model", artifact_id=artifact.id)
