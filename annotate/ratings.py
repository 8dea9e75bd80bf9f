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


# A project's scale: whole numbers within these bounds, at most MAX_SCALE_POINTS of them, so
# that every score has its own digit key on the rating page (0 stands for 10 on 1..10).
SCALE_BOUNDS = (0, 10)
MAX_SCALE_POINTS = 10
MAX_ASPECTS = 6
MAX_ASPECT_CHARS = 40


def aspects_from_text(text: str) -> list[str]:
    """Aspect names typed as a comma-separated list, each stripped; blank: none.

    >>> aspects_from_text(" helpfulness, honesty ")
    ['helpfulness', 'honesty']
    >>> aspects_from_text("  ")
    []
    """
    return [name.strip() for name in text.split(",")] if text.strip() else []


def rating_settings_errors(scale_min: object, scale_max: object,
                           aspects: object) -> dict[str, str]:
    """What is wrong with a rate project's scale and aspects, by setting; empty when nothing.

    >>> rating_settings_errors(1, 5, ["helpfulness", "honesty"])
    {}
    >>> rating_settings_errors(5, 5, ["a", "A"])["rating_scale_max"]
    'must be above the lowest score (5)'
    >>> rating_settings_errors(0, 10, [])["rating_scale_max"]
    'a scale has at most 10 points (one digit key each), e.g. 0 to 9 or 1 to 10; 0 to 10 has 11'
    """
    errors = {}
    low, high = SCALE_BOUNDS
    for name, value in (("rating_scale_min", scale_min), ("rating_scale_max", scale_max)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[name] = f"must be a whole number from {low} to {high}"
    if not errors and scale_max <= scale_min:
        errors["rating_scale_max"] = f"must be above the lowest score ({scale_min})"
    elif not errors and scale_max - scale_min + 1 > MAX_SCALE_POINTS:
        errors["rating_scale_max"] = (
            f"a scale has at most {MAX_SCALE_POINTS} points (one digit key each), e.g. 0 to 9 "
            f"or 1 to 10; {scale_min} to {scale_max} has {scale_max - scale_min + 1}")
    problem = _aspects_problem(aspects)
    if problem:
        errors["rating_aspects"] = problem
    return errors


def _aspects_problem(aspects: object) -> str | None:
    if not isinstance(aspects, list) or not all(isinstance(name, str) for name in aspects):
        return "must be a list of names"
    if len(aspects) > MAX_ASPECTS:
        return f"at most {MAX_ASPECTS} aspects; this names {len(aspects)}"
    seen = set()
    for index, name in enumerate(aspects, start=1):
        if not name.strip():
            return f"aspect {index} has no name"
        if name != name.strip():
            return f"aspect {index} ({name!r}) has spaces around it"
        if len(name) > MAX_ASPECT_CHARS:
            return f"aspect {index} is longer than {MAX_ASPECT_CHARS} characters"
        if name.casefold() in seen:
            return f"aspect {name!r} is named twice"
        seen.add(name.casefold())
    return None
