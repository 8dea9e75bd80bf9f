"""Agreement metrics: hand-computed examples, independent cross-checks and properties."""

import math
import random
from fractions import Fraction
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotate.agreement import (
    PAIR_SHARE_BINS,
    LooSummary,
    PositionBias,
    PositionRecord,
    TauSummary,
    agreement_histogram,
    gold_accuracy,
    kendall_tau_b,
    krippendorff_alpha_ordinal,
    labeler_pair_taus,
    leave_one_out_agreement,
    ordinal_alpha,
    pair_share_histogram,
    pairwise_agreement,
    position_bias,
    position_bias_by_labeler,
)
from annotate.consensus import LabeledRanking, consensus_rankings
from annotate.ranking import rank_positions


@st.composite
def tiers_of(draw, ids=None, allow_ties=True):
    """A random ranking (list of tiers) of `ids`, or of 1..7 fresh ids."""
    if ids is None:
        ids = list(range(1, draw(st.integers(1, 7)) + 1))
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
def labeled_rankings(draw, max_prompts=4, labelers="abcde", weights=(1.0,)):
    """Rankings of 1..max_prompts prompts (K = 2..5 each) by some of `labelers`."""
    rankings = []
    for prompt_id in range(draw(st.integers(1, max_prompts))):
        ids = [prompt_id * 10 + i for i in range(draw(st.integers(2, 5)))]
        names = draw(st.lists(st.sampled_from(labelers), min_size=1, max_size=len(labelers),
                              unique=True))
        for name in names:
            weight = draw(st.sampled_from(weights))
            rankings.append(LabeledRanking(prompt_id, name, draw(tiers_of(ids)), weight))
    return rankings


def strict(ids):
    return [[completion_id] for completion_id in ids]


# --- Kendall's tau-b ------------------------------------------------------------------------


def test_tau_b_of_strict_rankings_is_concordant_minus_discordant_over_pairs():
    assert kendall_tau_b(strict([1, 2, 3, 4]), strict([1, 2, 3, 4])) == 1.0
    assert kendall_tau_b(strict([1, 2, 3, 4]), strict([4, 3, 2, 1])) == -1.0
    # (1,2) (1,3) concordant, (2,3) discordant: (2 - 1) / 3.
    assert kendall_tau_b(strict([1, 2, 3]), strict([1, 3, 2])) == pytest.approx(1 / 3)


def test_tau_b_with_ties_divides_by_the_untied_pairs_of_each_ranking():
    a = [[1], [2, 3], [4]]
    b = [[2], [1], [3], [4]]
    # Pairs: (1,2) discordant; (1,3) (1,4) (2,4) (3,4) concordant; (2,3) tied in a only.
    # C = 4, D = 1, T_a = 1, T_b = 0: (4 - 1) / sqrt((4 + 1 + 0) * (4 + 1 + 1)) = 3 / sqrt(30).
    assert kendall_tau_b(a, b) == pytest.approx(3 / math.sqrt(30))
    # (1,2) tied in b only, (1,3) concordant, (2,3) tied in a only: 1 / sqrt(2 * 2).
    assert kendall_tau_b([[1], [2, 3]], [[1, 2], [3]]) == 0.5


def test_tau_b_compares_only_the_completions_both_rank():
    assert kendall_tau_b([[1], [2], [9]], [[8], [1], [2]]) == 1.0
    assert kendall_tau_b([[1], [9], [2]], [[2], [8], [1]]) == -1.0


@pytest.mark.parametrize(
    "tiers_a, tiers_b",
    [
        ([[1, 2, 3]], strict([1, 2, 3])),  # a ties everything
        (strict([1, 2, 3]), [[3, 2, 1]]),  # b ties everything
        ([[1, 2]], [[2, 1]]),  # both do
        (strict([1, 2]), strict([2, 3])),  # one shared id
        ([[1]], [[1]]),  # one id
        (strict([1, 2]), strict([3, 4])),  # none shared
        ([[2, 3], [1]], [[4], [3, 2]]),  # the shared ids 2, 3 are tied in both
    ],
)
def test_tau_b_is_none_when_undefined(tiers_a, tiers_b):
    assert kendall_tau_b(tiers_a, tiers_b) is None


