"""Rate mode, the labeling side: a rating is a ranking whose tiers come from its scores.

Alice rates the completions of a helpfulness project on a 1..5 scale; Bob ranks in a
project that ranks. Every refusal names the field it is about (issue 17, item 1).
"""

import pytest

from annotate import services
from annotate.models import Assignment, Prompt, Ranking, RankingRevision
from config.errors import Conflict, Invalid

pytestmark = pytest.mark.django_db


def make_project(slug: str, **settings):
    project = services.project_create(
        created_by=None, slug=slug, name=slug.title(), criterion="helpfulness",
        completions_per_prompt=3, labelers_per_prompt=2, **settings)
    prompt = Prompt.objects.create(project=project, text="How do I boil an egg?")
    for position in range(3):
        prompt.completions.create(position=position, text=f"Answer {position}")
    return project


@pytest.fixture
def rating_project(db):
    return make_project("rated", annotation_mode="rate")


@pytest.fixture
def aspect_project(db):
    return make_project("aspects", annotation_mode="rate", rating_scale_min=0,
                        rating_scale_max=9, rating_aspects=["helpfulness", "honesty"])


@pytest.fixture
def ranking_project(db):
    return make_project("ranked")


@pytest.fixture
def alice(make_user, rating_project, aspect_project, ranking_project):
    user = make_user("alice")
    for project in (rating_project, aspect_project, ranking_project):
        services.membership_set(project=project, user=user, role="labeler")
    return user


def leased(project, labeler) -> tuple[int, list[int]]:
    """Lease the labeler the project's prompt; its id and its completions' ids."""
    prompt_id = services.assignment_next(project=project, labeler=labeler).prompt_id
    ids = list(Prompt.objects.get(id=prompt_id).completions.values_list("id", flat=True))
    return prompt_id, ids


def rate(project, labeler, prompt_id, scores, key="k1", **extra):
    return services.ranking_submit(project=project, labeler=labeler, prompt_id=prompt_id,
                                   scores=scores, idempotency_key=key, **extra)


def overall(ids, *values) -> dict:
    return {str(i): {"overall": value} for i, value in zip(ids, values, strict=True)}


# --- what is stored -----------------------------------------------------------------------

def test_a_rating_stores_the_scores_and_the_tiers_they_imply(rating_project, alice):
    prompt_id, (a, b, c) = leased(rating_project, alice)
    version, created = rate(rating_project, alice, prompt_id, overall([a, b, c], 2, 5, 2),
                            comment="b is the only one that answers")
    assert created and version.revision == 1
    ranking = Ranking.objects.get()
    assert ranking.scores == overall([a, b, c], 2, 5, 2)
    assert ranking.tiers == [[b], sorted([a, c])]  # equal scores tie
    assert ranking.comment == "b is the only one that answers"
    assert version.scores == ranking.scores
    assert Prompt.objects.get(id=prompt_id).ranking_count == 1


def test_bare_numbers_are_overall_scores(rating_project, alice):
    prompt_id, (a, b, c) = leased(rating_project, alice)
    rate(rating_project, alice, prompt_id, {str(a): 1, str(b): 3, str(c): 4})
    assert Ranking.objects.get().scores == overall([a, b, c], 1, 3, 4)
    assert Ranking.objects.get().tiers == [[c], [b], [a]]


def test_aspect_scores_are_ranked_by_their_mean(aspect_project, alice):
    prompt_id, (a, b, c) = leased(aspect_project, alice)
    scores = {str(a): {"helpfulness": 9, "honesty": 1}, str(b): {"helpfulness": 6,
              "honesty": 6}, str(c): {"helpfulness": 3, "honesty": 7}}
    rate(aspect_project, alice, prompt_id, scores)
    assert Ranking.objects.get().tiers == [[b], [a, c]]  # means 6, 5 and 5


# --- refusals, each naming its field ------------------------------------------------------

