"""How much labelers agree. Pure Python: no Django, no database.

A ranking is a list of tiers of completion ids, best first (see annotate.ranking). The
definitions the metrics below share:

- rank position: a completion's tier index, 0 being best (annotate.ranking.rank_positions);
  tied completions share one position, and a tie does not push the tiers below it down:
  [[3], [1, 2], [4]] gives 3 -> 0, 1 -> 1, 2 -> 1, 4 -> 2;
- two rankings are compared over the completions both rank; the others are left out;
- labeler weights (LabeledRanking.weight) only shape the consensus in leave-one-out
  agreement, where consensus.tally_pairs uses them; every other metric counts each ranking once;
- a metric that is undefined (no pair to compare, no spread to measure) is None, never NaN.
"""

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from math import sqrt
from typing import Literal

from .consensus import (
    TIE_POLICIES,
    LabeledRanking,
    TiePolicy,
    ranked_pairs,
    rankings_by_prompt,
    tally_pairs,
)
from .ranking import rank_positions

Tiers = Sequence[Sequence[int]]
GoldMode = Literal["ranking", "best"]
GOLD_MODES = ("ranking", "best")


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


# --- Kendall's tau-b ------------------------------------------------------------------------


def kendall_tau_b(tiers_a: Tiers, tiers_b: Tiers) -> float | None:
    """Return Kendall's tau-b of two rankings over the completions both rank, or None.

    tau-b = (C - D) / sqrt((C + D + T_b) * (C + D + T_a)), over the pairs of shared ids: C
    ordered alike, D ordered oppositely, T_a tied in `tiers_a` only, T_b tied in `tiers_b`
    only; a pair tied in both counts nowhere. None when fewer than two ids are shared or
    either ranking ties all the shared ids.

    >>> kendall_tau_b([[1], [2], [3]], [[1], [3], [2]])
    0.3333333333333333
    >>> kendall_tau_b([[1], [2, 3]], [[1, 2], [3]])
    0.5
    >>> kendall_tau_b([[1, 2]], [[1], [2]]) is None
    True
    """
    return _tau_b(_pair_counts(tiers_a, tiers_b))


# concordant, discordant, tied in a only, tied in b only, tied in both
PairCounts = tuple[int, int, int, int, int]


def _pair_counts(tiers_a: Tiers, tiers_b: Tiers) -> PairCounts:
    """Count the pairs of shared ids by how the two rankings order them."""
    rank_a, rank_b = rank_positions(tiers_a), rank_positions(tiers_b)
    positions = [(rank, rank_b[i]) for i, rank in rank_a.items() if i in rank_b]
    concordant = discordant = tied_a_only = tied_b_only = tied_both = 0
    for (a1, b1), (a2, b2) in combinations(positions, 2):
        sign = (a1 - a2) * (b1 - b2)
        if sign > 0:
            concordant += 1
        elif sign < 0:
            discordant += 1
        elif a1 != a2:
            tied_b_only += 1
        elif b1 != b2:
            tied_a_only += 1
        else:
            tied_both += 1
    return concordant, discordant, tied_a_only, tied_b_only, tied_both


def _tau_b(counts: PairCounts) -> float | None:
    concordant, discordant, tied_a_only, tied_b_only, _ = counts
    untied_a = concordant + discordant + tied_b_only
    untied_b = concordant + discordant + tied_a_only
    if untied_a == 0 or untied_b == 0:
        return None
    return (concordant - discordant) / sqrt(untied_a * untied_b)


def _agreement(counts: PairCounts) -> float:
    """Return pairwise_agreement from the counts of two rankings of the same completions."""
    pairs = sum(counts)
    return (counts[0] + counts[4]) / pairs if pairs else 1.0


class _Mean:
    """A running count and mean of values, None values counted but not averaged."""

    __slots__ = ("count", "defined", "total")

    def __init__(self) -> None:
        self.count, self.defined, self.total = 0, 0, 0.0

    def add(self, value: float | None) -> None:
        self.count += 1
        if value is not None:
            self.defined += 1
            self.total += value

    @property
    def mean(self) -> float | None:
        return self.total / self.defined if self.defined else None