@settings(max_examples=200)
@given(tiers_of())
def test_tau_b_of_a_ranking_with_itself_is_one_when_defined(tiers):
    tau = kendall_tau_b(tiers, tiers)
    assert tau == 1.0 or (tau is None and len(tiers) == 1)


@settings(max_examples=200)
@given(tiers_of(allow_ties=False))
def test_tau_b_of_a_strict_ranking_and_its_reverse_is_minus_one(tiers):
    tau = kendall_tau_b(tiers, tiers[::-1])
    assert tau == -1.0 or (tau is None and len(tiers) == 1)


@settings(max_examples=300)
@given(st.data())
def test_tau_b_is_symmetric_and_within_minus_one_and_one(data):
    ids = list(range(data.draw(st.integers(1, 7))))
    a, b = data.draw(tiers_of(ids)), data.draw(tiers_of(ids))
    tau = kendall_tau_b(a, b)
    assert tau == kendall_tau_b(b, a)
    assert tau is None or -1.0 <= tau <= 1.0
    assert (tau is None) == (len(ids) < 2 or len(a) == 1 or len(b) == 1)


def test_tau_b_matches_scipy_on_random_rankings_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    for _ in range(500):
        ids = list(range(rng.randint(2, 8)))
        a, b = random_tiers(ids, rng), random_tiers(ids, rng)
        rank_a, rank_b = rank_positions(a), rank_positions(b)
        expected = stats.kendalltau([rank_a[i] for i in ids], [rank_b[i] for i in ids]).statistic
        tau = kendall_tau_b(a, b)
        if math.isnan(expected):
            assert tau is None
        else:
            assert tau == pytest.approx(expected, abs=1e-12)


def random_tiers(ids, rng, tie_chance=0.3):
    order = ids[:]
    rng.shuffle(order)
    tiers = [[order[0]]]
    for completion_id in order[1:]:
        if rng.random() < tie_chance:
            tiers[-1].append(completion_id)
        else:
            tiers.append([completion_id])
    return tiers


# --- tau-b between every pair of labelers -----------------------------------------------------


def test_labeler_pair_taus_average_over_shared_prompts_and_count_the_undefined():
    rankings = [
        LabeledRanking(1, "b", strict([1, 3, 2])),
        LabeledRanking(1, "c", [[1, 2, 3]]),  # all tied: tau-b undefined with anyone
        LabeledRanking(1, "a", strict([1, 2, 3])),
        LabeledRanking(2, "b", strict([5, 4])),
        LabeledRanking(2, "a", strict([4, 5])),
    ]
    taus = labeler_pair_taus(rankings)
    assert list(taus) == [("a", "b"), ("a", "c"), ("b", "c")]
    # Prompt 1: tau 1/3; prompt 2: tau -1; mean (1/3 - 1) / 2 = -1/3.
    assert taus[("a", "b")].mean_tau == pytest.approx(-1 / 3)
    assert (taus[("a", "b")].shared_prompts, taus[("a", "b")].tau_prompts) == (2, 2)
    assert taus[("a", "c")] == TauSummary(mean_tau=None, shared_prompts=1, tau_prompts=0)
    assert taus[("b", "c")] == TauSummary(mean_tau=None, shared_prompts=1, tau_prompts=0)


def test_labeler_pair_taus_leave_out_labelers_with_nothing_in_common():
    taus = labeler_pair_taus([LabeledRanking(1, "a", strict([1, 2])),
                              LabeledRanking(2, "b", strict([3, 4]))])
    assert taus == {}


def test_labeler_pair_taus_refuse_a_labeler_twice_on_a_prompt():
    with pytest.raises(ValueError, match="more than one ranking"):
        labeler_pair_taus([LabeledRanking(1, "a", strict([1, 2])),
                           LabeledRanking(1, "a", strict([2, 1]))])


