"""The new-project form: shares read as people write them."""

import pytest

from annotate.forms import ProjectForm, share_text

pytestmark = pytest.mark.django_db

SETTINGS = {"name": "Helpful", "slug": "helpful", "criterion": "helpfulness",
            "completions_per_prompt": 4, "labelers_per_prompt": 2, "consensus_min_votes": 2,
            "consensus_tie_policy": "half", "lease_minutes": 30}


def test_the_default_min_agreement_shows_as_a_fraction_not_sixteen_decimals():
    html = str(ProjectForm()["consensus_min_agreement"])
    assert 'value="2/3"' in html
    assert "0.666" not in html


@pytest.mark.parametrize("typed, stored", [("2/3", 2 / 3), ("0.75", 0.75), (" 3/4 ", 0.75)])
def test_min_agreement_is_typed_as_a_decimal_or_a_fraction(typed, stored):
    form = ProjectForm(SETTINGS | {"consensus_min_agreement": typed})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["consensus_min_agreement"] == stored


@pytest.mark.parametrize("typed", ["1/3", "2/0", "two thirds"])
def test_min_agreement_below_a_half_or_unreadable_is_refused(typed):
    form = ProjectForm(SETTINGS | {"consensus_min_agreement": typed})
    assert not form.is_valid()
    assert "consensus_min_agreement" in form.errors


def test_share_text_keeps_decimals_short():
    assert [share_text(v) for v in (2 / 3, 0.7, 0.5, 0.125, 0.61803, 1.0)] == [
        "2/3", "0.7", "0.5", "0.125", "0.618", "1"]
