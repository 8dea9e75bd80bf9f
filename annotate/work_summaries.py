"""Reads for "My rankings" in rate and demonstrate projects: a labeler's ratings with their
scores, and their demonstrations, in short (selectors.ranking_summaries is rank mode's twin).
Apart from selectors.py to keep each module short."""

from dataclasses import dataclass

from .models import Assignment, Completion, Demonstration, Project, Ranking
from .ranking import display_order
from .ratings import aspects_of, mean_score
from .rendering import plain_preview


@dataclass(frozen=True)
class RatedCompletion:
    key: str  # the card it was on when rated ("1" .. "K"), or "" when not recorded
    preview: str
    scores: list[tuple[str, int]]  # (aspect, score), in the project's aspect order
    mean: float


@dataclass(frozen=True)
class RatingSummary:
    ranking: Ranking
    prompt_preview: str
    completions: list[RatedCompletion]  # in the order the labeler saw them


def rating_summaries(project: Project, labeler, *, limit: int | None = None,
                     ) -> list[RatingSummary]:
    """Return the labeler's ratings in the project, latest first, each completion's scores."""
    ratings = list(Ranking.objects.filter(prompt__project=project, labeler=labeler)
                   .select_related("prompt").order_by("-updated_at")[:limit])
    texts = _completion_texts([r.prompt_id for r in ratings])
    aspects = aspects_of(project.rating_aspects)
    return [_rating_summary(rating, texts, aspects) for rating in ratings]


def _rating_summary(rating: Ranking, texts: dict[int, str], aspects: list[str]) -> RatingSummary:
    scores = rating.scores or {}
    shown = rating.displayed_order or sorted(int(key) for key in scores)
    rated = []
    for n, completion_id in enumerate(shown):
        aspect_scores = scores.get(str(completion_id))
        if aspect_scores is None:
            continue  # shown but never scored: a rating saved before scores were kept
        rated.append(RatedCompletion(
            str(n + 1) if rating.displayed_order else "",
            plain_preview(texts.get(completion_id, "")),
            [(name, aspect_scores[name]) for name in aspects if name in aspect_scores],
            mean_score(aspect_scores),
        ))
    return RatingSummary(rating, plain_preview(rating.prompt.last_text), rated)


@dataclass(frozen=True)
class DemonstrationSummary:
    demonstration: Demonstration
    prompt_preview: str
    preview: str
    source_key: str  # the card of the completion it was edited from; "" when from scratch


def demonstration_summaries(project: Project, labeler, *, limit: int | None = None,
                            ) -> list[DemonstrationSummary]:
    """Return the labeler's demonstrations in the project, latest first, with the card of the
    completion each was edited from (as the writing page numbered them for this labeler)."""
    demonstrations = list(Demonstration.objects.filter(prompt__project=project, labeler=labeler)
                          .select_related("prompt").order_by("-updated_at")[:limit])
    prompt_ids = [d.prompt_id for d in demonstrations]
    seeds = dict(Assignment.objects.filter(prompt__in=prompt_ids, labeler=labeler)
                 .values_list("prompt_id", "seed"))
    completion_ids: dict[int, list[int]] = {}
    for prompt_id, completion_id in (Completion.objects.filter(prompt__in=prompt_ids)
                                     .values_list("prompt_id", "id")):
        completion_ids.setdefault(prompt_id, []).append(completion_id)
    return [_demonstration_summary(d, completion_ids.get(d.prompt_id, []),
                                   seeds.get(d.prompt_id, d.prompt_id))
            for d in demonstrations]


def _demonstration_summary(demonstration: Demonstration, completion_ids: list[int],
                           seed: int) -> DemonstrationSummary:
    source_key = ""
    if demonstration.source_completion_id is not None:
        # The same order the writing page showed (views._demonstrate_page).
        order = display_order(completion_ids, seed)
        source_key = str(order.index(demonstration.source_completion_id) + 1)
    return DemonstrationSummary(demonstration, plain_preview(demonstration.prompt.last_text),
                                plain_preview(demonstration.text, limit=240), source_key)


def _completion_texts(prompt_ids: list[int]) -> dict[int, str]:
    return dict(Completion.objects.filter(prompt__in=prompt_ids).values_list("id", "text"))