@settings(max_examples=100)
@given(labeled_rankings())
def test_labeler_pair_taus_match_a_direct_count(rankings):
    expected: dict[tuple[str, str], list] = {}
    for first, second in combinations(rankings, 2):
        if first.prompt_id == second.prompt_id:
            pair = tuple(sorted((first.labeler, second.labeler)))
            expected.setdefault(pair, []).append(kendall_tau_b(first.tiers, second.tiers))
    taus = labeler_pair_taus(rankings)
    assert set(taus) == set(expected)
    for pair, values in expected.items():
        defined = [tau for tau in values if tau is not None]
        assert pair[0] < pair[1]
        assert taus[pair].shared_prompts == len(values)
        assert taus[pair].tau_prompts == len(defined)
        if defined:
            assert taus[pair].mean_tau == pytest.approx(sum(defined) / len(defined))
        else:
            assert taus[pair].mean_tau is None


# --- Krippendorff's alpha, ordinal -----------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with missing
# values: 4 observers, 12 units (None: no value). The paper gives alpha = 0.815 (ordinal).
PAPER_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def paper_units():
    return [[row[u] for row in PAPER_DATA if row[u] is not None] for u in range(12)]


def reference_alpha(units):
    """Ordinal alpha in the pairwise form, exactly, in O(n^2): 1 - D_o / D_e, where D_o
    averages delta^2 over the pairs of values within units (each unit's pairs weighted
    1 / (m_u - 1)) and D_e over all pairs of pairable values."""
    pairable = [values for values in units if len(values) >= 2]
    pooled = [value for values in pairable for value in values]
    n = len(pooled)
    if n == 0:
        return None
    counts = {value: pooled.count(value) for value in set(pooled)}

    def delta2(c, k):
        low, high = min(c, k), max(c, k)
        between = sum(count for value, count in counts.items() if low <= value <= high)
        return (between - Fraction(counts[c] + counts[k], 2)) ** 2

    observed = sum(
        Fraction(1, len(values) - 1) * delta2(values[i], values[j])
        for values in pairable
        for i in range(len(values))
        for j in range(len(values))
        if i != j
    ) / n
    expected = sum(
        delta2(pooled[i], pooled[j]) for i in range(n) for j in range(n) if i != j
    ) / (n * (n - 1))
    return None if expected == 0 else float(1 - observed / expected)


def rank_units(rankings):
    units: dict[tuple[int, int], list[int]] = {}
    for ranking in rankings:
        for completion_id, position in rank_positions(ranking.tiers).items():
            units.setdefault((ranking.prompt_id, completion_id), []).append(position)
    return list(units.values())


def test_ordinal_alpha_reproduces_krippendorffs_worked_example():
    alpha = ordinal_alpha(paper_units())
    assert round(alpha, 3) == 0.815
    assert alpha == pytest.approx(reference_alpha(paper_units()), abs=1e-12)


def test_ordinal_alpha_of_a_small_case_by_hand():
    # Units [0, 1], [1, 2], [0, 0]: n_0 = 3, n_1 = 2, n_2 = 1, n = 6; o_01 = o_12 = 1 (m = 2).
    # delta^2_01 = (3 + 2 - 5/2)^2 = 6.25, delta^2_12 = (2 + 1 - 3/2)^2 = 2.25,
    # delta^2_02 = (3 + 2 + 1 - 4/2)^2 = 16.
    # alpha = 1 - (n - 1) * (6.25 + 2.25) / (3*2*6.25 + 2*1*2.25 + 3*1*16) = 1 - 42.5 / 90.
    assert ordinal_alpha([[0, 1], [1, 2], [0, 0]]) == pytest.approx(19 / 36)
    assert ordinal_alpha([[0, 1], [1, 2], [0, 0], [2]]) == pytest.approx(19 / 36)  # [2] unpaired


def test_alpha_of_rankings_by_hand():
    rankings = [
        LabeledRanking(1, "a", strict([1, 2])), LabeledRanking(1, "b", strict([1, 2])),
        LabeledRanking(2, "a", strict([3, 4])), LabeledRanking(2, "b", strict([4, 3])),
    ]
    # Units (prompt, completion) -> positions: (1,1) [0, 0], (1,2) [1, 1], (2,3) [0, 1],
    # (2,4) [1, 0]. n_0 = n_1 = 4, n = 8; o_01 = 1 + 1 = 2; delta^2_01 = (4 + 4 - 4)^2 = 16.
    # alpha = 1 - (8 - 1) * 2 * 16 / (4 * 4 * 16) = 1 - 7/8 = 0.125.
    assert krippendorff_alpha_ordinal(rankings) == 0.125