@dataclass(frozen=True, slots=True)
class TauSummary:
    mean_tau: float | None  # over the shared prompts where tau-b is defined; None if none is
    shared_prompts: int  # prompts both labelers ranked
    tau_prompts: int  # of those, the prompts where tau-b is defined


def labeler_pair_taus(rankings: Iterable[LabeledRanking]) -> dict[tuple[str, str], TauSummary]:
    """Return the mean tau-b of every pair of labelers over the prompts both ranked.

    Keys are (smaller name, larger name), in sorted order; pairs with no prompt in common
    are absent.

    >>> taus = labeler_pair_taus([
    ...     LabeledRanking(1, "b", [[1], [2], [3]]), LabeledRanking(1, "a", [[1], [3], [2]]),
    ...     LabeledRanking(2, "a", [[4], [5]]), LabeledRanking(2, "b", [[4], [5]])])
    >>> taus[("a", "b")]
    TauSummary(mean_tau=0.6666666666666666, shared_prompts=2, tau_prompts=2)
    """
    means: dict[tuple[str, str], _Mean] = {}
    for _, group in rankings_by_prompt(rankings):
        for first, second in combinations(group, 2):
            pair = (first.labeler, second.labeler)
            means.setdefault(pair, _Mean()).add(kendall_tau_b(first.tiers, second.tiers))
    return {
        pair: TauSummary(means[pair].mean, means[pair].count, means[pair].defined)
        for pair in sorted(means)
    }


# --- Krippendorff's alpha, ordinal -----------------------------------------------------------


def krippendorff_alpha_ordinal(rankings: Iterable[LabeledRanking]) -> float | None:
    """Return Krippendorff's alpha (ordinal metric) of the labelers' rank positions, or None.

    Each (prompt, completion) is a unit, each labeler a coder, and the value a labeler gives a
    completion is its rank position: the tier index, 0 best, tied completions sharing their
    tier's index (so [[1], [2, 3, 4]] gives 0, 1, 1, 1, not the mid-ranks 1, 3, 3, 3).
    Positions are pooled across prompts as they are: they are comparable when every prompt has
    the same K; with mixed K, "second" means the same value whatever K is. Units with fewer
    than two values are not pairable and left out. None when no unit is pairable or the
    pairable values are all equal (no disagreement is possible). See `ordinal_alpha`.

    >>> krippendorff_alpha_ordinal([
    ...     LabeledRanking(1, "a", [[1], [2]]), LabeledRanking(1, "b", [[1], [2]]),
    ...     LabeledRanking(2, "a", [[3], [4]]), LabeledRanking(2, "b", [[4], [3]])])
    0.125
    """
    return ordinal_alpha(_rank_units(rankings))


def _rank_units(rankings: Iterable[LabeledRanking]) -> Iterator[list[int]]:
    """Yield, per (prompt, completion), the rank positions its labelers gave it."""
    for _, group in rankings_by_prompt(rankings):
        unit_values: dict[int, list[int]] = {}
        for ranking in group:
            for completion_id, position in rank_positions(ranking.tiers).items():
                unit_values.setdefault(completion_id, []).append(position)
        yield from unit_values.values()


def ordinal_alpha(units: Iterable[Sequence[float]]) -> float | None:
    """Return Krippendorff's alpha with the ordinal metric of values grouped by unit, or None.

    Each item of `units` holds the values the coders gave one unit (missing values left out).
    The coincidence-matrix form (Krippendorff 2011, "Computing Krippendorff's
    Alpha-Reliability"): over pairable units (two values or more), o_ck sums, for each unit
    u with m_u values, the ordered pairs of values (c, k) from different coders divided by
    m_u - 1; n_c is the number of pairable values c and n their total; the ordinal distance
    is delta^2_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2, and
    alpha = 1 - (n - 1) * sum o_ck delta^2_ck / sum n_c n_k delta^2_ck.

    >>> ordinal_alpha([[0, 0], [1, 1], [0, 1], [2]])
    0.4444444444444444
    """
    value_counts: Counter[float] = Counter()
    coincidences: Counter[tuple[float, float]] = Counter()  # o_ck for c < k
    for values in units:
        if len(values) < 2:
            continue
        value_counts.update(values)
        share = 1 / (len(values) - 1)
        for c, k in combinations(values, 2):
            if c != k:
                coincidences[(c, k) if c < k else (k, c)] += share
    distances = _ordinal_distances(value_counts)
    expected = sum(value_counts[c] * value_counts[k] * d for (c, k), d in distances.items())
    if expected == 0:
        return None
    observed = sum(count * distances[pair] for pair, count in coincidences.items())
    pairable_values = sum(value_counts.values())
    return 1 - (pairable_values - 1) * observed / expected


