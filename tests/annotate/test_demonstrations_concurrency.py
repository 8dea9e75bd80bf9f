"""Demonstrations under real concurrency: threads, each with its own connection.

Runs on PostgreSQL (CI); on SQLite every transaction takes the write lock up front, so writers
are serialized anyway (see test_labeling_concurrency).
"""

import pytest
from django.db import connection

from annotate import services
from annotate.models import Demonstration, Prompt
from config.errors import Conflict
from tests.annotate.test_labeling_concurrency import run_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (CI runs it there)")


@pytest.fixture
def writing(make_user):
    """A demonstrate project of two prompts, and alice holding a lease on the first."""
    project = services.project_create(
        created_by=None, slug="race", name="Race", criterion="c", completions_per_prompt=2,
        labelers_per_prompt=3, annotation_mode="demonstrate")
    for index in range(2):
        prompt = Prompt.objects.create(project=project, text=f"Q{index}")
        for position in range(2):
            prompt.completions.create(position=position, text=f"A{position}")
    alice = make_user("alice")
    services.membership_set(project=project, user=alice, role="labeler")
    lease = services.assignment_next(project=project, labeler=alice)
    return project, alice, lease.prompt_id


def test_one_request_sent_many_times_at_once_stores_one_demonstration(writing):
    project, alice, prompt_id = writing
    results = []

    def submit(index: int):
        version, created = services.demonstration_submit(
            project=project, labeler=alice, prompt_id=prompt_id, text="The answer.",
            idempotency_key="the-same-key")
        results.append((version.id, version.revision, created))

    assert run_threads(8, submit) == []
    stored = Demonstration.objects.get()
    assert (stored.revision, stored.history) == (1, [])
    assert sorted(results, key=lambda r: r[2]) == [(stored.id, 1, False)] * 7 + [
        (stored.id, 1, True)]
    assert Prompt.objects.get(id=prompt_id).ranking_count == 1


def test_two_different_submissions_at_once_store_one_and_a_revision(writing):
    project, alice, prompt_id = writing

    def submit(index: int):
        services.demonstration_submit(project=project, labeler=alice, prompt_id=prompt_id,
                                      text=f"Tab {index}.", idempotency_key=f"tab-{index}")

    assert run_threads(2, submit) == []
    stored = Demonstration.objects.get()
    assert stored.revision == 2 and len(stored.history) == 1
    assert {stored.text, stored.history[0]["text"]} == {"Tab 0.", "Tab 1."}
    assert Prompt.objects.get(id=prompt_id).ranking_count == 1


def test_one_key_sent_for_two_prompts_at_once_stores_one_of_them(writing):
    project, alice, first = writing
    services.demonstration_submit(project=project, labeler=alice, prompt_id=first,
                                  text="First.", idempotency_key="k0")
    second = services.assignment_next(project=project, labeler=alice).prompt_id
    results = []

    def submit(index: int):
        try:
            _, created = services.demonstration_submit(
                project=project, labeler=alice, prompt_id=(first, second)[index],
                text="Reused.", idempotency_key="reused")
        except Conflict as refused:
            results.append(str(refused))
        else:
            results.append(created)

    assert run_threads(2, submit) == []
    [refusal] = [r for r in results if isinstance(r, str)]
    assert [r for r in results if not isinstance(r, str)] == [True]
    assert "idempotency_key 'reused' was already used for your demonstration" in refusal
    assert Demonstration.objects.filter(idempotency_key="reused").count() == 1