def test_alpha_gives_tied_completions_their_tier_index():
    # a: positions 0, 1, 1; b: 0, 1, 2. Units [0, 0], [1, 1], [1, 2]: only completion 3
    # disagrees. n_0 = 2, n_1 = 3, n_2 = 1, n = 6; o_12 = 1; delta^2_12 = (3 + 1 - 2)^2 = 4,
    # delta^2_01 = (2 + 3 - 2.5)^2 = 6.25, delta^2_02 = (2 + 3 + 1 - 1.5)^2 = 20.25.
    # alpha = 1 - 5 * 4 / (2*3*6.25 + 3*1*4 + 2*1*20.25) = 1 - 20 / 90 = 7/9.
    rankings = [LabeledRanking(1, "a", [[1], [2, 3]]), LabeledRanking(1, "b", strict([1, 2, 3]))]
    assert krippendorff_alpha_ordinal(rankings) == pytest.approx(7 / 9)


def test_alpha_pools_positions_across_prompts_of_different_k_as_they_are():
    rankings = [
        LabeledRanking(1, "a", strict([1, 2])), LabeledRanking(1, "b", strict([2, 1])),
        LabeledRanking(2, "a", strict([3, 4, 5])), LabeledRanking(2, "b", strict([3, 5, 4])),
    ]
    units = [[0, 1], [1, 0], [0, 0], [1, 2], [2, 1]]
    assert krippendorff_alpha_ordinal(rankings) == pytest.approx(ordinal_alpha(units))
    assert krippendorff_alpha_ordinal(rankings) == pytest.approx(reference_alpha(units))


@pytest.mark.parametrize(
    "rankings",
    [
        [],
        [LabeledRanking(1, "a", strict([1, 2])), LabeledRanking(2, "b", strict([3, 4]))],
        [LabeledRanking(1, "a", [[1, 2]]), LabeledRanking(1, "b", [[1, 2]])],
    ],
    ids=["nothing", "no unit with two values", "every value equal"],
)
def test_alpha_is_none_without_a_pairable_unit_or_any_spread(rankings):
    assert krippendorff_alpha_ordinal(rankings) is None


def test_perfect_agreement_gives_alpha_one():
    rankings = [LabeledRanking(p, name, strict([p * 10 + i for i in range(4)]))
                for p in range(3) for name in "abc"]
    assert krippendorff_alpha_ordinal(rankings) == 1.0


@settings(max_examples=100)
@given(st.lists(tiers_of(), min_size=1, max_size=4), st.integers(2, 5))
def test_alpha_is_one_for_identical_rankings_from_several_labelers(prompt_tiers, labelers):
    rankings = [LabeledRanking(p, f"l{j}", tiers)
                for p, tiers in enumerate(prompt_tiers) for j in range(labelers)]
    alpha = krippendorff_alpha_ordinal(rankings)
    everything_tied = all(len(tiers) == 1 for tiers in prompt_tiers)
    assert alpha is None if everything_tied else alpha == 1.0


@settings(max_examples=100)
@given(labeled_rankings(), st.randoms(use_true_random=False))
def test_alpha_does_not_depend_on_the_order_of_the_rankings(rankings, rng):
    shuffled = rankings[:]
    rng.shuffle(shuffled)
    assert krippendorff_alpha_ordinal(shuffled) == krippendorff_alpha_ordinal(rankings)


@settings(max_examples=150)
@given(labeled_rankings(max_prompts=5))
def test_alpha_matches_the_pairwise_form(rankings):
    expected = reference_alpha(rank_units(rankings))
    alpha = krippendorff_alpha_ordinal(rankings)
    assert alpha is None if expected is None else alpha == pytest.approx(expected, abs=1e-9)


