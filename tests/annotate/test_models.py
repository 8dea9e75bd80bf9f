"""Constraints the database enforces, whatever writes to it."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.models import Assignment, Completion, Project, Prompt, Ranking


def make_prompt(project, k=None, external_id="") -> tuple[Prompt, list[int]]:
    prompt = Prompt.objects.create(project=project, text="Why?", external_id=external_id)
    k = k or project.completions_per_prompt
    ids = [Completion.objects.create(prompt=prompt, position=i, text=f"c{i}").id for i in range(k)]
    return prompt, ids


def assert_rejected(**ranking_fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        Ranking.objects.create(**ranking_fields)


@pytest.mark.django_db
def test_a_ranking_naming_exactly_the_prompts_completions_is_stored(project, alice):
    prompt, ids = make_prompt(project)
    ranking = Ranking.objects.create(
        prompt=prompt, labeler=alice, tiers=[[ids[2]], [ids[0], ids[3]], [ids[1]]]
    )
    assert Ranking.objects.get(id=ranking.id).tiers == [[ids[2]], [ids[0], ids[3]], [ids[1]]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make_tiers",
    [
        lambda ids, other: [[ids[0]], [ids[1]], [ids[2]]],  # one left out
        lambda ids, other: [[i] for i in ids] + [[other[0]]],  # another prompt's completion
        lambda ids, other: [[ids[0]], [ids[1]], [ids[2]], [other[0]]],  # swapped for a foreign one
        lambda ids, other: [[ids[0]], [ids[0]], [ids[1]], [ids[2]], [ids[3]]],  # named twice
        lambda ids, other: [[ids[0], ids[0]], [ids[1]], [ids[2]]],  # twice, same count as ids-1
        lambda ids, other: [],
        lambda ids, other: [[ids[0], ids[1], ids[2], ids[3]], []],  # an empty tier
        lambda ids, other: [[str(i)] for i in ids],  # strings, not ids
        lambda ids, other: ids,  # a flat list, not tiers
        lambda ids, other: {"a": ids},
    ],
)
def test_the_database_refuses_tiers_that_are_not_the_prompts_completions(
    project, alice, make_tiers
):
    prompt, ids = make_prompt(project)
    _, other = make_prompt(project)
    assert_rejected(prompt=prompt, labeler=alice, tiers=make_tiers(ids, other))
    assert not Ranking.objects.exists()


@pytest.mark.django_db
def test_the_database_refuses_an_update_that_breaks_the_tiers(project, alice):
    prompt, ids = make_prompt(project)
    ranking = Ranking.objects.create(prompt=prompt, labeler=alice, tiers=[[i] for i in ids])
    with pytest.raises(IntegrityError), transaction.atomic():
        Ranking.objects.filter(id=ranking.id).update(tiers=[[ids[0]]])
    other_prompt, _ = make_prompt(project)
    with pytest.raises(IntegrityError), transaction.atomic():
        Ranking.objects.filter(id=ranking.id).update(prompt=other_prompt)
    assert Ranking.objects.get(id=ranking.id).tiers == [[i] for i in ids]


@pytest.mark.django_db
def test_a_labeler_ranks_a_prompt_at_most_once(project, alice, make_user):
    prompt, ids = make_prompt(project)
    Ranking.objects.create(prompt=prompt, labeler=alice, tiers=[[i] for i in ids])
    assert_rejected(prompt=prompt, labeler=alice, tiers=[[i] for i in reversed(ids)])
    Ranking.objects.create(prompt=prompt, labeler=make_user("bob"), tiers=[[i] for i in ids])
    assert prompt.rankings.count() == 2


@pytest.mark.django_db
def test_imported_rankings_have_no_labeler_and_one_per_prompt(project, alice):
    prompt, ids = make_prompt(project)
    tiers = [[i] for i in ids]
    assert_rejected(prompt=prompt, labeler=None, source="labeler", tiers=tiers)
    assert_rejected(prompt=prompt, labeler=alice, source="imported", tiers=tiers)
    Ranking.objects.create(prompt=prompt, source="imported", tiers=tiers)
    assert_rejected(prompt=prompt, source="imported", tiers=tiers)


@pytest.mark.django_db
def test_an_idempotency_key_is_unique_per_labeler(project, alice):
    first, first_ids = make_prompt(project)
    second, second_ids = make_prompt(project)
    Ranking.objects.create(
        prompt=first, labeler=alice, tiers=[[i] for i in first_ids], idempotency_key="k1"
    )
    assert_rejected(
        prompt=second, labeler=alice, tiers=[[i] for i in second_ids], idempotency_key="k1"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("k", [1, 10])
def test_k_must_be_between_2_and_9(k):
    with pytest.raises(IntegrityError):
        Project.objects.create(name="x", slug="x", criterion="c", completions_per_prompt=k)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "messages"), [("", None), ("Hi", [{"role": "user", "content": "Hi"}])]
)
def test_a_prompt_has_text_or_messages_not_both_nor_neither(project, text, messages):
    with pytest.raises(IntegrityError):
        Prompt.objects.create(project=project, text=text, messages=messages)


@pytest.mark.django_db
def test_external_ids_are_unique_within_a_project_only(project, other_project):
    make_prompt(project, external_id="q1")
    make_prompt(other_project, external_id="q1")
    make_prompt(project)  # blank ids do not collide
    make_prompt(project)
    with pytest.raises(IntegrityError):
        make_prompt(project, external_id="q1")


@pytest.mark.django_db
def test_completions_are_non_empty_and_have_distinct_positions(project):
    prompt, _ = make_prompt(project, k=2)
    for fields in ({"position": 5, "text": ""}, {"position": 0, "text": "again"}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Completion.objects.create(prompt=prompt, **fields)


@pytest.mark.django_db
def test_a_lease_expires_after_it_starts_and_is_held_once(project, alice):
    prompt, _ = make_prompt(project)
    now = timezone.now()
    later = now + timedelta(minutes=30)
    lease = {"prompt": prompt, "labeler": alice, "seed": 1, "leased_at": now}
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(**lease, expires_at=now)
    Assignment.objects.create(**lease, expires_at=later)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(**lease, expires_at=later)


@pytest.mark.django_db
def test_a_ranked_or_skipped_assignment_has_a_closing_time(project, alice):
    prompt, _ = make_prompt(project)
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(prompt=prompt, labeler=alice, seed=1, leased_at=now,
                                  expires_at=now + timedelta(minutes=5), status="ranked")
