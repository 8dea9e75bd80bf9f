"""Reads. Every page and endpoint finds projects through these, so scoping lives in one place."""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from .agreement import gold_accuracy
from .compiled import CompiledQuery
from .models import (
    Assignment,
    Completion,
    Demonstration,
    Export,
    Membership,
    Project,
    Prompt,
    PromptImport,
    Ranking,
)
from .ranking import display_order
from .rendering import plain_preview
from .winrates import WinRates, win_rates


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
    if lookup.keys() == {"id"} and type(lookup["id"]) is int and user.is_authenticated:
        return _project_visible_by_id(user, lookup["id"])
    try:
        return projects_visible_to(user).get(**lookup)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


PROJECT_FIELDS = [field.attname for field in Project._meta.concrete_fields]
# The same reads as projects_visible_to(user).get(id=...), written by the ORM once (every
# labeling request starts with one: annotate.compiled).
_PROJECT_OF_MEMBER = CompiledQuery(
    lambda project_id, user_id: Project.objects.filter(
        id=project_id, id__in=Membership.objects.filter(user_id=user_id).values("project_id"),
    ).order_by().values_list(*PROJECT_FIELDS),
    project_id=int, user_id=int)
_PROJECT = CompiledQuery(
    lambda project_id: Project.objects.filter(id=project_id).order_by()
    .values_list(*PROJECT_FIELDS),
    project_id=int)


def _project_visible_by_id(user, project_id: int) -> Project:
    if not user.is_active:
        raise Http404("No such project.")
    if user.is_superuser:
        row = _PROJECT.first(project_id=project_id)
    else:
        row = _PROJECT_OF_MEMBER.first(project_id=project_id, user_id=user.id)
    if row is None:
        raise Http404("No such project.")
    return Project.from_db(connection.alias, PROJECT_FIELDS, row)


def project_role(user, project: Project) -> str | None:
    """Return 'admin', 'labeler' or None; a superuser counts as admin everywhere."""
    if user.is_superuser:
        return Membership.Role.ADMIN
    return (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )


def project_get_administered(user, **lookup) -> Project:
    """The project matching `lookup` if `user` administers it: Http404 if they cannot see it,
    PermissionDenied (403) if they only label it. Pages and API endpoints both use this."""
    project = project_get_visible(user, **lookup)
    if project_role(user, project) != Membership.Role.ADMIN:
        raise PermissionDenied("Only the project's admins may do this.")
    return project


def export_get_administered(user, export_id: int) -> Export:
    """The export if `user` administers its project: Http404 if they cannot see the project,
    PermissionDenied (403) if they only label it."""
    export = (
        Export.objects.select_related("project")
        .filter(id=export_id, project__in=projects_visible_to(user))
        .first()
    )
    if export is None:
        raise Http404("No such export.")
    project_get_administered(user, id=export.project_id)
    return export


def prompt_import_get(project: Project, import_id: int) -> PromptImport:
    """One import of `project` (whose access the caller checked): Http404 if not of it."""
    record = PromptImport.objects.filter(project=project, id=import_id).first()
    if record is None:
        raise Http404("No such import in this project.")
    return record


def user_can_create_projects(user) -> bool:
    return user.is_authenticated and user.is_active and user.is_staff


def project_list_with_counts(user) -> QuerySet[Project]:
    return projects_visible_to(user).annotate(
        prompt_count=Count("prompts", distinct=True),
        member_count=Count("memberships", distinct=True),
    )


def labeler_progress(project: Project, labeler, now=None) -> dict[str, int]:
    """Return the labeler's and the project's counts for the progress bar.

    The project's counts leave gold prompts out (every labeler may rank those, so they have
    no target to reach) and retired ones (no one is handed them).
    """
    now = now or timezone.now()
    mine = Assignment.objects.filter(prompt__project=project, labeler=labeler)
    totals = Prompt.objects.filter(project=project, gold_tiers__isnull=True,
                                   retired_at__isnull=True).aggregate(
        prompts=Count("id"),
        ranked=Coalesce(Sum("ranking_count"), 0),
        extra=Coalesce(Sum("extra_rankings"), 0),
    )
    needed = totals["prompts"] * project.labelers_per_prompt + totals["extra"]
    return {
        "done": mine.filter(status=Assignment.Status.RANKED).count(),
        "skipped": mine.filter(status=Assignment.Status.SKIPPED).count(),
        "assigned": mine.filter(status=Assignment.Status.LEASED, expires_at__gt=now).count(),
        "project_ranked": totals["ranked"],
        "project_needed": needed,
        "left": needed - totals["ranked"],
    }


