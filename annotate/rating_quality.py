"""Reads for the admin dashboard of a rate project: how much the labelers' scores agree.

Loads the project's ratings once and hands them to the pure metrics in
annotate.rating_agreement: Krippendorff's alpha with the interval metric (units: completions,
coders: labelers) and each labeler's Pearson correlation with the others' mean score.
"""

from dataclasses import dataclass

from .models import Project, Ranking
from .rating_agreement import (
    LabelerCorrelation,
    interval_alpha,
    labeler_correlations,
    rating_units,
)


@dataclass(frozen=True)
class LabelerRatingAgreement:
    username: str
    ratings: int  # prompts they rated
    correlation: LabelerCorrelation  # with the others' mean, on the completions they share


@dataclass(frozen=True)
class RatingAgreement:
    ratings: int
    alpha: float | None  # interval alpha of each labeler's score (mean over aspects)
    aspect_alphas: list[tuple[str, float | None]]  # per aspect; empty without named aspects
    labelers: list[LabelerRatingAgreement]  # by username


def project_rating_agreement(project: Project) -> RatingAgreement | None:
    """The labelers' agreement on their scores; None unless the project rates.

    Labelers' ratings of the prompts still in use count (imported rankings and retired
    prompts do not), gold prompts included.
    """
    if project.annotation_mode != Project.Mode.RATE:
        return None
    ratings = list(
        Ranking.objects.filter(prompt__project=project, source=Ranking.Source.LABELER,
                               prompt__retired_at__isnull=True, scores__isnull=False)
        .order_by("id").values_list("labeler__username", "scores").iterator(chunk_size=5000)
    )
    units = rating_units(ratings)
    per_labeler: dict[str, int] = {}
    for username, _ in ratings:
        per_labeler[username] = per_labeler.get(username, 0) + 1
    correlations = labeler_correlations(units)
    return RatingAgreement(
        ratings=len(ratings),
        alpha=interval_alpha(list(scores.values()) for scores in units.values()),
        aspect_alphas=[(aspect, _aspect_alpha(ratings, aspect))
                       for aspect in project.rating_aspects],
        labelers=[LabelerRatingAgreement(username, count,
                                         correlations.get(username, LabelerCorrelation(0, None)))
                  for username, count in sorted(per_labeler.items())],
    )


def _aspect_alpha(ratings: list[tuple[str, dict]], aspect: str) -> float | None:
    units = rating_units(ratings, aspect=aspect)
    return interval_alpha(list(scores.values()) for scores in units.values())