def _ordinal_distances(value_counts: Counter[float]) -> dict[tuple[float, float], float]:
    """Map each pair of values c < k to the ordinal delta^2_ck of these marginal counts."""
    values = sorted(value_counts)
    cumulative = [0]
    for value in values:
        cumulative.append(cumulative[-1] + value_counts[value])
    return {
        (c, k): (cumulative[j + 1] - cumulative[i] - (value_counts[c] + value_counts[k]) / 2) ** 2
        for (i, c), (j, k) in combinations(enumerate(values), 2)
    }


# --- agreement with the leave-one-out consensus -----------------------------------------------


@dataclass(frozen=True, slots=True)
class LooSummary:
    prompts: int  # prompts the labeler ranked that another labeler also ranked
    mean_agreement: float  # mean pairwise_agreement with the others' consensus
    mean_tau: float | None  # mean tau-b with it, where defined; None if never
    tau_prompts: int  # prompts where tau-b is defined


def leave_one_out_agreement(
    rankings: Iterable[LabeledRanking], tie_policy: TiePolicy = "half"
) -> dict[str, LooSummary]:
    """Return, per labeler, their agreement with the consensus of the other labelers.

    On every prompt a labeler shares with at least one other labeler, the others' rankings are
    merged by ranked pairs (consensus.tally_pairs with their weights and `tie_policy`, then
    consensus.ranked_pairs) and the labeler's ranking is scored against that consensus with
    pairwise_agreement and kendall_tau_b, over the completions the others ranked. Labelers
    who share no prompt are absent. Keys in sorted order.

    >>> votes = [LabeledRanking(1, name, tiers) for name, tiers in
    ...          [("a", [[1], [2]]), ("b", [[1], [2]]), ("c", [[1], [2]]), ("d", [[2], [1]])]]
    >>> loo = leave_one_out_agreement(votes)
    >>> loo["a"]
    LooSummary(prompts=1, mean_agreement=1.0, mean_tau=1.0, tau_prompts=1)
    >>> loo["d"].mean_agreement, loo["d"].mean_tau
    (0.0, -1.0)
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}")
    agreements: dict[str, _Mean] = {}
    taus: dict[str, _Mean] = {}
    consensus_cache: dict[tuple, list[list[int]]] = {}
    for _, group in rankings_by_prompt(rankings):
        if len(group) < 2:
            continue
        for index, ranking in enumerate(group):
            others = group[:index] + group[index + 1 :]
            consensus = _consensus_tiers(others, tie_policy, consensus_cache)
            own = _restricted(ranking.tiers, {i for tier in consensus for i in tier})
            counts = _pair_counts(own, consensus)  # pairwise_agreement and tau-b in one pass
            agreements.setdefault(ranking.labeler, _Mean()).add(_agreement(counts))
            taus.setdefault(ranking.labeler, _Mean()).add(_tau_b(counts))
    return {
        labeler: LooSummary(
            prompts=agreements[labeler].count,
            mean_agreement=agreements[labeler].total / agreements[labeler].count,
            mean_tau=taus[labeler].mean,
            tau_prompts=taus[labeler].defined,
        )
        for labeler in sorted(agreements)
    }


def _consensus_tiers(
    rankings: Sequence[LabeledRanking], tie_policy: TiePolicy, cache: dict[tuple, list[list[int]]]
) -> list[list[int]]:
    """Return the ranked-pairs consensus of one prompt's rankings, memoized on their shape.

    tally_pairs and ranked_pairs compare completion ids only by their order, so relabelling the
    ids 0..n-1 in sorted order, merging, and relabelling back gives the same tiers; rankings of
    the same shape (common with small K) are merged once.
    """
    positions = [rank_positions(ranking.tiers) for ranking in rankings]
    ids = sorted({i for position in positions for i in position})
    shape = tuple(
        (tuple(position.get(i) for i in ids), ranking.weight)
        for position, ranking in zip(positions, rankings, strict=True)
    )
    merged = cache.get(shape)
    if merged is None:
        relabelled = [LabeledRanking(0, str(j), _tiers_of(places), weight)
                      for j, (places, weight) in enumerate(shape)]
        merged = cache[shape] = ranked_pairs(range(len(ids)), tally_pairs(relabelled, tie_policy))
    return [[ids[j] for j in tier] for tier in merged]


def _tiers_of(places: Sequence[int | None]) -> list[list[int]]:
    """Return the tiers of 0..n-1 given each one's tier index (None: not ranked)."""
    tiers: dict[int, list[int]] = {}
    for j, place in enumerate(places):
        if place is not None:
            tiers.setdefault(place, []).append(j)
    return [tiers[place] for place in sorted(tiers)]