@pytest.mark.parametrize("scores, message", [
    (None, "scores: this project rates; give every completion a score"),
    ("empty", "scores must be an object of completion id -> scores"),
    ("list", "scores must be an object of completion id -> scores"),
    ("text", "scores must be an object of completion id -> scores"),
    ("stranger", "scores: '999' is not one of this prompt's completions"),
    ("first-two", "scores leave out completion"),
    ("six", "overall is 6, not a whole number from 1 to 5"),
    ("zero", "overall is 0, not a whole number from 1 to 5"),
    ("half", "overall is 2.5, not a whole number from 1 to 5"),
    ("true", "overall is True, not a whole number from 1 to 5"),
    ("aspect", "unknown aspect 'style'; this project scores overall"),
])
def test_scores_that_do_not_rate_the_prompt_are_refused(rating_project, alice, scores,
                                                         message):
    prompt_id, ids = leased(rating_project, alice)
    scores = {
        "empty": {},
        "list": [3, 3, 3],
        "text": "A:3",
        "stranger": {"999": 3},
        "first-two": {str(ids[0]): 3, str(ids[1]): 3},
        "six": overall(ids, 3, 6, 3),
        "zero": overall(ids, 3, 0, 3),
        "half": overall(ids, 3, 2.5, 3),
        "true": overall(ids, 3, True, 3),
        "aspect": {str(i): {"style": 3} for i in ids},
    }.get(scores, scores)
    with pytest.raises(Invalid) as refused:
        rate(rating_project, alice, prompt_id, scores)
    assert message in str(refused.value)
    assert str(refused.value).startswith("scores")
    assert refused.value.extra == {"field": "scores"}
    assert not Ranking.objects.exists()


def test_an_aspect_left_out_is_refused(aspect_project, alice):
    prompt_id, (a, b, c) = leased(aspect_project, alice)
    scores = {str(i): {"helpfulness": 5, "honesty": 5} for i in (a, b)}
    scores[str(c)] = {"helpfulness": 5}
    with pytest.raises(Invalid, match=f"scores: completion {c}: honesty is missing"):
        rate(aspect_project, alice, prompt_id, scores)
    with pytest.raises(Invalid, match="needs one score per aspect: helpfulness, honesty"):
        rate(aspect_project, alice, prompt_id, {str(i): 5 for i in (a, b, c)})
    assert not Ranking.objects.exists()


def test_a_rate_project_refuses_tiers(rating_project, alice):
    """The tiers come from the scores, so a client cannot send a ranking that contradicts
    them; sending both is refused too, whatever the tiers say."""
    prompt_id, (a, b, c) = leased(rating_project, alice)
    with pytest.raises(Invalid) as refused:
        services.ranking_submit(project=rating_project, labeler=alice, prompt_id=prompt_id,
                                tiers=[[a], [b], [c]], scores=overall([a, b, c], 5, 3, 1),
                                idempotency_key="k1")
    assert str(refused.value) == "tiers: this project rates; send scores, the tiers come " \
                                 "from them"
    assert refused.value.extra == {"field": "tiers"}
    assert not Ranking.objects.exists()


def test_a_rank_project_refuses_scores(ranking_project, alice):
    prompt_id, (a, b, c) = leased(ranking_project, alice)
    with pytest.raises(Invalid) as refused:
        services.ranking_submit(project=ranking_project, labeler=alice, prompt_id=prompt_id,
                                tiers=[[a], [b], [c]], scores=overall([a, b, c], 5, 3, 1),
                                idempotency_key="k1")
    assert str(refused.value) == "scores: this project ranks; scores are for rate projects"
    assert not Ranking.objects.exists()
    version, _ = services.ranking_submit(project=ranking_project, labeler=alice,
                                         prompt_id=prompt_id, tiers=[[a], [b], [c]],
                                         idempotency_key="k1")
    assert version.scores is None and Ranking.objects.get().scores is None


# --- retries and revisions ----------------------------------------------------------------

