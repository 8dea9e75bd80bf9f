"""What a valid rating is, and the ranking it implies. Pure Python: no Django, no database.

In rate mode a labeler scores every completion of a prompt on the project's scale (whole
numbers from `scale_min` to `scale_max`), once per aspect. Scores are stored as
{"<completion id>": {"<aspect>": score}}; a project without aspects scores one aspect,
OVERALL. A completion's score is the mean over its aspects; the tiers a rating implies order
completions by that score, equal scores tied.
"""

from collections.abc import Collection, Sequence

from .ranking import InvalidRanking, Tiers

OVERALL = "overall"

Scores = dict[str, dict[str, int]]


class InvalidRating(InvalidRanking):
    """The scores do not rate the prompt's completions; the message says why."""


def aspects_of(aspects: Sequence[str]) -> list[str]:
    """The aspects a project scores: its own, or OVERALL when it names none.

    >>> aspects_of([])
    ['overall']
    """
    return list(aspects) or [OVERALL]


def validate_scores(
    scores: object, completion_ids: Collection[int], *, scale_min: int, scale_max: int,
    aspects: Sequence[str] = (),
) -> Scores:
    """Return `scores` in stored form, or raise InvalidRating saying what is wrong.

    A completion's scores may be given as one number when the project has no aspects.

    >>> validate_scores({"7": 5, "8": {"overall": 2}}, [7, 8], scale_min=1, scale_max=5)
    {'7': {'overall': 5}, '8': {'overall': 2}}
    >>> validate_scores({"7": 6, "8": 1}, [7, 8], scale_min=1, scale_max=3)
    Traceback (most recent call last):
    ...
    annotate.ratings.InvalidRating: scores: completion 7: overall is 6, not a whole ...
    """
    names = aspects_of(aspects)
    if not isinstance(scores, dict) or not scores:
        raise InvalidRating("scores must be an object of completion id -> scores")
    wanted = {str(completion_id) for completion_id in completion_ids}
    clean: Scores = {}
    for key, given in scores.items():
        if str(key) not in wanted:
            raise InvalidRating(f"scores: {key!r} is not one of this prompt's completions")
        if not isinstance(given, dict):
            if len(names) > 1:
                raise InvalidRating(
                    f"scores: completion {key} needs one score per aspect: {', '.join(names)}")
            given = {names[0]: given}
        clean[str(key)] = _aspect_scores(str(key), given, names, scale_min, scale_max)
    missing = sorted(wanted - set(clean), key=int)
    if missing:
        raise InvalidRating(f"scores leave out completion {', '.join(missing)}")
    return clean


def _aspect_scores(key: str, given: dict, names: list[str], low: int, high: int) -> dict:
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidRating(f"scores: completion {key}: unknown aspect {unknown[0]!r}; "
                            f"this project scores {', '.join(names)}")
    clean = {}
    for name in names:
        if name not in given:
            raise InvalidRating(f"scores: completion {key}: {name} is missing")
        value = given[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidRating(f"scores: completion {key}: {name} is {value!r}, not a whole "
                                f"number from {low} to {high}")
        clean[name] = value
    return clean


def mean_score(aspect_scores: dict[str, int]) -> float:
    """A completion's score in one rating: the mean over its aspects.

    >>> mean_score({"helpfulness": 4, "honesty": 5})
    4.5
    """
    return sum(aspect_scores.values()) / len(aspect_scores)


def tiers_from_scores(scores: Scores) -> Tiers:
    """The ranking a rating implies: best score first, equal scores in one tier.

    >>> tiers_from_scores({"7": {"overall": 2}, "8": {"overall": 5}, "9": {"overall": 2}})
    [[8], [7, 9]]
    """
    by_score: dict[float, list[int]] = {}
    for key, aspect_scores in scores.items():
        by_score.setdefault(mean_score(aspect_scores), []).append(int(key))
    return [sorted(by_score[score]) for score in sorted(by_score, reverse=True)]


def normalised(score: float, *, scale_min: int, scale_max: int) -> float:
    """A score mapped onto [-1, 1]: the scale's lowest is -1, its highest 1.

    >>> normalised(4, scale_min=1, scale_max=5)
    0.5
    """
    return 2 * (score - scale_min) / (scale_max - scale_min) - 1
