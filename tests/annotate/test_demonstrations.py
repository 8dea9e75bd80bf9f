"""Demonstrate mode: labelers write the response a prompt should get, told as stories."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate import services
from annotate.models import Assignment, Demonstration, Prompt
from config.errors import Conflict, Invalid, NotFound

pytestmark = pytest.mark.django_db


@pytest.fixture
def writing_project(db):
    """Two prompts of 2 completions, each demonstrated by 2 labelers."""
    project = services.project_create(
        created_by=None, slug="writing", name="Writing", criterion="helpfulness",
        completions_per_prompt=2, labelers_per_prompt=2, annotation_mode="demonstrate",
    )
    for index in range(2):
        prompt = Prompt.objects.create(project=project, text=f"Q{index}", external_id=f"q{index}")
        for position in range(2):
            prompt.completions.create(position=position, text=f"A{index}.{position}")
    return project


@pytest.fixture
def writers(writing_project, make_user):
    users = {}
    for name in ("alice", "bob", "carol"):
        users[name] = make_user(name)
        services.membership_set(project=writing_project, user=users[name], role="labeler")
    return users


def lease(project, labeler) -> Prompt:
    return services.assignment_next(project=project, labeler=labeler).prompt


def write(project, labeler, prompt, text="A good answer.", key=None, **extra):
    return services.demonstration_submit(
        project=project, labeler=labeler, prompt_id=prompt.id, text=text,
        idempotency_key=key or f"{labeler.username}-{prompt.id}-{text[:10]}", **extra)


def completion(prompt, position: int):
    return prompt.completions.get(position=position)


# --- the first demonstration -------------------------------------------------------------

def test_a_demonstration_is_stored_closes_the_lease_and_counts(writing_project, writers):
    alice = writers["alice"]
    prompt = lease(writing_project, alice)
    source = completion(prompt, 1)
    version, created = write(writing_project, alice, prompt, "  Edited answer.\n",
                             source_completion_id=source.id, comment="fixed a typo",
                             time_spent_ms=1200)
    assert created
    stored = Demonstration.objects.get()
    assert (stored.text, stored.source_completion_id, stored.comment, stored.time_spent_ms) == (
        "Edited answer.", source.id, "fixed a typo", 1200)
    assert (version.id, version.revision, version.text) == (stored.id, 1, "Edited answer.")
    assert Assignment.objects.get(labeler=alice, prompt=prompt).status == "ranked"
    assert Prompt.objects.get(id=prompt.id).ranking_count == 1


def test_from_scratch_has_no_source(writing_project, writers):
    prompt = lease(writing_project, writers["alice"])
    version, _ = write(writing_project, writers["alice"], prompt, "Mine.")
    assert version.source_completion_id is None
    assert Demonstration.objects.get().source_completion is None


def test_the_next_prompt_is_another_once_written(writing_project, writers):
    alice = writers["alice"]
    first = lease(writing_project, alice)
    write(writing_project, alice, first)
    assert lease(writing_project, alice).id != first.id


def test_a_prompt_not_leased_to_the_labeler_is_refused(writing_project, writers):
    prompt = Prompt.objects.filter(project=writing_project).first()
    with pytest.raises(NotFound, match="not leased to you"):
        write(writing_project, writers["alice"], prompt)
    assert not Demonstration.objects.exists()


def test_a_prompt_of_another_project_is_not_found(writing_project, writers, project):
    other = Prompt.objects.create(project=project, text="elsewhere")
    with pytest.raises(NotFound, match="No such prompt"):
        write(writing_project, writers["alice"], other)


def test_slots_are_respected_after_a_lease_expired(writing_project, writers):
    alice, bob, carol = writers["alice"], writers["bob"], writers["carol"]
    now = timezone.now()
    prompt = services.assignment_next(project=writing_project, labeler=alice, now=now).prompt
    # Alice's lease runs out; Bob and Carol take both slots of her prompt meanwhile.
    later = now + timedelta(minutes=writing_project.lease_minutes + 1)
    for labeler in (bob, carol):
        leased = services.assignment_next(project=writing_project, labeler=labeler, now=later)
        assert leased.prompt_id == prompt.id
        write(writing_project, labeler, prompt, now=later)
    with pytest.raises(Conflict, match="others took its slots"):
        write(writing_project, alice, prompt, now=later)
    assert Prompt.objects.get(id=prompt.id).ranking_count == 2


def test_an_expired_lease_with_a_slot_left_still_counts(writing_project, writers):
    alice = writers["alice"]
    now = timezone.now()
    prompt = services.assignment_next(project=writing_project, labeler=alice, now=now).prompt
    later = now + timedelta(minutes=writing_project.lease_minutes + 1)
    _, created = write(writing_project, alice, prompt, now=later)
    assert created


def test_a_frozen_project_takes_no_demonstration(writing_project, writers):
    prompt = lease(writing_project, writers["alice"])
    writing_project.is_frozen = True
    writing_project.save()
    with pytest.raises(Conflict, match="frozen"):
        write(writing_project, writers["alice"], prompt)
    assert not Demonstration.objects.exists()


def test_skips_work_unchanged(writing_project, writers):
    alice = writers["alice"]
    prompt = lease(writing_project, alice)
    services.prompt_skip(project=writing_project, labeler=alice, prompt_id=prompt.id,
                         reason="unclear")
    assert lease(writing_project, alice).id != prompt.id
    with pytest.raises(NotFound):
        write(writing_project, alice, prompt)


# --- modes -------------------------------------------------------------------------------

def test_a_rank_project_refuses_demonstrations(project, alice):
    prompt = Prompt.objects.create(project=project, text="Q")
    with pytest.raises(Conflict, match="rank mode: it takes rankings, not demonstrations"):
        write(project, alice, prompt)


def test_a_demonstrate_project_refuses_rankings(writing_project, writers):
    prompt = lease(writing_project, writers["alice"])
    ids = list(prompt.completions.values_list("id", flat=True))
    with pytest.raises(Conflict, match="demonstrate mode: it takes demonstrations"):
        services.ranking_submit(project=writing_project, labeler=writers["alice"],
                                prompt_id=prompt.id, tiers=[[i] for i in ids],
                                idempotency_key="k")


# --- the text and the source --------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("", "text: write the response"),
    ("  \n\t ", "text: write the response"),
    ("x" * 20_001, "text: 20,001 characters; at most 20,000"),
    ("bad\x00byte", "text: holds a NUL"),
    (None, "text: must be a string"),
])
def test_bad_text_is_refused_saying_why(writing_project, writers, text, message):
    prompt = lease(writing_project, writers["alice"])
    with pytest.raises(Invalid, match=message):
        services.demonstration_submit(project=writing_project, labeler=writers["alice"],
                                      prompt_id=prompt.id, text=text, idempotency_key="k")
    assert not Demonstration.objects.exists()


def test_twenty_thousand_characters_are_taken(writing_project, writers):
    prompt = lease(writing_project, writers["alice"])
    version, _ = write(writing_project, writers["alice"], prompt, "y" * 20_000)
    assert len(version.text) == 20_000


def test_a_source_from_another_prompt_is_refused(writing_project, writers):
    prompt = lease(writing_project, writers["alice"])
    other = Prompt.objects.filter(project=writing_project).exclude(id=prompt.id).get()
    with pytest.raises(Invalid, match=f"is not a completion of prompt {prompt.id}"):
        write(writing_project, writers["alice"], prompt,
              source_completion_id=completion(other, 0).id)
    assert Assignment.objects.get(prompt=prompt).status == "leased"


def test_time_spent_out_of_range_is_refused(writing_project, writers):
    prompt = lease(writing_project, writers["alice"])
    with pytest.raises(Invalid, match="time_spent_ms"):
        write(writing_project, writers["alice"], prompt, time_spent_ms=-1)


# --- replays, revisions, conflicts --------------------------------------------------------

def test_a_replay_returns_the_stored_version_and_writes_nothing(writing_project, writers):
    alice = writers["alice"]
    prompt = lease(writing_project, alice)
    first, _ = write(writing_project, alice, prompt, "Answer.", key="k1")
    again, created = write(writing_project, alice, prompt, " Answer. ", key="k1")
    assert not created
    assert (again.id, again.revision) == (first.id, 1)
    assert Prompt.objects.get(id=prompt.id).ranking_count == 1


def test_a_used_key_with_other_content_is_a_conflict(writing_project, writers):
    alice = writers["alice"]
    prompt = lease(writing_project, alice)
    write(writing_project, alice, prompt, "Answer.", key="k1")
    with pytest.raises(Conflict, match="'k1' was already used for another version"):
        write(writing_project, alice, prompt, "Another answer.", key="k1")
    assert Demonstration.objects.get().text == "Answer."


def test_a_used_key_for_another_prompt_is_a_conflict(writing_project, writers):
    alice = writers["alice"]
    first = lease(writing_project, alice)
    write(writing_project, alice, first, key="k1")
    second = lease(writing_project, alice)
    with pytest.raises(Conflict, match=f"used for your demonstration for prompt {first.id}"):
        write(writing_project, alice, second, key="k1")


def test_a_resubmission_keeps_history_and_bumps_the_revision(writing_project, writers):
    alice = writers["alice"]
    prompt = lease(writing_project, alice)
    source = completion(prompt, 0)
    write(writing_project, alice, prompt, "First.", key="k1", source_completion_id=source.id)
    version, created = write(writing_project, alice, prompt, "Second.", key="k2",
                             base_revision=1)
    assert created and version.revision == 2
    stored = Demonstration.objects.get()
    assert (stored.text, stored.source_completion_id, stored.revision) == ("Second.", None, 2)
    [earlier] = stored.history
    assert {k: earlier[k] for k in ("revision", "text", "source_completion",
                                    "idempotency_key")} == {
        "revision": 1, "text": "First.", "source_completion": source.id,
        "idempotency_key": "k1"}
    # The count is of prompts' judgements: a revision adds none.
    assert Prompt.objects.get(id=prompt.id).ranking_count == 1


def test_an_old_key_replayed_answers_its_old_version(writing_project, writers):
    alice = writers["alice"]
    prompt = lease(writing_project, alice)
    write(writing_project, alice, prompt, "First.", key="k1")
    write(writing_project, alice, prompt, "Second.", key="k2")
    replay, created = write(writing_project, alice, prompt, "First.", key="k1")
    assert not created
    assert (replay.revision, replay.text) == (1, "First.")
    assert Demonstration.objects.get().revision == 2


def test_a_stale_base_revision_is_a_conflict_carrying_the_current(writing_project, writers):
    alice = writers["alice"]
    prompt = lease(writing_project, alice)
    write(writing_project, alice, prompt, "First.", key="k1")
    write(writing_project, alice, prompt, "Second.", key="k2", base_revision=1)
    with pytest.raises(Conflict, match="saved as revision 2 elsewhere") as refused:
        write(writing_project, alice, prompt, "Third.", key="k3", base_revision=1)
    assert refused.value.extra["current"] == {"revision": 2, "text": "Second.",
                                              "source_completion": None, "comment": ""}
    assert Demonstration.objects.get().text == "Second."


def test_a_base_revision_without_a_demonstration_is_a_conflict(writing_project, writers):
    prompt = lease(writing_project, writers["alice"])
    with pytest.raises(Conflict, match="no demonstration for this prompt"):
        write(writing_project, writers["alice"], prompt, base_revision=3)


# --- the API ------------------------------------------------------------------------------

def url(project) -> str:
    return reverse("api_demonstrations", args=[project.id])


def test_the_api_stores_a_demonstration_then_answers_a_replay(writing_project, writers, api):
    alice = writers["alice"]
    prompt = lease(writing_project, alice)
    source = completion(prompt, 1)
    body = {"prompt": prompt.id, "text": "Edited.", "source_completion": source.id,
            "idempotency_key": "k1", "comment": "shorter", "time_spent_ms": 5000}
    response = api(alice).post(url(writing_project), body, format="json")
    assert response.status_code == 201, response.json()
    stored = Demonstration.objects.get()
    assert response.json() == {"id": stored.id, "prompt": prompt.id, "revision": 1,
                               "text": "Edited.", "source_completion": source.id,
                               "comment": "shorter", "time_spent_ms": 5000,
                               "idempotency_key": "k1"}
    again = api(alice).post(url(writing_project), body, format="json")
    assert again.status_code == 201 and again.json() == response.json()
    revised = api(alice).post(url(writing_project), {**body, "idempotency_key": "k2",
                                                     "text": "Better.", "base_revision": 1},
                              format="json")
    assert revised.status_code == 200 and revised.json()["revision"] == 2


def test_the_api_says_what_is_wrong(writing_project, writers, api):
    prompt = lease(writing_project, writers["alice"])
    response = api(writers["alice"]).post(
        url(writing_project), {"prompt": prompt.id, "text": "  ", "idempotency_key": "k"},
        format="json")
    assert response.status_code == 400
    assert "text" in response.json()
    assert not Demonstration.objects.exists()


def test_the_api_refuses_a_rank_project_with_409(project, alice, api):
    prompt = Prompt.objects.create(project=project, text="Q")
    response = api(alice).post(url(project), {"prompt": prompt.id, "text": "Hi.",
                                              "idempotency_key": "k"}, format="json")
    assert response.status_code == 409
    assert "not demonstrations" in response.json()["detail"]


def test_the_api_hides_projects_from_non_members(writing_project, writers, dave, api):
    prompt = Prompt.objects.filter(project=writing_project).first()
    response = api(dave).post(url(writing_project), {"prompt": prompt.id, "text": "Hi.",
                                                     "idempotency_key": "k"}, format="json")
    assert response.status_code == 404
    assert api().post(url(writing_project), {}, format="json").status_code in (401, 403)