def test_a_retried_rating_is_answered_with_what_it_stored(rating_project, alice):
    prompt_id, ids = leased(rating_project, alice)
    first, created = rate(rating_project, alice, prompt_id, overall(ids, 4, 2, 1))
    again, created_again = rate(rating_project, alice, prompt_id, overall(ids, 4, 2, 1))
    assert created and not created_again
    assert again.id == first.id and again.scores == first.scores
    assert Ranking.objects.count() == 1 and not RankingRevision.objects.exists()


def test_a_key_sent_again_with_other_scores_is_refused(rating_project, alice):
    """Other scores with the same order of completions are another rating all the same."""
    prompt_id, ids = leased(rating_project, alice)
    rate(rating_project, alice, prompt_id, overall(ids, 4, 2, 1))
    with pytest.raises(Conflict, match="idempotency_key 'k1' was already used"):
        rate(rating_project, alice, prompt_id, overall(ids, 5, 3, 2))
    assert Ranking.objects.get().scores == overall(ids, 4, 2, 1)


def test_a_revision_keeps_the_old_scores(rating_project, alice):
    prompt_id, ids = leased(rating_project, alice)
    rate(rating_project, alice, prompt_id, overall(ids, 4, 2, 1), key="v1")
    version, created = rate(rating_project, alice, prompt_id, overall(ids, 1, 2, 4), key="v2",
                            base_revision=1)
    assert created and version.revision == 2
    ranking = Ranking.objects.get()
    assert ranking.scores == overall(ids, 1, 2, 4) and ranking.tiers == [[ids[2]], [ids[1]],
                                                                          [ids[0]]]
    old = RankingRevision.objects.get()
    assert old.revision == 1 and old.scores == overall(ids, 4, 2, 1)
    assert old.tiers == [[ids[0]], [ids[1]], [ids[2]]]
    # The key of the old version, sent again, answers with the old version.
    replayed, _ = rate(rating_project, alice, prompt_id, overall(ids, 4, 2, 1), key="v1")
    assert replayed.revision == 1 and replayed.scores == overall(ids, 4, 2, 1)


def test_a_rating_from_a_replaced_version_is_refused_with_the_current_scores(
        rating_project, alice):
    prompt_id, ids = leased(rating_project, alice)
    rate(rating_project, alice, prompt_id, overall(ids, 4, 2, 1), key="v1", base_revision=0)
    rate(rating_project, alice, prompt_id, overall(ids, 3, 3, 3), key="v2", base_revision=1)
    with pytest.raises(Conflict) as refused:
        rate(rating_project, alice, prompt_id, overall(ids, 1, 1, 5), key="v3",
             base_revision=1)
    current = refused.value.extra["current"]
    assert current["revision"] == 2 and current["scores"] == overall(ids, 3, 3, 3)
    assert current["tiers"] == [sorted(ids)]
    assert Ranking.objects.get().revision == 2


# --- the API ------------------------------------------------------------------------------

def test_the_next_prompt_says_what_to_send(rating_project, aspect_project, ranking_project,
                                           alice, api):
    client = api(alice)
    rated = client.get(f"/api/projects/{rating_project.id}/next-prompt/").json()["annotation"]
    assert rated == {"annotation_mode": "rate", "criterion": "helpfulness",
                     "rating_scale_min": 1, "rating_scale_max": 5,
                     "rating_aspects": ["overall"]}
    aspects = client.get(f"/api/projects/{aspect_project.id}/next-prompt/").json()["annotation"]
    assert aspects["rating_aspects"] == ["helpfulness", "honesty"]
    assert (aspects["rating_scale_min"], aspects["rating_scale_max"]) == (0, 9)
    ranked = client.get(f"/api/projects/{ranking_project.id}/next-prompt/").json()["annotation"]
    assert ranked["annotation_mode"] == "rank"
    project = client.get(f"/api/projects/{aspect_project.id}/").json()
    assert project["annotation_mode"] == "rate"
    assert project["rating_aspects"] == ["helpfulness", "honesty"]