@dataclass(frozen=True)
class RankPage:
    """What the ranking page shows: a prompt leased to (or ranked by) the labeler."""

    prompt: Prompt
    completions: list[Completion]  # in this labeler's display order
    assignment: Assignment | None
    ranking: Ranking | None  # set when revising


def rank_page_get(project: Project, labeler, prompt_id: int) -> RankPage:
    """Return the page's data, or raise Http404 unless the prompt is leased to or ranked by them."""
    prompt = Prompt.objects.filter(project=project, id=prompt_id).first()
    if prompt is None:
        raise Http404("No such prompt.")
    ranking = Ranking.objects.filter(prompt=prompt, labeler=labeler).first()
    assignment = Assignment.objects.filter(prompt=prompt, labeler=labeler).first()
    if ranking is None and (assignment is None or assignment.status != Assignment.Status.LEASED):
        raise Http404("This prompt is not leased to you.")
    completions = {c.id: c for c in prompt.completions.all()}
    if ranking is not None and ranking.displayed_order:
        order = ranking.displayed_order
    else:
        order = display_order(list(completions), assignment.seed if assignment else prompt.id)
    return RankPage(prompt, [completions[i] for i in order], assignment, ranking)


COMPLETION_FIELDS = [field.attname for field in Completion._meta.concrete_fields]
_COMPLETIONS_OF = CompiledQuery(
    lambda prompt_id: Completion.objects.filter(prompt_id=prompt_id)
    .values_list(*COMPLETION_FIELDS),
    prompt_id=int)


def rank_page_for_lease(assignment: Assignment) -> RankPage:
    """The page of a prompt the labeler holds a lease on (and so has not ranked yet).

    The same order as rank_page_get, without reading the prompt and lease again.
    """
    prompt = assignment.prompt
    completions = {row[0]: Completion.from_db(connection.alias, COMPLETION_FIELDS, row)
                   for row in _COMPLETIONS_OF.rows(prompt_id=prompt.id)}
    order = display_order(list(completions), assignment.seed)
    return RankPage(prompt, [completions[i] for i in order], assignment, None)


@dataclass(frozen=True)
class DemonstrationPage:
    """What the writing page of a demonstrate project shows: a prompt leased to the labeler,
    or one they wrote for (revising)."""

    prompt: Prompt
    completions: list[Completion]  # in this labeler's display order, keys 1..K
    assignment: Assignment | None
    demonstration: Demonstration | None  # set when revising


def demonstration_page_get(project: Project, labeler, prompt_id: int) -> DemonstrationPage:
    """The page's data, or Http404 unless the prompt is leased to them or they wrote for it."""
    prompt = Prompt.objects.filter(project=project, id=prompt_id).first()
    if prompt is None:
        raise Http404("No such prompt.")
    demonstration = Demonstration.objects.filter(prompt=prompt, labeler=labeler).first()
    assignment = Assignment.objects.filter(prompt=prompt, labeler=labeler).first()
    leased = assignment is not None and assignment.status == Assignment.Status.LEASED
    if demonstration is None and not leased:
        raise Http404("This prompt is not leased to you.")
    completions = {c.id: c for c in prompt.completions.all()}
    order = display_order(list(completions), assignment.seed if assignment else prompt.id)
    return DemonstrationPage(prompt, [completions[i] for i in order], assignment, demonstration)


def rankings_of_labeler(project: Project, labeler) -> QuerySet[Ranking]:
    return (
        Ranking.objects.filter(prompt__project=project, labeler=labeler)
        .select_related("prompt")
        .order_by("-updated_at")
    )


def project_labeler_get(project: Project, username: str):
    """Return the user who is a member of the project or ranked in it, or raise Http404."""
    from django.contrib.auth import get_user_model

    user = (get_user_model().objects.filter(username=username)
            .filter(Q(memberships__project=project) | Q(rankings__prompt__project=project))
            .distinct().first())
    if user is None:
        raise Http404("No such labeler in this project.")
    return user