def test_alpha_matches_the_krippendorff_package_on_random_rankings():
    krippendorff = pytest.importorskip("krippendorff")
    np = pytest.importorskip("numpy")
    rng = random.Random(3)
    labelers = [f"l{i}" for i in range(6)]
    for _ in range(30):
        rankings = []
        for prompt_id in range(rng.randint(1, 12)):
            ids = [prompt_id * 10 + i for i in range(rng.choice([3, 4]))]
            for name in rng.sample(labelers, rng.randint(1, 4)):
                rankings.append(LabeledRanking(prompt_id, name, random_tiers(ids, rng, 0.2)))
        units = sorted({(r.prompt_id, i) for r in rankings for tier in r.tiers for i in tier})
        data = np.full((len(labelers), len(units)), np.nan)
        for ranking in rankings:
            for completion_id, position in rank_positions(ranking.tiers).items():
                column = units.index((ranking.prompt_id, completion_id))
                data[labelers.index(ranking.labeler), column] = position
        alpha = krippendorff_alpha_ordinal(rankings)
        if alpha is None:
            continue  # the package raises or returns nan where alpha is undefined
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
        assert alpha == pytest.approx(expected, abs=1e-9)


def test_ordinal_alpha_matches_the_krippendorff_package_on_the_papers_example():
    krippendorff = pytest.importorskip("krippendorff")
    data = [[math.nan if value is None else value for value in row] for row in PAPER_DATA]
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert ordinal_alpha(paper_units()) == pytest.approx(expected, abs=1e-12)


# --- agreement with the leave-one-out consensus -----------------------------------------------


def test_leave_one_out_by_hand():
    rankings = [
        LabeledRanking(1, "a", strict([1, 2, 3])),
        LabeledRanking(1, "b", strict([1, 2, 3])),
        LabeledRanking(1, "c", strict([2, 1, 3])),
        LabeledRanking(2, "a", strict([4, 5])),
        LabeledRanking(2, "b", strict([5, 4])),
        LabeledRanking(3, "c", strict([6, 7])),  # nobody else ranked prompt 3
    ]
    loo = leave_one_out_agreement(rankings)
    # Prompt 1, a: b and c split 1-1 on (1, 2) and both put 3 last: consensus [[1, 2], [3]].
    # a orders (1,2), which the consensus ties: agreement 2/3; C = 2, D = 0, tied in the
    # consensus only 1: tau = 2 / sqrt(3 * 2). The same for b.
    # Prompt 1, c: a and b agree on [[1], [2], [3]]; c swaps 1 and 2: agreement 2/3,
    # tau (2 - 1) / 3. Prompt 2: a and b each face the other's opposite ranking: 0 and -1.
    tau_ab = (2 / math.sqrt(6) - 1) / 2
    assert loo["a"] == LooSummary(prompts=2, mean_agreement=pytest.approx(1 / 3),
                                  mean_tau=pytest.approx(tau_ab), tau_prompts=2)
    assert loo["b"] == loo["a"]
    assert loo["c"] == LooSummary(prompts=1, mean_agreement=pytest.approx(2 / 3),
                                  mean_tau=pytest.approx(1 / 3), tau_prompts=1)
    assert list(loo) == ["a", "b", "c"]


def test_leave_one_out_weighs_the_others_and_skips_lonely_labelers():
    rankings = [
        LabeledRanking(1, "expert", strict([2, 1]), weight=3.0),
        LabeledRanking(1, "a", strict([1, 2])),
        LabeledRanking(1, "b", strict([1, 2])),
        LabeledRanking(2, "alone", strict([3, 4])),
    ]
    loo = leave_one_out_agreement(rankings)
    # For a: expert (3) beats b (1), so the consensus is [[2], [1]]: a disagrees.
    assert loo["a"].mean_agreement == 0.0 and loo["a"].mean_tau == -1.0
    assert loo["expert"].mean_agreement == 0.0  # a and b outvote nobody: they are the others
    assert "alone" not in loo


def test_leave_one_out_refuses_an_unknown_tie_policy():
    with pytest.raises(ValueError, match="tie_policy"):
        leave_one_out_agreement([], tie_policy="coin")


@settings(max_examples=100)
@given(st.lists(tiers_of(), min_size=1, max_size=4))
def test_three_identical_labelers_agree_fully_with_the_others(prompt_tiers):
    rankings = [LabeledRanking(p, name, tiers)
                for p, tiers in enumerate(prompt_tiers) for name in "abc"]
    loo = leave_one_out_agreement(rankings)
    assert set(loo) == {"a", "b", "c"}
    for summary in loo.values():
        assert summary.prompts == len(prompt_tiers)
        assert summary.mean_agreement == 1.0
        assert summary.mean_tau in (1.0, None)


