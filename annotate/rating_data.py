"""Scores and preference pairs from one prompt's ratings. Pure Python: no Django, no database.

A rating is one labeler's scores for a prompt's completions, in the stored form of
annotate.ratings: {"<completion id>": {"<aspect>": score}}. From the ratings of one prompt:

- a labeler's score for a completion is the mean over its aspects (ratings.mean_score);
- a completion's `mean` is the mean of its labelers' scores, `votes` how many labelers rated
  it, `spread` their highest score minus their lowest, `aspects` each aspect's mean over the
  labelers that scored it. All in scale units (a 1..5 scale gives means from 1 to 5);
- a completion is kept when votes >= min_votes and spread <= max_spread;
- every two kept completions with different means give a pair: chosen the higher mean,
  rejected the lower, `margin` the difference of their means, in scale units.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from math import isclose

from .ratings import Scores, mean_score

# Means are sums of whole numbers divided by counts: equal means may differ in the last bit.
EQUAL_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class CompletionScore:
    completion_id: int
    mean: float  # mean over labelers of each labeler's mean over aspects, in scale units
    votes: int  # labelers who rated it
    spread: float  # highest labeler score minus lowest, in scale units
    aspects: dict[str, float]  # aspect -> mean over the labelers who scored it

    def kept(self, *, min_votes: int, max_spread: float) -> bool:
        return self.votes >= min_votes and self.spread <= max_spread + EQUAL_TOLERANCE


@dataclass(frozen=True, slots=True)
class RatedPair:
    chosen: int  # completion id with the higher mean score
    rejected: int
    margin: float  # chosen's mean minus rejected's, in scale units (> 0)


def completion_scores(ratings: Sequence[Scores]) -> list[CompletionScore]:
    """Return each rated completion's mean, votes, spread and aspect means, by completion id.

    >>> first, second = completion_scores([
    ...     {"7": {"overall": 5}, "8": {"overall": 2}},
    ...     {"7": {"overall": 4}, "8": {"overall": 2}}])
    >>> first
    CompletionScore(completion_id=7, mean=4.5, votes=2, spread=1.0, aspects={'overall': 4.5})
    >>> second.mean, second.spread
    (2.0, 0.0)
    """
    labeler_scores: dict[int, list[float]] = {}
    aspect_scores: dict[int, dict[str, list[int]]] = {}
    for rating in ratings:
        for key, scores in rating.items():
            completion_id = int(key)
            labeler_scores.setdefault(completion_id, []).append(mean_score(scores))
            by_aspect = aspect_scores.setdefault(completion_id, {})
            for aspect, score in scores.items():
                by_aspect.setdefault(aspect, []).append(score)
    return [
        CompletionScore(
            completion_id=completion_id, mean=_mean(values), votes=len(values),
            spread=float(max(values) - min(values)),
            aspects={aspect: _mean(aspect_values) for aspect, aspect_values
                     in sorted(aspect_scores[completion_id].items())},
        )
        for completion_id, values in sorted(labeler_scores.items())
    ]


def rated_pairs(scores: Sequence[CompletionScore], *, min_votes: int,
                max_spread: float) -> list[RatedPair]:
    """Return a pair for every two kept completions whose means differ, the higher chosen.

    Pairs come best chosen first, then by rejected's mean, highest first (ties by id).

    >>> scores = completion_scores([
    ...     {"1": {"overall": 5}, "2": {"overall": 3}, "3": {"overall": 3}},
    ...     {"1": {"overall": 4}, "2": {"overall": 3}, "3": {"overall": 3}}])
    >>> rated_pairs(scores, min_votes=2, max_spread=2.0)
    [RatedPair(chosen=1, rejected=2, margin=1.5), RatedPair(chosen=1, rejected=3, margin=1.5)]
    >>> rated_pairs(scores, min_votes=2, max_spread=0.5)  # completion 1's spread is 1
    []
    """
    kept = [score for score in scores if score.kept(min_votes=min_votes, max_spread=max_spread)]
    kept.sort(key=lambda score: (-score.mean, score.completion_id))
    return [
        RatedPair(higher.completion_id, lower.completion_id, higher.mean - lower.mean)
        for higher, lower in combinations(kept, 2)
        if not isclose(higher.mean, lower.mean, rel_tol=0, abs_tol=EQUAL_TOLERANCE)
    ]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