@dataclass(frozen=True)
class RankedCompletion:
    key: str  # the key the labeler saw on its card ("1" .. "K"), or "" when not recorded
    preview: str  # plain text, one line


@dataclass(frozen=True)
class RankingSummary:
    """A ranking as a list shows it: the prompt and the tiers, best first, in short."""

    ranking: Ranking
    prompt_preview: str
    tiers: list[list[RankedCompletion]]


def ranking_summaries(project: Project, labeler, *, limit: int | None = None,
                      ) -> list[RankingSummary]:
    """Return the labeler's rankings in the project, latest first, with short previews."""
    rankings = list(rankings_of_labeler(project, labeler)[:limit])
    texts = dict(Completion.objects.filter(prompt__in=[r.prompt_id for r in rankings])
                 .values_list("id", "text"))
    return [_summary(ranking, texts) for ranking in rankings]


def _summary(ranking: Ranking, texts: dict[int, str]) -> RankingSummary:
    shown = ranking.displayed_order or []
    keys = {completion_id: str(n + 1) for n, completion_id in enumerate(shown)}
    tiers = [[RankedCompletion(keys.get(i, ""), plain_preview(texts.get(i, "")))
              for i in tier] for tier in ranking.tiers]
    return RankingSummary(ranking, plain_preview(ranking.prompt.last_text), tiers)


@dataclass(frozen=True)
class SkipSummary:
    prompt_id: int
    prompt_preview: str
    reason: str
    skipped_at: object  # datetime


def skips_of_labeler(project: Project, labeler) -> list[SkipSummary]:
    """Return the prompts the labeler skipped, latest first, with the reason they gave."""
    skipped = (Assignment.objects.filter(prompt__project=project, labeler=labeler,
                                         status=Assignment.Status.SKIPPED)
               .select_related("prompt").order_by("-closed_at"))
    return [SkipSummary(a.prompt_id, plain_preview(a.prompt.last_text), a.skip_reason,
                        a.closed_at) for a in skipped]


def gold_feedback(project: Project, labeler, ranking: Ranking) -> dict | None:
    """During onboarding, what a labeler sees after a gold prompt: the reference and a score."""
    prompt = ranking.prompt
    if not prompt.is_gold or not project.onboarding_gold_count:
        return None
    closed_gold = (
        Assignment.objects.filter(labeler=labeler, prompt__project=project,
                                  prompt__gold_tiers__isnull=False)
        .exclude(status=Assignment.Status.LEASED)
        .count()
    )
    if closed_gold > project.onboarding_gold_count:
        return None  # past onboarding, gold prompts stay unannounced
    return {
        "reference": prompt.gold_tiers,
        "mode": prompt.gold_mode,
        "accuracy": gold_accuracy(ranking.tiers, prompt.gold_tiers, mode=prompt.gold_mode),
        "onboarding_done": closed_gold,
        "onboarding_total": project.onboarding_gold_count,
    }


UNNAMED_MODEL = "(no model named)"


def model_win_rates(project: Project, *, source_import_id: int | None = None,
                    reference: str | None = None, exclude_labelers=(),
                    resamples: int = 1000) -> WinRates | None:
    """How the labelers' rankings judge the models that wrote the completions (win rates and
    Bradley-Terry strengths with prompt-bootstrap intervals); None when the completions in
    scope (the project's, or one import's) come from fewer than two models."""
    # A retired prompt is out of exports, so out of what they say of the models too.
    completions = Completion.objects.filter(prompt__project=project,
                                            prompt__retired_at__isnull=True)
    rankings = Ranking.objects.filter(prompt__project=project, source=Ranking.Source.LABELER,
                                      prompt__retired_at__isnull=True)
    if source_import_id is not None:
        completions = completions.filter(prompt__source_import_id=source_import_id)
        rankings = rankings.filter(prompt__source_import_id=source_import_id)
    if completions.values("model_name").distinct().count() < 2:
        return None
    model_of = {cid: name or UNNAMED_MODEL for cid, name in
                completions.values_list("id", "model_name").iterator(chunk_size=5000)}
    rows = (rankings.exclude(labeler_id__in=list(exclude_labelers))
            .values_list("prompt_id", "tiers").iterator(chunk_size=5000))
    return win_rates(rows, model_of, reference=reference, resamples=resamples)
