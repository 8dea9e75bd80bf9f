"""How much labelers agree on a rate project's scores. Pure Python: no Django, no database.

Rate mode's counterpart of annotate.agreement (rankings): Krippendorff's alpha with the
interval metric, each completion a unit and each labeler a coder, and each labeler's Pearson
correlation with the mean of the others' scores (annotate.rating_quality reads them for the
dashboard). As there, a metric that is undefined is None, never NaN.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import sqrt

from .ratings import Scores, mean_score

# completion id -> {labeler: the score they gave it}
RatingUnits = dict[int, dict[str, float]]


def rating_units(ratings: Iterable[tuple[str, Scores]], aspect: str | None = None) -> RatingUnits:
    """Group rate mode's scores by completion: completion id -> {labeler: score}.

    The score is the labeler's mean over aspects (annotate.ratings.mean_score), or one
    aspect's score when `aspect` is named (ratings without it are left out).

    >>> rating_units([("ann", {"7": {"style": 4, "facts": 2}}), ("bob", {"7": {"style": 5}})])
    {7: {'ann': 3.0, 'bob': 5.0}}
    >>> rating_units([("ann", {"7": {"style": 4, "facts": 2}}), ("bob", {"7": {"style": 5}})],
    ...              aspect="facts")
    {7: {'ann': 2}}
    """
    units: RatingUnits = {}
    for labeler, scores in ratings:
        for key, aspect_scores in scores.items():
            if aspect is None:
                units.setdefault(int(key), {})[labeler] = mean_score(aspect_scores)
            elif aspect in aspect_scores:
                units.setdefault(int(key), {})[labeler] = aspect_scores[aspect]
    return units


def interval_alpha(units: Iterable[Sequence[float]]) -> float | None:
    """Return Krippendorff's alpha with the interval metric of values grouped by unit, or None.

    Each item of `units` holds the values the coders gave one unit (missing values left out);
    units with fewer than two values are not pairable and left out. With n pairable values,
    m_u values in unit u and the interval distance delta^2 = (c - k)^2 (Krippendorff 2011,
    "Computing Krippendorff's Alpha-Reliability"):
    D_o = 1/n sum_u 1/(m_u - 1) sum_{i != j in u} (v_i - v_j)^2,
    D_e = 1/(n (n - 1)) sum_{i != j, all pairable values} (v_i - v_j)^2, alpha = 1 - D_o / D_e.
    A group's sum over its pairs is m sum v^2 - (sum v)^2, so one pass suffices. None when no
    unit is pairable or the pairable values are all equal.

    >>> interval_alpha([[1, 1], [3, 3], [5]])
    1.0
    >>> interval_alpha([[1, 2], [2, 1]])
    -0.5
    """
    within = 0.0  # sum_u of the unit's pair sum / (m_u - 1)
    count, total, squares = 0, 0.0, 0.0
    for values in units:
        if len(values) < 2:
            continue
        unit_sum, unit_squares = sum(values), sum(v * v for v in values)
        within += (len(values) * unit_squares - unit_sum**2) / (len(values) - 1)
        count, total, squares = count + len(values), total + unit_sum, squares + unit_squares
    between = count * squares - total**2
    if count == 0 or between <= 1e-12 * max(1.0, squares):
        return None
    return 1 - (count - 1) * within / between


@dataclass(frozen=True, slots=True)
class LabelerCorrelation:
    completions: int  # completions the labeler scored that another labeler scored too
    pearson: float | None  # with the others' mean score; None if undefined (n < 2, no spread)


def labeler_correlations(units: RatingUnits) -> dict[str, LabelerCorrelation]:
    """Return each labeler's Pearson correlation with the mean of the other labelers' scores,
    over the completions they share with at least one other labeler, by labeler name.

    >>> labeler_correlations({1: {"ann": 1, "bob": 2, "cy": 2}, 2: {"ann": 3, "bob": 4},
    ...                       3: {"ann": 5}})["ann"]
    LabelerCorrelation(completions=2, pearson=1.0)
    """
    paired: dict[str, tuple[list[float], list[float]]] = {}
    for scores in units.values():
        if len(scores) < 2:
            continue
        total = sum(scores.values())
        for labeler, score in scores.items():
            mine, others = paired.setdefault(labeler, ([], []))
            mine.append(score)
            others.append((total - score) / (len(scores) - 1))
    return {labeler: LabelerCorrelation(len(mine), pearson(mine, others))
            for labeler, (mine, others) in sorted(paired.items())}


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Return Pearson's correlation of two equally long sequences; None with fewer than two
    values or when either does not vary.

    >>> pearson([1, 2, 3], [2, 4, 7])
    0.9933992677987828
    """
    if len(xs) < 2:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    cross = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    spread_x = sum((x - mean_x) ** 2 for x in xs)
    spread_y = sum((y - mean_y) ** 2 for y in ys)
    if spread_x == 0 or spread_y == 0:
        return None
    return cross / sqrt(spread_x * spread_y)
