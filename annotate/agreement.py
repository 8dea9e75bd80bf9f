"""How much labelers agree. Pure Python: no Django, no database."""

from collections.abc import Sequence
from itertools import combinations

from .ranking import rank_positions

Tiers = Sequence[Sequence[int]]


def pairwise_agreement(tiers_a: Tiers, tiers_b: Tiers) -> float:
    """Return the share of completion pairs that two rankings order the same way (ties included).

    >>> pairwise_agreement([[1], [2], [3]], [[1], [3], [2]])
    0.6666666666666666
    """
    rank_a, rank_b = rank_positions(tiers_a), rank_positions(tiers_b)
    pairs = list(combinations(sorted(rank_a), 2))
    if not pairs:
        return 1.0

    def order(rank: dict[int, int], x: int, y: int) -> int:
        return (rank[x] > rank[y]) - (rank[x] < rank[y])

    same = sum(order(rank_a, x, y) == order(rank_b, x, y) for x, y in pairs)
    return same / len(pairs)


def mean_pairwise_agreement(rankings: Sequence[Tiers]) -> float:
    """Return the mean agreement over every pair of rankings; 1.0 with fewer than two.

    >>> mean_pairwise_agreement([[[1], [2]], [[1], [2]], [[2], [1]]])
    0.3333333333333333
    """
    pairs = list(combinations(rankings, 2))
    if not pairs:
        return 1.0
    return sum(pairwise_agreement(a, b) for a, b in pairs) / len(pairs)
