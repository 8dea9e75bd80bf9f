"""Merge several labelers' rankings of a prompt: pairwise consensus and consensus rankings.

Pure Python: no Django, no database. The data contract:

- in: LabeledRanking(prompt_id, labeler, tiers, weight), one per labeler and prompt, tiers
  best first (see annotate.ranking);
- out: PairVerdict(prompt_id, chosen, rejected, votes, agreement, margin) for each unordered
  pair of completions the labelers agree on enough, and per prompt a consensus ranking by
  ranked pairs (Tideman), the method OpenAssistant used to merge its rankers.

A labeler's vote on a pair is their ranking's order of the two; a tie counts half a vote each
way (tie_policy "half") or is left out (tie_policy "abstain"). Votes are weighted (a labeler's
measured reliability, default 1). Results depend only on the set of rankings: they are
processed in (prompt, labeler) order, whatever order they come in.
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from typing import Literal

TiePolicy = Literal["half", "abstain"]
TIE_POLICIES = ("half", "abstain")


@dataclass(frozen=True, slots=True)
class LabeledRanking:
    prompt_id: int
    labeler: str  # a stable pseudonym; one ranking per labeler and prompt
    tiers: Sequence[Sequence[int]]
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class PairVerdict:
    prompt_id: int
    chosen: int
    rejected: int
    votes: int  # labelers who voted on the pair (an abstaining tie is no vote)
    agreement: float  # the chosen side's weighted share of the votes: above 0.5, at most 1
    margin: float  # 2 * agreement - 1: 0 for a split vote, 1 for a unanimous one

    def as_dict(self) -> dict:
        return {"prompt_id": self.prompt_id, "chosen": self.chosen, "rejected": self.rejected,
                "votes": self.votes, "agreement": self.agreement, "margin": self.margin}


@dataclass(slots=True)
class PairTally:
    """Weighted votes on one unordered pair (low id, high id) of one prompt."""

    low_wins: float = 0.0
    high_wins: float = 0.0
    votes: int = 0


def rankings_by_prompt(
    rankings: Iterable[LabeledRanking],
) -> Iterator[tuple[int, list[LabeledRanking]]]:
    """Group rankings by prompt, each group in labeler order; refuse a labeler twice."""
    ordered = sorted(rankings, key=attrgetter("prompt_id", "labeler"))
    for prompt_id, group in groupby(ordered, key=attrgetter("prompt_id")):
        members = list(group)
        labelers = [ranking.labeler for ranking in members]
        if len(set(labelers)) != len(labelers):
            raise ValueError(f"prompt {prompt_id}: a labeler has more than one ranking")
        yield prompt_id, members


def tally_pairs(
    rankings: Sequence[LabeledRanking], tie_policy: TiePolicy = "half"
) -> dict[tuple[int, int], PairTally]:
    """Count the weighted votes on every unordered pair of one prompt's rankings.

    >>> a_then_tie = [LabeledRanking(1, "a", [[7], [8]]), LabeledRanking(1, "b", [[7, 8]])]
    >>> tally_pairs(a_then_tie)[(7, 8)]
    PairTally(low_wins=1.5, high_wins=0.5, votes=2)
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}")
    # Flat k x k arrays indexed by completion position: this loop runs for every pair of
    # every ranking, so it avoids per-pair dictionaries and objects.
    ids = sorted({completion_id for r in rankings for tier in r.tiers for completion_id in tier})
    k = len(ids)
    index = {completion_id: n for n, completion_id in enumerate(ids)}
    low_wins, high_wins, votes = [0.0] * (k * k), [0.0] * (k * k), [0] * (k * k)
    abstain = tie_policy == "abstain"
    for ranking in rankings:
        position: list[int | None] = [None] * k
        for tier_index, tier in enumerate(ranking.tiers):
            for completion_id in tier:
                position[index[completion_id]] = tier_index
        weight = ranking.weight
        for i in range(k):
            pi = position[i]
            if pi is None:
                continue
            for j in range(i + 1, k):
                pj = position[j]
                if pj is None:
                    continue
                cell = i * k + j
                if pi < pj:
                    low_wins[cell] += weight
                elif pj < pi:
                    high_wins[cell] += weight
                elif abstain:
                    continue
                else:
                    low_wins[cell] += weight / 2
                    high_wins[cell] += weight / 2
                votes[cell] += 1
    return {
        (ids[i], ids[j]): PairTally(low_wins[i * k + j], high_wins[i * k + j], votes[i * k + j])
        for i in range(k)
        for j in range(i + 1, k)
        if votes[i * k + j]
    }