@settings(max_examples=150)
@given(labeled_rankings(weights=(1.0, 0.5, 2.0)), st.sampled_from(["half", "abstain"]))
def test_leave_one_out_matches_a_direct_computation(rankings, tie_policy):
    scores: dict[str, list] = {}
    for ranking in rankings:
        others = [r for r in rankings
                  if r.prompt_id == ranking.prompt_id and r.labeler != ranking.labeler]
        if others:
            [consensus] = consensus_rankings(others, tie_policy)
            scores.setdefault(ranking.labeler, []).append(
                (pairwise_agreement(ranking.tiers, consensus.tiers),
                 kendall_tau_b(ranking.tiers, consensus.tiers)))
    loo = leave_one_out_agreement(rankings, tie_policy)
    assert set(loo) == set(scores)
    for labeler, pairs in scores.items():
        taus = [tau for _, tau in pairs if tau is not None]
        assert loo[labeler].prompts == len(pairs)
        assert loo[labeler].mean_agreement == pytest.approx(sum(a for a, _ in pairs) / len(pairs))
        assert loo[labeler].tau_prompts == len(taus)
        assert loo[labeler].mean_tau == (pytest.approx(sum(taus) / len(taus)) if taus else None)


# --- position bias ----------------------------------------------------------------------------


def test_position_bias_by_hand():
    records = [
        PositionRecord("a", [2, 1], [[2], [1]]),  # first shown ranked first
        PositionRecord("a", [1, 2], [[2], [1]]),  # second shown ranked first
        PositionRecord("b", [1, 2, 3], [[1, 2], [3]]),  # first and second shown tied first
        PositionRecord("b", [], [[1], [2]]),  # no displayed order: left out
    ]
    bias = position_bias(records)
    assert bias.records == 3
    assert bias.first_shown_top_share == pytest.approx(2 / 3)
    assert bias.expected_share == pytest.approx((1 / 2 + 1 / 2 + 2 / 3) / 3)
    assert bias.top_share_by_position == pytest.approx([2 / 3, 2 / 3, 0.0])  # place 2: 1 record
    by_labeler = position_bias_by_labeler(records)
    assert list(by_labeler) == ["a", "b"]
    assert by_labeler["a"] == PositionBias(2, 0.5, 0.5, [0.5, 0.5])
    assert by_labeler["b"] == PositionBias(1, 1.0, pytest.approx(2 / 3), [1.0, 1.0, 0.0])


def test_position_bias_without_displayed_orders_is_undefined():
    assert position_bias([PositionRecord("a", [], [[1], [2]])]) == PositionBias(0, None, None, [])
    assert position_bias_by_labeler([PositionRecord("a", [], [[1], [2]])]) == {}


@settings(max_examples=100)
@given(st.lists(st.integers(2, 6).flatmap(lambda k: st.permutations(range(k))), min_size=1,
                max_size=20))
def test_a_labeler_who_always_ranks_first_what_was_shown_first_has_share_one(orders):
    records = [PositionRecord("biased", order, [[order[0]], sorted(order[1:])])
               for order in orders]
    bias = position_bias(records)
    assert bias.first_shown_top_share == 1.0
    assert bias.expected_share == pytest.approx(sum(1 / len(o) for o in orders) / len(orders))
    assert bias.top_share_by_position[1:] == [0.0] * (max(map(len, orders)) - 1)
    assert position_bias_by_labeler(records) == {"biased": bias}


def test_an_unbiased_labeler_ranks_the_first_shown_first_about_as_often_as_expected():
    rng = random.Random(11)
    records = []
    for _ in range(20_000):
        shown = rng.sample(range(4), 4)
        records.append(PositionRecord("fair", shown, random_tiers(list(range(4)), rng)))
    bias = position_bias(records)
    assert abs(bias.first_shown_top_share - bias.expected_share) < 0.02
    for share in bias.top_share_by_position:
        assert abs(share - bias.expected_share) < 0.02


# --- gold prompts -----------------------------------------------------------------------------


def test_gold_accuracy_ranking_mode_is_pairwise_agreement_with_the_reference():
    assert gold_accuracy(strict([1, 2, 3]), strict([1, 2, 3])) == 1.0
    # (1,2) and (1,3) as the reference; (2,3) tied against ordered: 2/3.
    assert gold_accuracy([[1], [2, 3]], strict([1, 2, 3]), mode="ranking") == pytest.approx(2 / 3)
    assert gold_accuracy(strict([3, 2, 1]), strict([1, 2, 3])) == 0.0