def _restricted(tiers: Tiers, keep: set[int]) -> Tiers:
    """Return `tiers` without the ids outside `keep`, empty tiers dropped."""
    if all(i in keep for tier in tiers for i in tier):
        return tiers
    kept = ([i for i in tier if i in keep] for tier in tiers)
    return [tier for tier in kept if tier]


# --- position bias ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionRecord:
    labeler: str
    displayed_order: Sequence[int]  # completion ids in the order shown; empty if not recorded
    tiers: Sequence[Sequence[int]]


@dataclass(frozen=True, slots=True)
class PositionBias:
    records: int  # rankings with a displayed order
    first_shown_top_share: float | None  # share whose first shown completion is in the top tier
    expected_share: float | None  # the same share with no bias: mean of len(top tier) / K
    top_share_by_position: list[float] = field(default_factory=list)  # [p]: shown at p, top


def position_bias(records: Iterable[PositionRecord]) -> PositionBias:
    """Return how often the completion shown first (or at each place) was ranked in the top tier.

    Records with an empty displayed order are left out. K is the length of the displayed
    order; with mixed K, the share at place p is over the records that showed a p-th
    completion. The shares are None when no record has a displayed order.

    >>> bias = position_bias([PositionRecord("a", [2, 1], [[2], [1]]),
    ...                       PositionRecord("a", [1, 2], [[2], [1]]),
    ...                       PositionRecord("a", [1, 2, 3], [[1, 2], [3]])])
    >>> bias.records, round(bias.first_shown_top_share, 3), round(bias.expected_share, 3)
    (3, 0.667, 0.556)
    >>> [round(share, 3) for share in bias.top_share_by_position]
    [0.667, 0.667, 0.0]
    """
    shown: list[int] = []
    top: list[int] = []
    expected_total = 0.0
    for record in records:
        if not record.displayed_order:
            continue
        top_tier = set(record.tiers[0])
        expected_total += len(top_tier) / len(record.displayed_order)
        for place, completion_id in enumerate(record.displayed_order):
            if place == len(shown):
                shown.append(0)
                top.append(0)
            shown[place] += 1
            top[place] += completion_id in top_tier
    if not shown:
        return PositionBias(0, None, None, [])
    by_position = [hits / count for hits, count in zip(top, shown, strict=True)]
    return PositionBias(shown[0], by_position[0], expected_total / shown[0], by_position)


def position_bias_by_labeler(records: Iterable[PositionRecord]) -> dict[str, PositionBias]:
    """Return position_bias per labeler, keys in sorted order (labelers with no order left out).

    >>> by_labeler = position_bias_by_labeler([PositionRecord("a", [2, 1], [[2], [1]]),
    ...                                        PositionRecord("b", [2, 1], [[1], [2]]),
    ...                                        PositionRecord("c", [], [[1], [2]])])
    >>> {name: bias.first_shown_top_share for name, bias in by_labeler.items()}
    {'a': 1.0, 'b': 0.0}
    """
    grouped: dict[str, list[PositionRecord]] = {}
    for record in records:
        if record.displayed_order:
            grouped.setdefault(record.labeler, []).append(record)
    return {labeler: position_bias(grouped[labeler]) for labeler in sorted(grouped)}


