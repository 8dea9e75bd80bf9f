"""What a valid ranking is. Pure Python: no Django, no database.

A ranking is a list of tiers, best first; each tier is a list of completion ids, and ids
in one tier are tied. It must be a partition of the prompt's completions.
"""

import random
from collections.abc import Collection, Sequence

Tiers = list[list[int]]


class InvalidRanking(ValueError):
    """The tiers do not rank the prompt's completions; the message says why."""


def validate_tiers(tiers: object, completion_ids: Collection[int], *, allow_ties: bool) -> Tiers:
    """Return `tiers` as a list of lists of ints, or raise InvalidRanking saying what is wrong.

    >>> validate_tiers([[3], [1, 2]], {1, 2, 3}, allow_ties=True)
    [[3], [1, 2]]
    >>> validate_tiers([[3], [1]], {1, 2, 3}, allow_ties=False)
    Traceback (most recent call last):
    ...
    annotate.ranking.InvalidRanking: tiers leave out completion 2
    """
    if not isinstance(tiers, Sequence) or isinstance(tiers, str) or not tiers:
        raise InvalidRanking("tiers must be a non-empty list of lists of completion ids")
    seen: set[int] = set()
    clean: Tiers = []
    for index, tier in enumerate(tiers):
        if not isinstance(tier, Sequence) or isinstance(tier, str) or not tier:
            raise InvalidRanking(f"tier {index} must be a non-empty list of completion ids")
        if len(tier) > 1 and not allow_ties:
            raise InvalidRanking(
                f"tier {index} ties {len(tier)} completions; this project forbids ties"
            )
        for completion_id in tier:
            if isinstance(completion_id, bool) or not isinstance(completion_id, int):
                raise InvalidRanking(f"tier {index}: {completion_id!r} is not a completion id")
            if completion_id not in completion_ids:
                raise InvalidRanking(f"completion {completion_id} is not one of this prompt's")
            if completion_id in seen:
                raise InvalidRanking(f"completion {completion_id} appears more than once")
            seen.add(completion_id)
        clean.append(list(tier))
    missing = sorted(set(completion_ids) - seen)
    if missing:
        raise InvalidRanking(f"tiers leave out completion {', '.join(map(str, missing))}")
    return clean


FLAG_NAMES = ("unsafe", "factually_wrong", "off_topic")


def validate_flags(flags: object, completion_ids: Collection[int]) -> dict[str, list[str]]:
    """Return per-completion flags as {"<completion id>": [flag, ...]}, empty lists dropped.

    >>> validate_flags({"12": ["unsafe", "unsafe"], "13": []}, [12, 13])
    {'12': ['unsafe']}
    """
    if flags is None:
        return {}
    if not isinstance(flags, dict):
        raise InvalidRanking("flags must be an object of completion id -> list of flags")
    known = {str(completion_id) for completion_id in completion_ids}
    clean: dict[str, list[str]] = {}
    for key, names in flags.items():
        if str(key) not in known:
            raise InvalidRanking(f"flags name completion {key}, which is not one of this prompt's")
        if not isinstance(names, list) or not all(name in FLAG_NAMES for name in names):
            raise InvalidRanking(f"flags of completion {key} must be a list of {FLAG_NAMES}")
        if names:
            clean[str(key)] = sorted(set(names))
    return clean


def validate_displayed_order(order: object, completion_ids: Collection[int]) -> list[int]:
    """Return the order the completions were shown in, which must name each one once (or none)."""
    if order is None or order == []:
        return []
    if (
        not isinstance(order, list)
        or any(isinstance(item, bool) or not isinstance(item, int) for item in order)
        or sorted(order) != sorted(completion_ids)
    ):
        raise InvalidRanking("displayed_order must list each of the prompt's completions once")
    return list(order)


def display_order(completion_ids: Sequence[int], seed: int) -> list[int]:
    """Return the completions shuffled by `seed`: one labeler sees one prompt in one order.

    >>> display_order([1, 2, 3, 4], seed=7) == display_order([4, 3, 2, 1], seed=7)
    True
    """
    order = sorted(completion_ids)
    random.Random(seed).shuffle(order)
    return order


def ranking_to_pairs(tiers: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Return every (better, worse) pair across tiers, best tier first; a tie gives no pair.

    >>> ranking_to_pairs([[3], [1, 2], [4]])
    [(3, 1), (3, 2), (3, 4), (1, 4), (2, 4)]
    """
    return [
        (better, worse)
        for index, tier in enumerate(tiers)
        for lower in tiers[index + 1 :]
        for better in tier
        for worse in lower
    ]


def ranking_ties(tiers: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Return every pair of completions tied in one tier, smaller id first.

    >>> ranking_ties([[3], [2, 1, 5]])
    [(1, 2), (1, 5), (2, 5)]
    """
    return [
        (a, b)
        for tier in tiers
        for i, a in enumerate(sorted(tier))
        for b in sorted(tier)[i + 1 :]
    ]


def rank_positions(tiers: Sequence[Sequence[int]]) -> dict[int, int]:
    """Map each completion id to its tier index, 0 being best.

    >>> rank_positions([[7], [5, 6]])
    {7: 0, 5: 1, 6: 1}
    """
    return {completion_id: index for index, tier in enumerate(tiers) for completion_id in tier}