@pytest.mark.parametrize(
    "labeler, reference, expected",
    [
        (strict([1, 2, 3]), strict([1, 3, 2]), 1.0),  # same best, the rest does not matter
        (strict([2, 1, 3]), strict([1, 2, 3]), 0.0),  # another best
        ([[2], [1, 3]], [[1, 2], [3]], 1.0),  # one of two tied reference bests
        ([[1, 2], [3]], [[1, 2], [3]], 1.0),  # both tied reference bests, tied
        ([[1, 3], [2]], [[1, 2], [3]], 0.0),  # a best tied with a non-best
        ([[1, 2, 3]], strict([1, 2, 3]), 0.0),  # everything tied first
    ],
)
def test_gold_accuracy_best_mode_wants_a_top_tier_inside_the_references(labeler, reference,
                                                                         expected):
    assert gold_accuracy(labeler, reference, mode="best") == expected


def test_gold_accuracy_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        gold_accuracy(strict([1, 2]), strict([1, 2]), mode="top")


# --- histogram --------------------------------------------------------------------------------


def test_histogram_bins_hold_their_lower_edge_and_the_last_holds_high():
    assert agreement_histogram([0.0, 0.1, 0.3, 0.7, 0.99, 1.0]) == [1, 1, 0, 1, 0, 0, 0, 1, 0, 2]
    assert agreement_histogram([-1.0, -0.5, 0.0, 1.0], bins=4, low=-1.0) == [1, 1, 1, 1]


def test_histogram_leaves_out_values_outside_the_range_and_nan():
    assert agreement_histogram([-0.1, 1.1, math.nan, 0.5], bins=2) == [0, 1]


def test_histogram_refuses_an_empty_range_or_no_bins():
    with pytest.raises(ValueError):
        agreement_histogram([0.5], bins=0)
    with pytest.raises(ValueError):
        agreement_histogram([0.5], low=1.0, high=1.0)


@given(st.lists(st.floats(-2, 2)), st.integers(1, 20))
def test_histogram_counts_every_value_in_range_once(values, bins):
    counts = agreement_histogram(values, bins=bins, low=-1.0, high=1.0)
    assert len(counts) == bins
    assert sum(counts) == sum(-1.0 <= value <= 1.0 for value in values)


# --- pairs by share of votes (the dashboard's agreement chart) --------------------------------


def test_the_pair_share_histogram_counts_split_pairs():
    # Two labelers who agree on the first prompt and disagree on the top pair of the second:
    # that pair splits 1-1 and must show, not vanish for lack of a majority.
    rankings = [
        LabeledRanking(1, "ann", [[1], [2], [3]]), LabeledRanking(1, "bob", [[1], [2], [3]]),
        LabeledRanking(2, "ann", [[4], [5], [6]]), LabeledRanking(2, "bob", [[5], [4], [6]]),
    ]
    assert pair_share_histogram(rankings) == [1, 0, 0, 0, 0, 5]
    assert sum(pair_share_histogram(rankings)) == 6  # every pair with two votes


def test_the_pair_share_histogram_bins_shares_and_leaves_out_single_votes():
    rankings = [
        LabeledRanking(1, "ann", [[1], [2]]), LabeledRanking(1, "bob", [[1], [2]]),
        LabeledRanking(1, "cal", [[2], [1]]),  # 2 of 3: 0.67
        LabeledRanking(2, "ann", [[3], [4]]), LabeledRanking(2, "bob", [[3, 4]]),  # 0.75
        LabeledRanking(3, "ann", [[5], [6]]),  # one vote: not counted
        LabeledRanking(4, "ann", [[7, 8]]), LabeledRanking(4, "bob", [[7, 8]]),  # tie-tie: split
    ]
    assert pair_share_histogram(rankings) == [1, 0, 1, 1, 0, 0]
    assert pair_share_histogram(rankings, min_votes=1) == [1, 0, 1, 1, 0, 1]
    assert len(pair_share_histogram([])) == len(PAIR_SHARE_BINS)