# --- gold prompts and charts ------------------------------------------------------------------


def gold_accuracy(
    labeler_tiers: Tiers, reference_tiers: Tiers, mode: GoldMode = "ranking"
) -> float:
    """Return how well a labeler's ranking of a gold prompt matches the reference ranking.

    mode "ranking": pairwise_agreement(labeler_tiers, reference_tiers), ties included.
    mode "best": 1.0 if the labeler's top tier is a non-empty subset of the reference's top
    tier (they share a completion, and the labeler put nothing else first), else 0.0; so
    picking one of several tied reference winners scores 1.0, and tying a winner with a
    loser scores 0.0.

    >>> gold_accuracy([[1], [2, 3]], [[1], [2], [3]])
    0.6666666666666666
    >>> gold_accuracy([[2], [1, 3]], [[1, 2], [3]], mode="best")
    1.0
    >>> gold_accuracy([[1, 3], [2]], [[1, 2], [3]], mode="best")
    0.0
    """
    if mode == "ranking":
        return pairwise_agreement(labeler_tiers, reference_tiers)
    if mode == "best":
        labeler_top, reference_top = set(labeler_tiers[0]), set(reference_tiers[0])
        return float(bool(labeler_top) and labeler_top <= reference_top)
    raise ValueError(f"mode must be one of {GOLD_MODES}")


def agreement_histogram(
    values: Iterable[float], bins: int = 10, low: float = 0.0, high: float = 1.0
) -> list[int]:
    """Count the values in `bins` equal-width bins over [low, high].

    Each bin holds its lower edge; the last also holds `high`. Values outside [low, high]
    (and NaN) are left out.

    >>> agreement_histogram([0.0, 0.3, 0.55, 1.0, 1.5], bins=4)
    [1, 1, 1, 1]
    >>> agreement_histogram([-1.0, 0.0, 0.2], bins=2, low=-1.0)
    [1, 2]
    """
    if bins < 1 or not high > low:
        raise ValueError("need bins >= 1 and high > low")
    counts = [0] * bins
    for value in values:
        if low <= value <= high:
            counts[min(int((value - low) * bins / (high - low)), bins - 1)] += 1
    return counts


PAIR_SHARE_BINS = ("split", "0.5-0.6", "0.6-0.7", "0.7-0.8", "0.8-0.9", "0.9-1")


def pair_share_histogram(
    rankings: Iterable[LabeledRanking], *, min_votes: int = 2, tie_policy: TiePolicy = "half"
) -> list[int]:
    """Count every pair with at least `min_votes` votes by its larger side's share of them.

    Bins as PAIR_SHARE_BINS: a split vote (shares equal, no winner) first, then the
    winner's share in tenths from 0.5 to 1. Every pair voted on enough counts, whether or not
    it has a majority: consensus.merge_votes keeps only pairs with a winner, and counting
    those alone hid every 1-1 split between two labelers.

    >>> split = [LabeledRanking(1, "a", [[7], [8], [9]]), LabeledRanking(1, "b", [[8], [7], [9]])]
    >>> pair_share_histogram(split)  # (7, 8) split 1-1; (7, 9) and (8, 9) unanimous
    [1, 0, 0, 0, 0, 2]
    """
    counts = [0] * len(PAIR_SHARE_BINS)
    for _prompt_id, group in rankings_by_prompt(rankings):
        for tally in tally_pairs(group, tie_policy).values():
            total = tally.low_wins + tally.high_wins
            if tally.votes < min_votes or total <= 0:
                continue
            if tally.low_wins == tally.high_wins:
                counts[0] += 1
            else:
                share = max(tally.low_wins, tally.high_wins) / total
                counts[1 + min(int((share - 0.5) * 10), 4)] += 1
    return counts
