import doctest
import subprocess
import sys

import pytest

import annotate.rating_data
from annotate.rating_data import CompletionScore, RatedPair, completion_scores, rated_pairs


def overall(**scores: int) -> dict:
    """A rating without aspects: overall(c7=5, c8=2) -> {"7": {"overall": 5}, ...}."""
    return {key.removeprefix("c"): {"overall": value} for key, value in scores.items()}


def test_doctests_of_the_data_contracts_pass():
    failed, attempted = doctest.testmod(annotate.rating_data)
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize("module", ["annotate.rating_data", "annotate.rating_exporters"])
def test_the_modules_do_not_load_django(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if 'django' in m))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_the_export_doctests_pass():
    import annotate.rating_exporters

    failed, attempted = doctest.testmod(annotate.rating_exporters)
    assert attempted > 0 and failed == 0


def test_three_labelers_give_means_votes_spreads_and_pairs_with_margins():
    ratings = [overall(c1=5, c2=3, c3=1), overall(c1=4, c2=3, c3=2), overall(c1=5, c2=2, c3=1)]
    scores = completion_scores(ratings)
    assert [(s.completion_id, s.votes, s.spread) for s in scores] == [(1, 3, 1.0), (2, 3, 1.0),
                                                                       (3, 3, 1.0)]
    assert [s.mean for s in scores] == pytest.approx([14 / 3, 8 / 3, 4 / 3])
    pairs = rated_pairs(scores, min_votes=2, max_spread=2.0)
    assert [(p.chosen, p.rejected) for p in pairs] == [(1, 2), (1, 3), (2, 3)]
    assert [p.margin for p in pairs] == pytest.approx([2.0, 10 / 3, 4 / 3])


def test_a_single_vote_is_kept_only_when_min_votes_is_one():
    scores = completion_scores([overall(c1=5, c2=2)])
    assert scores[0] == CompletionScore(1, 5.0, 1, 0.0, {"overall": 5.0})
    assert rated_pairs(scores, min_votes=2, max_spread=2.0) == []
    assert rated_pairs(scores, min_votes=1, max_spread=2.0) == [RatedPair(1, 2, 3.0)]


def test_equal_means_give_no_pair():
    scores = completion_scores([overall(c1=3, c2=3, c3=3), overall(c1=4, c2=4, c3=4)])
    assert {s.mean for s in scores} == {3.5}
    assert rated_pairs(scores, min_votes=1, max_spread=5) == []


def test_means_equal_up_to_rounding_are_a_tie():
    # 7 and 8 both mean 11/3 but are summed in different orders of aspects and labelers.
    ratings = [{"7": {"a": 4, "b": 3, "c": 4}, "8": {"a": 3, "b": 4, "c": 4}}]
    assert rated_pairs(completion_scores(ratings), min_votes=1, max_spread=5) == []


def test_a_completion_past_max_spread_leaves_its_pairs_out():
    # 2's labelers say 5 and 1: spread 4; 1 and 3 agree closely.
    scores = completion_scores([overall(c1=4, c2=5, c3=1), overall(c1=5, c2=1, c3=2)])
    assert [s.spread for s in scores] == [1.0, 4.0, 1.0]
    assert rated_pairs(scores, min_votes=2, max_spread=2.0) == [RatedPair(1, 3, 3.0)]
    assert len(rated_pairs(scores, min_votes=2, max_spread=4.0)) == 3
    # The bound is inclusive: a spread equal to max_spread is kept.
    assert rated_pairs(scores, min_votes=2, max_spread=1.0) == [RatedPair(1, 3, 3.0)]
    assert rated_pairs(scores, min_votes=2, max_spread=0.5) == []


def test_aspects_average_into_the_score_and_keep_their_own_means():
    ratings = [
        {"1": {"helpful": 5, "honest": 3}, "2": {"helpful": 2, "honest": 2}},
        {"1": {"helpful": 4, "honest": 4}, "2": {"helpful": 1, "honest": 3}},
    ]
    first, second = completion_scores(ratings)
    assert first == CompletionScore(1, 4.0, 2, 0.0, {"helpful": 4.5, "honest": 3.5})
    assert second == CompletionScore(2, 2.0, 2, 0.0, {"helpful": 1.5, "honest": 2.5})
    # Spread is of each labeler's mean over aspects, not of single aspect scores.
    assert rated_pairs([first, second], min_votes=2, max_spread=0.0) == [RatedPair(1, 2, 2.0)]


def test_a_completion_rated_by_fewer_labelers_counts_its_own_votes():
    scores = completion_scores([overall(c1=5, c2=1), overall(c1=5)])
    assert [(s.completion_id, s.votes) for s in scores] == [(1, 2), (2, 1)]
    assert rated_pairs(scores, min_votes=2, max_spread=2) == []


def test_no_ratings_give_nothing():
    assert completion_scores([]) == []
    assert rated_pairs([], min_votes=1, max_spread=2) == []
