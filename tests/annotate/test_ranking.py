"""What a valid ranking is, and that the pure modules stay free of Django."""

import subprocess
import sys

import pytest

from annotate.ranking import InvalidRanking, validate_tiers

IDS = {11, 12, 13, 14}


def test_a_strict_ranking_and_a_ranking_with_ties_are_valid():
    assert validate_tiers([[13], [11], [14], [12]], IDS, allow_ties=False) == [
        [13],
        [11],
        [14],
        [12],
    ]
    assert validate_tiers([[13, 11], [14, 12]], IDS, allow_ties=True) == [[13, 11], [14, 12]]


@pytest.mark.parametrize(
    ("tiers", "allow_ties", "message"),
    [
        ([], True, "non-empty list"),
        ("11,12", True, "non-empty list"),
        ([[11], [], [12, 13, 14]], True, "tier 1 must be a non-empty list"),
        ([[11, 12], [13], [14]], False, "tier 0 ties 2 completions; this project forbids ties"),
        ([[11], [12], [13], [99]], True, "completion 99 is not one of this prompt's"),
        ([[11], [12], [13], [13]], True, "completion 13 appears more than once"),
        ([[11], [12]], True, "tiers leave out completion 13, 14"),
        ([[11], ["12"], [13], [14]], True, "'12' is not a completion id"),
        ([[11], [True], [13], [14]], True, "True is not a completion id"),
    ],
)
def test_invalid_tiers_say_what_is_wrong(tiers, allow_ties, message):
    with pytest.raises(InvalidRanking, match=message):
        validate_tiers(tiers, IDS, allow_ties=allow_ties)


@pytest.mark.parametrize(
    "module", ["annotate.ranking", "annotate.importers", "annotate.consensus", "annotate.agreement",
               "annotate.rating_agreement", "annotate.content", "annotate.exporters",
               "annotate.read_ahead"]
)
def test_pure_modules_do_not_load_django(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if 'django' in m))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_doctests_of_the_data_contracts_pass():
    import doctest

    import annotate.agreement
    import annotate.consensus
    import annotate.importers
    import annotate.ranking
    import annotate.rating_agreement
    import annotate.read_ahead

    for module in (annotate.ranking, annotate.importers, annotate.consensus, annotate.agreement,
                   annotate.rating_agreement, annotate.read_ahead):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0
