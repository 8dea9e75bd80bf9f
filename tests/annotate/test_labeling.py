"""Handing out prompts, taking rankings and skips: the labeling rules, told as stories."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate import services
from annotate.models import Assignment, Prompt, Ranking, RankingRevision
from config.errors import ApplicationError, status_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_project(db):
    """Two prompts of 3 completions, ranked by 2 labelers each, ties allowed."""
    project = services.project_create(
        created_by=None, slug="small", name="Small", criterion="helpfulness",
        completions_per_prompt=3, labelers_per_prompt=2, allow_ties=True, lease_minutes=30,
    )
    for index in range(2):
        prompt = Prompt.objects.create(project=project, text=f"Q{index}", external_id=f"q{index}")
        for position in range(3):
            prompt.completions.create(position=position, text=f"A{index}.{position}")
    return project


@pytest.fixture
def labelers(small_project, make_user):
    users = {}
    for name in ("alice", "bob", "carol", "dave"):
        users[name] = make_user(name)
        services.membership_set(project=small_project, user=users[name], role="labeler")
    return users


def ids_of(prompt_id: int) -> list[int]:
    return list(Prompt.objects.get(id=prompt_id).completions.values_list("id", flat=True))


def rank(project, labeler, prompt_id, key=None, order=None, **extra):
    """Submit a strict ranking in `order` (default: the completions' own order)."""
    order = order or ids_of(prompt_id)
    return services.ranking_submit(
        project=project, labeler=labeler, prompt_id=prompt_id, tiers=[[i] for i in order],
        idempotency_key=key or f"{labeler.username}-{prompt_id}-{len(order)}", **extra,
    )


def next_prompt_id(project, labeler, **kwargs) -> int | None:
    assignment = services.assignment_next(project=project, labeler=labeler, **kwargs)
    return assignment.prompt_id if assignment else None


# --- handing out prompts ------------------------------------------------------------------

def test_a_lease_lasts_the_projects_lease_time_and_is_resumed(small_project, labelers):
    alice = labelers["alice"]
    before = timezone.now()
    lease = services.assignment_next(project=small_project, labeler=alice)
    assert lease.status == "leased"
    assert lease.expires_at - lease.leased_at == timedelta(minutes=30)
    assert lease.leased_at >= before
    again = services.assignment_next(project=small_project, labeler=alice)
    assert again.id == lease.id


def test_prompts_already_started_come_before_fresh_ones(small_project, labelers):
    alice, bob = labelers["alice"], labelers["bob"]
    first = next_prompt_id(small_project, alice)
    rank(small_project, alice, first)
    # Bob gets the prompt Alice started, not the untouched one.
    assert next_prompt_id(small_project, bob) == first


def test_a_labeler_never_gets_a_prompt_they_ranked_or_skipped(small_project, labelers):
    alice = labelers["alice"]
    first = next_prompt_id(small_project, alice)
    rank(small_project, alice, first)
    second = next_prompt_id(small_project, alice)
    assert second != first
    services.prompt_skip(project=small_project, labeler=alice, prompt_id=second, reason="unclear")
    assert next_prompt_id(small_project, alice) is None


def test_open_leases_hold_slots_and_expired_ones_free_them(small_project, labelers):
    alice, bob, carol = labelers["alice"], labelers["bob"], labelers["carol"]
    now = timezone.now()
    a1 = next_prompt_id(small_project, alice, now=now)
    b1 = next_prompt_id(small_project, bob, now=now)
    assert a1 == b1  # the started prompt first: both of its slots are now held
    c1 = next_prompt_id(small_project, carol, now=now)
    assert c1 != a1  # no third slot on a1
    # Dave takes the second slot of Carol's prompt, and then nothing is left.
    assert next_prompt_id(small_project, labelers["dave"], now=now) == c1
    # After the leases expire, the prompts go back to the pool.
    later = now + timedelta(minutes=31)
    eve = services.member_add(project=small_project, username="eve").user
    assert next_prompt_id(small_project, eve, now=now) is None
    assert next_prompt_id(small_project, eve, now=later) in {a1, c1}


# --- rankings -----------------------------------------------------------------------------

def test_a_ranking_closes_the_lease_and_counts_on_the_prompt(small_project, labelers):
    alice = labelers["alice"]
    prompt_id = next_prompt_id(small_project, alice)
    order = list(reversed(ids_of(prompt_id)))
    ranking, created = rank(small_project, alice, prompt_id, order=order, time_spent_ms=5100,
                            comment="close call", displayed_order=order,
                            flags={str(order[2]): ["factually_wrong"]})
    assert created and ranking.revision == 1
    stored = Ranking.objects.get(id=ranking.id)
    assert stored.tiers == [[i] for i in order]
    assert (stored.time_spent_ms, stored.comment) == (5100, "close call")
    assert stored.flags == {str(order[2]): ["factually_wrong"]}
    assert stored.displayed_order == order
    assert Assignment.objects.get(prompt_id=prompt_id, labeler=alice).status == "ranked"
    assert Prompt.objects.get(id=prompt_id).ranking_count == 1


@pytest.mark.parametrize(
    ("make_tiers", "message"),
    [
        (lambda ids: [[ids[0]], [ids[1]]], "leave out completion"),
        (lambda ids: [[ids[0]], [ids[1]], [ids[2]], [999999]], "not one of this prompt's"),
        (lambda ids: [[ids[0]], [ids[0]], [ids[1]], [ids[2]]], "more than once"),
        (lambda ids: "first", "non-empty list"),
    ],
)
def test_bad_tiers_are_refused_with_a_clear_message(small_project, labelers, make_tiers, message):
    alice = labelers["alice"]
    prompt_id = next_prompt_id(small_project, alice)
    with pytest.raises(ApplicationError, match=message) as caught:
        services.ranking_submit(project=small_project, labeler=alice, prompt_id=prompt_id,
                                tiers=make_tiers(ids_of(prompt_id)), idempotency_key="k")
    assert status_of(caught.value) == 400
    assert not Ranking.objects.exists()
    # The lease stays open (the refusal came after it was closed, and rolled that back).
    lease = Assignment.objects.get(prompt_id=prompt_id, labeler=alice)
    assert (lease.status, lease.closed_at) == ("leased", None)


def test_ties_are_refused_where_the_project_forbids_them(small_project, labelers):
    small_project.allow_ties = False
    small_project.save()
    alice = labelers["alice"]
    prompt_id = next_prompt_id(small_project, alice)
    ids = ids_of(prompt_id)
    with pytest.raises(ApplicationError, match="forbids ties"):
        services.ranking_submit(project=small_project, labeler=alice, prompt_id=prompt_id,
                                tiers=[[ids[0], ids[1]], [ids[2]]], idempotency_key="k")


def test_a_prompt_not_leased_to_the_labeler_is_404(small_project, labelers, other_project):
    alice = labelers["alice"]
    prompt = Prompt.objects.first()
    with pytest.raises(ApplicationError) as caught:
        rank(small_project, alice, prompt.id)
    assert status_of(caught.value) == 404
    foreign = Prompt.objects.create(project=other_project, text="elsewhere")
    with pytest.raises(ApplicationError) as caught:
        rank(small_project, alice, foreign.id, order=[1, 2, 3])
    assert status_of(caught.value) == 404


def test_a_retried_submission_stores_nothing_new_and_returns_the_same_version(
    small_project, labelers
):
    alice = labelers["alice"]
    prompt_id = next_prompt_id(small_project, alice)
    first, created = rank(small_project, alice, prompt_id, key="same-key")
    again, created_again = rank(small_project, alice, prompt_id, key="same-key")
    assert (created, created_again) == (True, False)
    assert again.id == first.id and again.tiers == first.tiers
    assert Ranking.objects.count() == 1 and not RankingRevision.objects.exists()


def test_a_key_reused_for_another_ranking_is_a_409_and_nothing_is_lost(small_project,
                                                                        labelers):
    """A key names one submission. Sent again with other tiers, or for another prompt, it
    is refused by name: the client learns that nothing was stored for it."""
    alice = labelers["alice"]
    prompt_id = next_prompt_id(small_project, alice)
    first, _ = rank(small_project, alice, prompt_id, key="k1")
    with pytest.raises(ApplicationError) as other_tiers:
        rank(small_project, alice, prompt_id, key="k1", order=list(reversed(ids_of(prompt_id))))
    assert status_of(other_tiers.value) == 409
    assert str(other_tiers.value) == (
        "idempotency_key 'k1' was already used for another version (revision 1) of your "
        "ranking of this prompt; send a new key with each new submission")
    second_id = next_prompt_id(small_project, alice)
    with pytest.raises(ApplicationError) as other_prompt:
        rank(small_project, alice, second_id, key="k1")
    assert status_of(other_prompt.value) == 409
    assert f"already used for your ranking of prompt {prompt_id}" in str(other_prompt.value)
    assert list(Ranking.objects.values_list("prompt_id", "tiers")) == [(prompt_id, first.tiers)]
    # The labeler's second ranking is still theirs to send, with a key of its own.
    stored, created = rank(small_project, alice, second_id, key="k2")
    assert created and stored.prompt_id == second_id


def test_a_revision_keeps_the_earlier_version(small_project, labelers):
    alice = labelers["alice"]
    prompt_id = next_prompt_id(small_project, alice)
    ids = ids_of(prompt_id)
    first, _ = rank(small_project, alice, prompt_id, key="v1", comment="first thoughts")
    revised, created = rank(small_project, alice, prompt_id, key="v2", order=ids[::-1])
    assert created and revised.id == first.id and revised.revision == 2
    assert revised.tiers == [[i] for i in ids[::-1]]
    [old] = RankingRevision.objects.filter(ranking=revised.ranking)
    assert (old.revision, old.tiers, old.comment, old.idempotency_key) == (
        1, [[i] for i in ids], "first thoughts", "v1")
    # Replaying the first request returns the first version, and changes nothing.
    replay, created = rank(small_project, alice, prompt_id, key="v1", comment="first thoughts")
    assert not created and replay.revision == 1 and replay.tiers == [[i] for i in ids]
    assert Ranking.objects.get().revision == 2
    assert Prompt.objects.get(id=prompt_id).ranking_count == 1


def test_a_frozen_project_takes_no_rankings_or_revisions(small_project, labelers):
    alice = labelers["alice"]
    prompt_id = next_prompt_id(small_project, alice)
    rank(small_project, alice, prompt_id, key="v1")
    small_project.is_frozen = True
    small_project.save()
    with pytest.raises(ApplicationError, match="frozen") as caught:
        rank(small_project, alice, prompt_id, key="v2", order=ids_of(prompt_id)[::-1])
    assert status_of(caught.value) == 409
    assert Ranking.objects.get().revision == 1


def test_an_expired_lease_still_counts_if_its_slot_is_free(small_project, labelers):
    alice = labelers["alice"]
    now = timezone.now()
    prompt_id = next_prompt_id(small_project, alice, now=now)
    ranking, _ = rank(small_project, alice, prompt_id, now=now + timedelta(hours=2))
    assert ranking.prompt_id == prompt_id


def test_an_expired_lease_whose_slot_was_taken_is_refused(small_project, labelers):
    alice, bob, carol = labelers["alice"], labelers["bob"], labelers["carol"]
    now = timezone.now()
    prompt_id = next_prompt_id(small_project, alice, now=now)
    later = now + timedelta(minutes=31)
    assert next_prompt_id(small_project, bob, now=later) == prompt_id
    assert next_prompt_id(small_project, carol, now=later) == prompt_id  # Alice's slot, retaken
    rank(small_project, bob, prompt_id, now=later)
    rank(small_project, carol, prompt_id, now=later)
    with pytest.raises(ApplicationError, match="expired") as caught:
        rank(small_project, alice, prompt_id, now=later)
    assert status_of(caught.value) == 409
    assert Prompt.objects.get(id=prompt_id).ranking_count == 2


def test_a_renewed_lease_keeps_the_slot(small_project, labelers):
    alice = labelers["alice"]
    now = timezone.now()
    prompt_id = next_prompt_id(small_project, alice, now=now)
    renewed = services.lease_renew(project=small_project, labeler=alice, prompt_id=prompt_id,
                                   now=now + timedelta(minutes=25))
    assert renewed.expires_at == now + timedelta(minutes=55)


# --- skips --------------------------------------------------------------------------------

def test_a_skip_needs_a_reason_and_frees_the_slot(small_project, labelers):
    alice, bob, carol = labelers["alice"], labelers["bob"], labelers["carol"]
    prompt_id = next_prompt_id(small_project, alice)
    with pytest.raises(ApplicationError, match="why"):
        services.prompt_skip(project=small_project, labeler=alice, prompt_id=prompt_id, reason=" ")
    next_prompt_id(small_project, bob)  # second slot of the same prompt
    services.prompt_skip(project=small_project, labeler=alice, prompt_id=prompt_id,
                         reason="needs domain knowledge")
    skipped = Assignment.objects.get(prompt_id=prompt_id, labeler=alice)
    assert (skipped.status, skipped.skip_reason) == ("skipped", "needs domain knowledge")
    assert next_prompt_id(small_project, carol) == prompt_id


def test_a_ranked_prompt_cannot_be_skipped(small_project, labelers):
    alice = labelers["alice"]
    prompt_id = next_prompt_id(small_project, alice)
    rank(small_project, alice, prompt_id)
    with pytest.raises(ApplicationError) as caught:
        services.prompt_skip(project=small_project, labeler=alice, prompt_id=prompt_id, reason="x")
    assert status_of(caught.value) == 404


# --- adaptive overlap ---------------------------------------------------------------------

def test_adaptive_overlap_asks_for_more_rankings_when_labelers_disagree(small_project, labelers):
    small_project.adaptive_overlap = True
    small_project.adaptive_min_agreement = 0.9
    small_project.adaptive_max_labelers = 3
    small_project.save()
    alice, bob, carol, dave = (labelers[n] for n in ("alice", "bob", "carol", "dave"))
    prompt_id = next_prompt_id(small_project, alice)
    assert next_prompt_id(small_project, bob) == prompt_id
    ids = ids_of(prompt_id)
    rank(small_project, alice, prompt_id, order=ids)
    rank(small_project, bob, prompt_id, order=ids[::-1])  # total disagreement
    assert Prompt.objects.get(id=prompt_id).extra_rankings == 1
    assert next_prompt_id(small_project, carol) == prompt_id
    rank(small_project, carol, prompt_id, order=ids)
    prompt = Prompt.objects.get(id=prompt_id)
    assert (prompt.ranking_count, prompt.extra_rankings) == (3, 1)  # the maximum: no more
    assert next_prompt_id(small_project, dave) != prompt_id


def test_without_adaptive_overlap_disagreement_asks_for_nothing(small_project, labelers):
    alice, bob = labelers["alice"], labelers["bob"]
    prompt_id = next_prompt_id(small_project, alice)
    next_prompt_id(small_project, bob)
    ids = ids_of(prompt_id)
    rank(small_project, alice, prompt_id, order=ids)
    rank(small_project, bob, prompt_id, order=ids[::-1])
    assert Prompt.objects.get(id=prompt_id).extra_rankings == 0


# --- API and pages ------------------------------------------------------------------------

def test_next_prompt_api_hands_out_then_answers_204(small_project, labelers, api):
    client = api(labelers["alice"])
    url = f"/api/projects/{small_project.id}/next-prompt/"
    body = client.get(url).json()
    assert len(body["completions"]) == 3 and body["expires_at"]
    assert client.get(url).json()["prompt"]["id"] == body["prompt"]["id"]  # resumed
    order = [c["id"] for c in body["completions"]]
    posted = client.post(f"/api/projects/{small_project.id}/rankings/", {
        "prompt": body["prompt"]["id"], "tiers": [[i] for i in order], "idempotency_key": "a1",
        "displayed_order": order}, format="json")
    assert posted.status_code == 201
    second = client.get(url).json()["prompt"]["id"]
    client.post(f"/api/projects/{small_project.id}/skips/", {"prompt": second, "reason": "x"},
                format="json")
    assert client.get(url).status_code == 204


def test_the_display_order_is_shuffled_per_labeler_and_stable(small_project, labelers, api):
    orders = {}
    for name in ("alice", "bob"):
        client = api(labelers[name])
        url = f"/api/projects/{small_project.id}/next-prompt/"
        first = [c["id"] for c in client.get(url).json()["completions"]]
        assert [c["id"] for c in client.get(url).json()["completions"]] == first
        orders[name] = first
    seeds = set(Assignment.objects.values_list("seed", flat=True))
    assert len(seeds) == 2  # each labeler has their own order seed


def test_ranking_api_answers_400_404_and_replays(small_project, labelers, api):
    client = api(labelers["alice"])
    base = f"/api/projects/{small_project.id}"
    prompt_id = client.get(f"{base}/next-prompt/").json()["prompt"]["id"]
    ids = ids_of(prompt_id)
    body = {"prompt": prompt_id, "tiers": [[ids[0]]], "idempotency_key": "k1"}
    response = client.post(f"{base}/rankings/", body, format="json")
    assert response.status_code == 400 and "leave out completion" in response.json()["detail"]
    other = Prompt.objects.exclude(id=prompt_id).first()
    response = client.post(f"{base}/rankings/", {**body, "prompt": other.id}, format="json")
    assert response.status_code == 404
    body["tiers"] = [[i] for i in ids]
    first = client.post(f"{base}/rankings/", body, format="json")
    replay = client.post(f"{base}/rankings/", body, format="json")
    assert first.status_code == replay.status_code == 201
    assert first.json() == replay.json()
    assert client.post(f"{base}/rankings/", {"prompt": prompt_id, "tiers": []},
                       format="json").status_code == 400  # no idempotency key
    assert Ranking.objects.count() == 1


def test_a_ranking_with_next_answers_the_next_prompt_as_next_prompt_gives_it(small_project,
                                                                            labelers, api):
    client = api(labelers["alice"])
    base = f"/api/projects/{small_project.id}"
    first = client.get(f"{base}/next-prompt/").json()
    order = [c["id"] for c in first["completions"]]
    body = {"prompt": first["prompt"]["id"], "tiers": [[i] for i in order],
            "idempotency_key": "n1", "displayed_order": order}
    posted = client.post(f"{base}/rankings/?next=true", body, format="json")
    assert posted.status_code == 201
    answer = posted.json()
    assert Ranking.objects.get(id=answer["id"]).tiers == answer["tiers"]
    carried = answer["next"]
    assert carried["prompt"]["id"] != first["prompt"]["id"]
    # It is the lease next-prompt resumes, in the same order, with the same expiry.
    assert client.get(f"{base}/next-prompt/").json() == carried
    # A retry of the same key stores nothing and carries the same open lease again.
    replay = client.post(f"{base}/rankings/?next=1", body, format="json").json()
    assert replay["id"] == answer["id"] and replay["next"] == carried
    # Without the parameter the answer is as it always was.
    assert "next" not in client.post(f"{base}/rankings/", body, format="json").json()
    order = [c["id"] for c in carried["completions"]]
    last = client.post(f"{base}/rankings/?next=true", {
        "prompt": carried["prompt"]["id"], "tiers": [[i] for i in order],
        "idempotency_key": "n2"}, format="json")
    assert last.status_code == 201 and last.json()["next"] is None  # nothing left
    assert Ranking.objects.filter(labeler=labelers["alice"]).count() == 2


def test_a_refused_ranking_with_next_leases_nothing_and_a_bad_next_is_400(small_project,
                                                                          labelers, api):
    client = api(labelers["alice"])
    base = f"/api/projects/{small_project.id}"
    prompt_id = client.get(f"{base}/next-prompt/").json()["prompt"]["id"]
    ids = ids_of(prompt_id)
    refused = client.post(f"{base}/rankings/?next=true", {
        "prompt": prompt_id, "tiers": [[ids[0]]], "idempotency_key": "r1"}, format="json")
    assert refused.status_code == 400 and "next" not in refused.json()
    assert Assignment.objects.filter(labeler=labelers["alice"]).count() == 1
    full = {"prompt": prompt_id, "tiers": [[i] for i in ids], "idempotency_key": "r2"}
    for bad in ("yes", "", "true&next=true"):
        answer = client.post(f"{base}/rankings/?next={bad}", full, format="json")
        assert answer.status_code == 400, bad
        assert "next" in str(answer.json()), answer.json()
    assert not Ranking.objects.exists()
    answer = client.post(f"{base}/rankings/?next=false", full, format="json")
    assert answer.status_code == 201 and "next" not in answer.json()


def test_a_skip_with_next_answers_the_next_prompt(small_project, labelers, api):
    alice, bob = api(labelers["alice"]), api(labelers["bob"])
    base = f"/api/projects/{small_project.id}"
    # Without the parameter: 201 and no body, as always.
    first = bob.get(f"{base}/next-prompt/").json()["prompt"]["id"]
    plain = bob.post(f"{base}/skips/", {"prompt": first, "reason": "unclear"}, format="json")
    assert plain.status_code == 201 and not plain.content
    first = alice.get(f"{base}/next-prompt/").json()["prompt"]["id"]
    skipped = alice.post(f"{base}/skips/?next=true", {"prompt": first, "reason": "unclear"},
                         format="json")
    assert skipped.status_code == 201
    second = skipped.json()["next"]["prompt"]["id"]
    assert second != first
    assert alice.get(f"{base}/next-prompt/").json()["prompt"]["id"] == second
    last = alice.post(f"{base}/skips/?next=true", {"prompt": second, "reason": "unclear"},
                      format="json")
    assert last.status_code == 201 and last.json() == {"next": None}


def test_labeling_apis_of_another_project_are_404(small_project, dave, api):
    client = api(dave)  # the conftest's dave labels the other project only
    base = f"/api/projects/{small_project.id}"
    assert client.get(f"{base}/next-prompt/").status_code == 404
    assert client.get(f"{base}/progress/").status_code == 404
    prompt = Prompt.objects.filter(project=small_project).first()
    assert client.post(f"{base}/rankings/", {"prompt": prompt.id, "tiers": [[1]],
                                             "idempotency_key": "x"},
                       format="json").status_code == 404


def test_progress_counts_mine_and_the_projects(small_project, labelers, api):
    alice, bob = labelers["alice"], labelers["bob"]
    prompt_id = next_prompt_id(small_project, alice)
    rank(small_project, alice, prompt_id)
    next_prompt_id(small_project, alice)
    next_prompt_id(small_project, bob)
    progress = api(alice).get(f"/api/projects/{small_project.id}/progress/").json()
    assert progress == {"done": 1, "skipped": 0, "assigned": 1, "project_ranked": 1,
                        "project_needed": 4, "left": 3}


def test_rank_pages_redirect_to_the_lease_and_404_other_prompts(small_project, labelers, client):
    alice = labelers["alice"]
    client.force_login(alice)
    response = client.get(f"/projects/{small_project.slug}/rank/")
    assert response.status_code == 302
    prompt_id = Assignment.objects.get(labeler=alice).prompt_id
    assert response["Location"] == f"/projects/{small_project.slug}/rank/{prompt_id}/"
    page = client.get(response["Location"])
    assert page.status_code == 200 and b'id="rank-data"' in page.content
    other = Prompt.objects.exclude(id=prompt_id).get()
    assert client.get(f"/projects/{small_project.slug}/rank/{other.id}/").status_code == 404


def test_the_labelers_home_offers_to_start_then_resume(small_project, labelers, client):
    client.force_login(labelers["alice"])
    assert b"Start ranking" in client.get("/").content
    next_prompt_id(small_project, labelers["alice"])
    assert b"Resume" in client.get("/").content


def test_the_rank_done_page_when_nothing_is_left(small_project, labelers, client):
    alice = labelers["alice"]
    for _ in range(2):
        prompt_id = next_prompt_id(small_project, alice)
        rank(small_project, alice, prompt_id)
    client.force_login(alice)
    page = client.get(f"/projects/{small_project.slug}/rank/")
    assert page.status_code == 200 and b"Nothing left to rank" in page.content
    listing = client.get(f"/projects/{small_project.slug}/my-rankings/")
    assert listing.content.count(b"Revise") == 2



def test_a_submission_from_a_replaced_version_is_refused_with_the_current_one(
        small_project, labelers, api):
    """A revision names the version it replaces: from a stale tab it answers 409 with the
    stored version, and nothing is overwritten (issue 15, item 6)."""
    alice = labelers["alice"]
    prompt_id = next_prompt_id(small_project, alice)
    ids = ids_of(prompt_id)
    rank(small_project, alice, prompt_id, key="v1", base_revision=0)
    rank(small_project, alice, prompt_id, key="v2", order=ids[::-1], base_revision=1)
    client = api(alice)
    stale = client.post(f"/api/projects/{small_project.id}/rankings/", {
        "prompt": prompt_id, "tiers": [[ids[1]], [ids[0]], [ids[2]]], "idempotency_key": "v3",
        "base_revision": 1}, format="json")
    assert stale.status_code == 409
    body = stale.json()
    assert body["current"] == {"revision": 2, "tiers": [[i] for i in ids[::-1]],
                               "scores": None, "flags": {}, "comment": ""}
    assert "saved as revision 2 elsewhere" in body["detail"]
    assert Ranking.objects.get().revision == 2 and RankingRevision.objects.count() == 1
    with pytest.raises(ApplicationError) as not_yet:
        rank(small_project, alice, next_prompt_id(small_project, alice), key="x",
             base_revision=3)
    assert status_of(not_yet.value) == 409
    # Told, the labeler saves over it by naming the version they have now seen.
    saved = client.post(f"/api/projects/{small_project.id}/rankings/", {
        "prompt": prompt_id, "tiers": [[ids[1]], [ids[0]], [ids[2]]], "idempotency_key": "v3",
        "base_revision": 2}, format="json")
    assert saved.status_code == 200 and saved.json()["revision"] == 3
