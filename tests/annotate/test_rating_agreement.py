"""Rate mode's agreement: Krippendorff's alpha (interval) and each labeler against the others."""

import random
from collections import Counter

import pytest

from annotate.rating_agreement import (
    LabelerCorrelation,
    interval_alpha,
    labeler_correlations,
    pearson,
    rating_units,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section E: 4 coders,
# 12 units, missing values as None. The paper gives alpha = 0.743 nominal, 0.815 ordinal,
# 0.849 interval, 0.797 ratio.
RELIABILITY_DATA = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def units_of(data: dict[str, list]) -> list[list[float]]:
    return [[v for v in column if v is not None] for column in zip(*data.values(), strict=True)]


def alpha_from_coincidences(units: list[list[float]]) -> float:
    """The definition, step by step: the coincidence matrix o_ck over ordered pairs of values
    from different coders in each pairable unit (each weighted 1 / (m_u - 1)), its marginals
    n_c, and alpha = 1 - (n - 1) sum o_ck d_ck / sum_{c, k} n_c n_k d_ck, d = (c - k)^2."""
    coincidences: Counter = Counter()
    for values in units:
        if len(values) < 2:
            continue
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    coincidences[(c, k)] += 1 / (len(values) - 1)
    marginals: Counter = Counter()
    for (c, _), count in coincidences.items():
        marginals[c] += count
    n = sum(marginals.values())
    observed = sum(count * (c - k) ** 2 for (c, k), count in coincidences.items())
    expected = sum(marginals[c] * marginals[k] * (c - k) ** 2 for c in marginals for k in marginals)
    return 1 - (n - 1) * observed / expected


def test_interval_alpha_is_krippendorffs_published_value():
    alpha = interval_alpha(units_of(RELIABILITY_DATA))
    assert round(alpha, 3) == 0.849
    assert alpha == pytest.approx(alpha_from_coincidences(units_of(RELIABILITY_DATA)), abs=1e-12)


def test_interval_alpha_agrees_with_the_definition_on_random_data_with_missing_values():
    rng = random.Random(7)
    for _ in range(50):
        units = [[rng.randint(1, 7) for _ in range(rng.randint(0, 5))] for _ in range(30)]
        if interval_alpha(units) is None:
            continue
        assert interval_alpha(units) == pytest.approx(alpha_from_coincidences(units), abs=1e-9)


def test_interval_alpha_is_undefined_without_pairable_units_or_variation():
    assert interval_alpha([[3], [4], []]) is None
    assert interval_alpha([[3, 3], [3, 3, 3]]) is None
    assert interval_alpha([[1, 1], [5, 5]]) == 1.0


def test_interval_alpha_takes_fractional_values():
    # Means over aspects: the metric is interval, so 2.5 sits halfway between 2 and 3.
    units = [[2.5, 3.0], [4.0, 4.5], [1.0, 1.5]]
    assert interval_alpha(units) == pytest.approx(alpha_from_coincidences(units), abs=1e-12)


def test_rating_units_pool_labelers_by_completion_and_aspect():
    ratings = [
        ("ann", {"7": {"style": 4, "facts": 2}, "8": {"style": 1, "facts": 1}}),
        ("bob", {"7": {"style": 5, "facts": 3}}),
    ]
    assert rating_units(ratings) == {7: {"ann": 3.0, "bob": 4.0}, 8: {"ann": 1.0}}
    assert rating_units(ratings, aspect="style") == {7: {"ann": 4, "bob": 5}, 8: {"ann": 1}}


def test_each_labeler_is_correlated_with_the_mean_of_the_others():
    units = {
        1: {"ann": 5, "bob": 4, "cy": 2},
        2: {"ann": 3, "bob": 3, "cy": 4},
        3: {"ann": 1, "bob": 2},
        4: {"ann": 2},  # no one else: not shared
    }
    correlations = labeler_correlations(units)
    # ann against the others' means: (5, 3) at 3.0, (3, 3.5), (1, 2.0).
    assert correlations["ann"].completions == 3
    assert correlations["ann"].pearson == pytest.approx(_pearson([5, 3, 1], [3.0, 3.5, 2.0]))
    assert correlations["cy"] == LabelerCorrelation(2, pytest.approx(_pearson([2, 4], [4.5, 3])))
    assert correlations["cy"].pearson == pytest.approx(-1.0)
    assert set(correlations) == {"ann", "bob", "cy"}


def test_a_correlation_without_variation_is_undefined():
    correlations = labeler_correlations({1: {"ann": 3, "bob": 4}, 2: {"ann": 3, "bob": 5}})
    assert correlations["ann"] == LabelerCorrelation(2, None)
    assert pearson([1], [2]) is None


def _pearson(xs, ys):
    """numpy's, as an independent check."""
    import numpy

    return float(numpy.corrcoef(xs, ys)[0, 1])