def test_a_rating_through_the_api(rating_project, alice, api):
    client = api(alice)
    body = client.get(f"/api/projects/{rating_project.id}/next-prompt/").json()
    prompt_id = body["prompt"]["id"]
    ids = [c["id"] for c in body["completions"]]
    url = f"/api/projects/{rating_project.id}/rankings/"
    saved = client.post(url, {"prompt": prompt_id, "scores": overall(ids, 5, 1, 3),
                              "idempotency_key": "api-1"}, format="json")
    assert saved.status_code == 201
    assert saved.json()["scores"] == overall(ids, 5, 1, 3)
    assert saved.json()["tiers"] == [[ids[0]], [ids[2]], [ids[1]]]
    refused = client.post(url, {"prompt": prompt_id, "scores": overall(ids, 5, 9, 3),
                                "idempotency_key": "api-2"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith(f"scores: completion {ids[1]}: overall is 9")
    assert refused.json()["field"] == "scores"
    no_scores = client.post(url, {"prompt": prompt_id, "tiers": [[i] for i in ids],
                                  "idempotency_key": "api-3"}, format="json")
    assert no_scores.status_code == 400 and no_scores.json()["field"] == "tiers"
    assert Ranking.objects.get().revision == 1


def test_a_ranking_through_the_api_shows_no_scores(ranking_project, alice, api):
    client = api(alice)
    body = client.get(f"/api/projects/{ranking_project.id}/next-prompt/").json()
    ids = [c["id"] for c in body["completions"]]
    saved = client.post(f"/api/projects/{ranking_project.id}/rankings/", {
        "prompt": body["prompt"]["id"], "tiers": [[i] for i in ids],
        "idempotency_key": "api-1"}, format="json")
    assert saved.status_code == 201 and saved.json()["scores"] is None
    missing = client.post(f"/api/projects/{ranking_project.id}/rankings/", {
        "prompt": body["prompt"]["id"], "idempotency_key": "api-2"}, format="json")
    assert missing.status_code == 400
    assert "tiers must be a non-empty list" in missing.json()["detail"]



def test_the_project_page_offers_to_start_rating(rating_project, ranking_project, alice,
                                                  client):
    client.force_login(alice)
    assert "Start rating" in client.get(f"/projects/{rating_project.slug}/").content.decode()
    assert "Start ranking" in client.get(f"/projects/{ranking_project.slug}/").content.decode()
    assert "Start rating" in client.get("/").content.decode()


def test_a_rating_with_next_brings_the_next_prompt_in_rate_terms(rating_project, alice, api):
    # A second prompt, so one is left after the first rating.
    second = Prompt.objects.create(project=rating_project, text="And a poached one?")
    for position in range(3):
        second.completions.create(position=position, text=f"Poach {position}")
    client = api(alice)
    first = client.get(f"/api/projects/{rating_project.id}/next-prompt/").json()
    ids = [c["id"] for c in first["completions"]]
    url = f"/api/projects/{rating_project.id}/rankings/?next=true"
    saved = client.post(url, {"prompt": first["prompt"]["id"], "scores": overall(ids, 5, 1, 3),
                              "idempotency_key": "n-1"}, format="json")
    assert saved.status_code == 201 and saved.json()["scores"] == overall(ids, 5, 1, 3)
    carried = saved.json()["next"]
    assert carried["annotation"]["annotation_mode"] == "rate"
    assert carried["prompt"]["id"] != first["prompt"]["id"]
    assert client.get(f"/api/projects/{rating_project.id}/next-prompt/").json() == carried
    # A refused rating carries nothing and leases nothing more.
    ids = [c["id"] for c in carried["completions"]]
    refused = client.post(url, {"prompt": carried["prompt"]["id"],
                                "scores": overall(ids, 5, 9, 3), "idempotency_key": "n-2"},
                          format="json")
    assert refused.status_code == 400 and "next" not in refused.json()
    assert Assignment.objects.filter(labeler=alice, status="leased").count() == 1