def merge_votes(
    rankings: Iterable[LabeledRanking],
    *,
    min_votes: int = 1,
    min_agreement: float = 0.5,
    tie_policy: TiePolicy = "half",
) -> list[PairVerdict]:
    """Return the pairs whose votes agree enough, sorted by prompt, chosen, rejected.

    A pair is kept when at least `min_votes` labelers voted on it and the winner's weighted
    share is at least `min_agreement` (and above one half: a split vote has no winner).

    >>> two_to_one = [LabeledRanking(1, "a", [[7], [8]]), LabeledRanking(1, "b", [[7], [8]]),
    ...               LabeledRanking(1, "c", [[8], [7]])]
    >>> [(v.chosen, v.rejected, v.votes, round(v.agreement, 2), round(v.margin, 2))
    ...  for v in merge_votes(two_to_one, min_votes=3, min_agreement=0.66)]
    [(7, 8, 3, 0.67, 0.33)]
    >>> merge_votes(two_to_one, min_votes=3, min_agreement=0.75)
    []
    """
    verdicts: list[PairVerdict] = []
    for prompt_id, group in rankings_by_prompt(rankings):
        tallies = tally_pairs(group, tie_policy)
        verdicts.extend(_kept_verdicts(prompt_id, tallies, min_votes, min_agreement))
    verdicts.sort(key=attrgetter("prompt_id", "chosen", "rejected"))
    return verdicts


def _kept_verdicts(prompt_id: int, tallies: dict[tuple[int, int], PairTally], min_votes: int,
                   min_agreement: float) -> list[PairVerdict]:
    """The verdicts _verdict gives that pass both thresholds, in (low, high) order; a
    verdict is built only for a pair kept (an export asks this of every pair)."""
    kept = []
    for (low, high), tally in sorted(tallies.items()):
        low_wins, high_wins = tally.low_wins, tally.high_wins
        total = low_wins + high_wins
        if tally.votes < min_votes or total <= 0 or low_wins == high_wins:
            continue
        chosen, rejected, share = ((low, high, low_wins / total) if low_wins > high_wins
                                   else (high, low, high_wins / total))
        if share >= min_agreement:
            kept.append(PairVerdict(prompt_id, chosen, rejected, tally.votes, share,
                                    2 * share - 1))
    return kept


def _verdict(prompt_id: int, low: int, high: int, tally: PairTally) -> PairVerdict | None:
    total = tally.low_wins + tally.high_wins
    if total <= 0 or tally.low_wins == tally.high_wins:
        return None
    chosen, rejected, share = (
        (low, high, tally.low_wins / total)
        if tally.low_wins > tally.high_wins
        else (high, low, tally.high_wins / total)
    )
    return PairVerdict(prompt_id, chosen, rejected, tally.votes, share, 2 * share - 1)


