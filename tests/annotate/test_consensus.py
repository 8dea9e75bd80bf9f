"""Rankings to pairs, merged votes and consensus rankings: examples and properties."""

import random
from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotate.consensus import (
    LabeledRanking,
    consensus_rankings,
    merge_votes,
    ranked_pairs,
    tally_pairs,
)
from annotate.ranking import rank_positions, ranking_ties, ranking_to_pairs


@st.composite
def tiers_of(draw, ids=None, allow_ties=True):
    """A random ranking (list of tiers) of `ids`, or of 2..9 fresh ids."""
    if ids is None:
        ids = list(range(1, draw(st.integers(2, 9)) + 1))
    order = draw(st.permutations(ids))
    tiers, current = [], [order[0]]
    for completion_id in order[1:]:
        if allow_ties and draw(st.booleans()):
            current.append(completion_id)
        else:
            tiers.append(current)
            current = [completion_id]
    tiers.append(current)
    return tiers


@st.composite
def prompt_votes(draw, max_prompts=3, max_labelers=5):
    """Rankings of a few prompts by a few labelers, with weights."""
    rankings = []
    for prompt_id in range(draw(st.integers(1, max_prompts))):
        k = draw(st.integers(2, 6))
        ids = [prompt_id * 100 + i for i in range(k)]
        labelers = draw(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=max_labelers,
                                 unique=True))
        for labeler in labelers:
            weight = draw(st.sampled_from([1.0, 0.5, 2.0, 0.25]))
            rankings.append(LabeledRanking(prompt_id, labeler, draw(tiers_of(ids)), weight))
    return rankings


# --- ranking to pairs ---------------------------------------------------------------------

def test_a_strict_ranking_of_four_gives_six_pairs_best_first():
    assert ranking_to_pairs([[4], [2], [1], [3]]) == [
        (4, 2), (4, 1), (4, 3), (2, 1), (2, 3), (1, 3)]


def test_tied_completions_give_no_pair_but_a_tie_record():
    assert ranking_to_pairs([[1, 2]]) == []
    assert ranking_ties([[1, 2], [3]]) == [(1, 2)]


@given(tiers_of(allow_ties=False))
def test_a_strict_ranking_gives_k_choose_2_pairs(tiers):
    assert len(ranking_to_pairs(tiers)) == comb(len(tiers), 2)


@given(tiers_of())
def test_pairs_agree_with_the_ranking_and_cover_every_untied_pair(tiers):
    position = rank_positions(tiers)
    pairs = ranking_to_pairs(tiers)
    assert all(position[better] < position[worse] for better, worse in pairs)
    ties = ranking_ties(tiers)
    k = len(position)
    assert len(pairs) + len(ties) == comb(k, 2)
    assert len(set(pairs)) == len(pairs)


# --- merging votes ------------------------------------------------------------------------

def votes(*rankings, prompt_id=1):
    return [LabeledRanking(prompt_id, f"l{i}", tiers) for i, tiers in enumerate(rankings)]


def test_two_of_three_keeps_the_majority_with_its_agreement_and_margin():
    [verdict] = merge_votes(votes([[1], [2]], [[1], [2]], [[2], [1]]), min_votes=2,
                            min_agreement=0.6)
    assert (verdict.chosen, verdict.rejected, verdict.votes) == (1, 2, 3)
    assert verdict.agreement == pytest.approx(2 / 3)
    assert verdict.margin == pytest.approx(1 / 3)


def test_a_split_vote_has_no_winner_and_too_few_votes_are_dropped():
    assert merge_votes(votes([[1], [2]], [[2], [1]])) == []
    assert merge_votes(votes([[1], [2]]), min_votes=2) == []
    assert len(merge_votes(votes([[1], [2]]), min_votes=1)) == 1


def test_ties_count_half_or_abstain():
    rankings = votes([[1], [2]], [[1, 2]])
    [half] = merge_votes(rankings, tie_policy="half")
    assert (half.votes, half.agreement) == (2, 0.75)
    [abstain] = merge_votes(rankings, tie_policy="abstain")
    assert (abstain.votes, abstain.agreement) == (1, 1.0)


