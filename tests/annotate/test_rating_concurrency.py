"""Ratings under real concurrency, as rankings are (tests/annotate/test_labeling_concurrency.py):
a rating is a ranking, so the same locks keep the same invariants.

Runs on PostgreSQL (CI); SQLite's in-memory test database cannot be shared between threads.
"""

import pytest
from django.db import connection

from annotate import services
from annotate.models import Assignment, Prompt, Ranking, RankingRevision
from config.errors import Conflict
from tests.annotate.test_labeling_concurrency import run_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (CI runs it there)")


@pytest.fixture
def rating_project(make_user):
    project = services.project_create(
        created_by=None, slug="rate-race", name="Rate race", criterion="helpfulness",
        completions_per_prompt=3, labelers_per_prompt=1, annotation_mode="rate")
    prompt = Prompt.objects.create(project=project, text="Q")
    for position in range(3):
        prompt.completions.create(position=position, text=f"A{position}")
    return project


def scores_for(prompt_id: int, *values: int) -> dict:
    ids = Prompt.objects.get(id=prompt_id).completions.values_list("id", flat=True)
    return {str(i): {"overall": value} for i, value in zip(ids, values, strict=True)}


def test_two_labelers_rating_the_last_slot_at_once_store_one_rating(rating_project, make_user):
    """One slot: Alice's lease lapsed and Bob was leased the prompt; both submit at once.
    Whoever is first, only Bob's rating is stored and Alice is told why."""
    alice, bob = make_user("alice"), make_user("bob")
    for labeler in (alice, bob):
        services.membership_set(project=rating_project, user=labeler, role="labeler")
    prompt_id = services.assignment_next(project=rating_project, labeler=alice).prompt_id
    Assignment.objects.filter(labeler=alice).update(leased_at="2000-01-01T00:00:00Z",
                                                    expires_at="2000-01-01T00:30:00Z")
    assert services.assignment_next(project=rating_project, labeler=bob).prompt_id == prompt_id
    outcomes = {}

    def submit(index: int):
        labeler = (alice, bob)[index]
        try:
            services.ranking_submit(project=rating_project, labeler=labeler,
                                    prompt_id=prompt_id, idempotency_key=f"{labeler}-1",
                                    scores=scores_for(prompt_id, 5, 3, 1 + index))
        except Conflict as refused:
            outcomes[labeler.username] = str(refused)
        else:
            outcomes[labeler.username] = "stored"

    assert run_threads(2, submit) == []
    assert outcomes["bob"] == "stored"
    assert "others took its slots" in outcomes["alice"]
    ranking = Ranking.objects.get()
    assert ranking.labeler == bob and ranking.scores == scores_for(prompt_id, 5, 3, 2)
    assert Prompt.objects.get(id=prompt_id).ranking_count == 1


def test_one_rating_sent_many_times_at_once_stores_one_ranking(rating_project, make_user):
    """A double submit with one key: one rating, its scores and tiers; the copies answer it."""
    alice = make_user("alice")
    services.membership_set(project=rating_project, user=alice, role="labeler")
    prompt_id = services.assignment_next(project=rating_project, labeler=alice).prompt_id
    scores = scores_for(prompt_id, 2, 4, 4)
    results = []

    def submit(index: int):
        version, created = services.ranking_submit(
            project=rating_project, labeler=alice, prompt_id=prompt_id, scores=scores,
            idempotency_key="the-same-key")
        results.append((version.id, version.scores, created))

    assert run_threads(6, submit) == []
    ranking = Ranking.objects.get()
    assert ranking.scores == scores and len(ranking.tiers) == 2
    assert not RankingRevision.objects.exists()
    assert sorted(created for _, _, created in results) == [False] * 5 + [True]
    assert {(ranking_id, str(s)) for ranking_id, s, _ in results} == {(ranking.id, str(scores))}
    assert Prompt.objects.get().ranking_count == 1