def ranked_pairs(
    completion_ids: Iterable[int], tallies: dict[tuple[int, int], PairTally]
) -> list[list[int]]:
    """Return the consensus ranking of one prompt by ranked pairs (Tideman), as tiers.

    Majorities are locked in from the strongest (most weight for the winner, then least
    against) down, skipping any that would close a cycle. The ranking takes the completions
    no locked majority beats, then the next, and so on; completions freed at the same step
    (no majority between them) share a tier.

    >>> votes = [LabeledRanking(1, name, tiers) for name, tiers in
    ...          [("a", [[1], [2], [3]]), ("b", [[2], [3], [1]]), ("c", [[3], [1], [2]]),
    ...           ("d", [[1], [2], [3]])]]
    >>> ranked_pairs([1, 2, 3], tally_pairs(votes))
    [[1], [2], [3]]
    """
    majorities = []
    for (low, high), tally in tallies.items():
        low_wins, high_wins = tally.low_wins, tally.high_wins
        if low_wins > high_wins:
            majorities.append((-low_wins, high_wins, low, high))
        elif high_wins > low_wins:
            majorities.append((-high_wins, low_wins, high, low))
    majorities.sort()
    beats: dict[int, set[int]] = {completion_id: set() for completion_id in completion_ids}
    # What each completion reaches through locked majorities, itself included: kept as they
    # are locked, so checking for a cycle is a set lookup, not a search (exports ask it of
    # every pair of every prompt).
    reach = {completion_id: {completion_id} for completion_id in beats}
    for _, _, winner, loser in majorities:
        if winner in reach[loser]:
            continue  # locking it would close a cycle
        beats[winner].add(loser)
        gained = reach[loser]
        for reached in reach.values():
            if winner in reached:
                reached |= gained
    beaten = {completion_id: 0 for completion_id in beats}
    for losers in beats.values():
        for loser in losers:
            beaten[loser] += 1
    tiers: list[list[int]] = []
    while beaten:
        tier = sorted(completion_id for completion_id, count in beaten.items() if count == 0)
        tiers.append(tier)
        for completion_id in tier:
            del beaten[completion_id]
            for loser in beats[completion_id]:
                beaten[loser] -= 1
    return tiers


@dataclass(frozen=True, slots=True)
class ConsensusRanking:
    prompt_id: int
    tiers: list[list[int]]
    rankings: int  # how many labelers' rankings it merges


def consensus_rankings(
    rankings: Iterable[LabeledRanking], tie_policy: TiePolicy = "half"
) -> list[ConsensusRanking]:
    """Return one ranked-pairs consensus ranking per prompt, in prompt order."""
    result = []
    for prompt_id, group in rankings_by_prompt(rankings):
        completion_ids = {i for ranking in group for tier in ranking.tiers for i in tier}
        tiers = ranked_pairs(sorted(completion_ids), tally_pairs(group, tie_policy))
        result.append(ConsensusRanking(prompt_id, tiers, len(group)))
    return result


def merge_prompt(
    rankings: Sequence[LabeledRanking],
    *,
    min_votes: int = 1,
    min_agreement: float = 0.5,
    tie_policy: TiePolicy = "half",
) -> tuple[list[PairVerdict], ConsensusRanking | None]:
    """One prompt's rankings merged both ways, from one tally: what merge_votes and
    consensus_rankings return for it (the consensus None when there are no rankings).

    An export merges every prompt both ways: tallying once halves that work.

    >>> votes = [LabeledRanking(1, "a", [[7], [8]]), LabeledRanking(1, "b", [[7], [8]])]
    >>> verdicts, consensus = merge_prompt(votes, min_votes=2)
    >>> [(v.chosen, v.rejected, v.agreement) for v in verdicts], consensus.tiers
    ([(7, 8, 1.0)], [[7], [8]])
    """
    groups = list(rankings_by_prompt(rankings))
    if not groups:
        return [], None
    if len(groups) > 1:
        raise ValueError("merge_prompt takes the rankings of one prompt")
    prompt_id, group = groups[0]
    tallies = tally_pairs(group, tie_policy)
    verdicts = _kept_verdicts(prompt_id, tallies, min_votes, min_agreement)
    verdicts.sort(key=attrgetter("prompt_id", "chosen", "rejected"))
    completion_ids = {i for ranking in group for tier in ranking.tiers for i in tier}
    tiers = ranked_pairs(sorted(completion_ids), tallies)
    return verdicts, ConsensusRanking(prompt_id, tiers, len(group))