def test_reliability_weights_let_a_trusted_labeler_outvote_two():
    rankings = [LabeledRanking(1, "expert", [[2], [1]], weight=3.0),
                LabeledRanking(1, "a", [[1], [2]]), LabeledRanking(1, "b", [[1], [2]])]
    [verdict] = merge_votes(rankings)
    assert (verdict.chosen, verdict.agreement) == (2, 0.6)


def test_a_labeler_twice_on_one_prompt_is_refused():
    with pytest.raises(ValueError, match="more than one ranking"):
        merge_votes([LabeledRanking(1, "a", [[1], [2]]), LabeledRanking(1, "a", [[2], [1]])])


@settings(max_examples=150)
@given(prompt_votes(), st.randoms(use_true_random=False))
def test_merging_does_not_depend_on_the_order_of_labelers(rankings, rng):
    shuffled = rankings[:]
    rng.shuffle(shuffled)
    assert merge_votes(shuffled, min_votes=1) == merge_votes(rankings, min_votes=1)
    assert consensus_rankings(shuffled) == consensus_rankings(rankings)


@settings(max_examples=150)
@given(prompt_votes(), st.integers(1, 5), st.integers(1, 5),
       st.floats(0.5, 1.0), st.floats(0.5, 1.0), st.sampled_from(["half", "abstain"]))
def test_raising_a_threshold_never_adds_a_pair(rankings, votes_a, votes_b, agree_a, agree_b,
                                               tie_policy):
    low = merge_votes(rankings, min_votes=min(votes_a, votes_b),
                      min_agreement=min(agree_a, agree_b), tie_policy=tie_policy)
    high = merge_votes(rankings, min_votes=max(votes_a, votes_b),
                       min_agreement=max(agree_a, agree_b), tie_policy=tie_policy)
    assert set(high) <= set(low)


@settings(max_examples=100)
@given(prompt_votes())
def test_every_verdict_is_a_real_majority(rankings):
    for verdict in merge_votes(rankings):
        assert 0.5 < verdict.agreement <= 1.0
        assert verdict.margin == pytest.approx(2 * verdict.agreement - 1)
        assert verdict.chosen != verdict.rejected


@given(tiers_of(allow_ties=False))
def test_one_labelers_strict_ranking_is_its_own_consensus(tiers):
    [only] = consensus_rankings([LabeledRanking(7, "a", tiers)])
    assert only.tiers == tiers


# --- consensus rankings -------------------------------------------------------------------

def test_ranked_pairs_breaks_a_cycle_at_its_weakest_majority():
    # 1>2 by 4-1, 2>3 by 3-2, 3>1 by 3-2: the weakest link of the cycle is dropped.
    rankings = votes([[1], [2], [3]], [[1], [2], [3]], [[3], [1], [2]], [[2], [3], [1]],
                     [[1], [3], [2]])
    [consensus] = consensus_rankings(rankings)
    tallies = tally_pairs(rankings)
    assert (tallies[(1, 2)].low_wins, tallies[(2, 3)].low_wins) == (4, 3)
    assert consensus.tiers == [[1], [2], [3]] and consensus.rankings == 5


def test_completions_no_majority_separates_share_a_tier():
    assert ranked_pairs([1, 2, 3], tally_pairs(votes([[3], [1], [2]], [[3], [2], [1]]))) == [
        [3], [1, 2]]


def test_a_large_random_project_merges_consistently():
    rng = random.Random(5)
    rankings = []
    for prompt_id in range(200):
        ids = [prompt_id * 10 + i for i in range(4)]
        for labeler in "abc":
            order = ids[:]
            rng.shuffle(order)
            rankings.append(LabeledRanking(prompt_id, labeler, [[i] for i in order]))
    verdicts = merge_votes(rankings, min_votes=3, min_agreement=0.66)
    # Three strict rankings always give every pair a 3-0 or 2-1 majority.
    assert len(verdicts) == 200 * 6
    assert {round(v.agreement, 3) for v in verdicts} <= {0.667, 1.0}
