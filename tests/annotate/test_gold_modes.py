"""Gold prompts in rate and demonstrate projects (issue 17).

In a rate project a gold prompt's reference is a ranking, and a labeler's rating is scored
by the tiers its scores imply: equal scores are a tie, which agrees with a tie in the
reference and disagrees with an order. A demonstrate project takes no gold: a written
response has no ranking to compare. Carol administers, Alice labels.
"""

import io

import pytest

from annotate import services
from annotate.models import Membership, Prompt
from annotate.quality import project_quality
from config.errors import Invalid
from tests.factories import jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db


def make_project(slug: str, mode: str):
    project = services.project_create(
        created_by=None, slug=slug, name=slug.title(), criterion="helpfulness",
        completions_per_prompt=3, labelers_per_prompt=1, annotation_mode=mode,
        onboarding_gold_count=1)
    prompt = Prompt.objects.create(project=project, text="How do I boil an egg?")
    ids = [prompt.completions.create(position=n, text=f"Answer {n}").id for n in range(3)]
    return project, prompt, ids


@pytest.fixture
def people(make_user):
    return make_user("alice"), make_user("carol")


def join(project, alice, carol):
    services.membership_set(project=project, user=alice, role=Membership.Role.LABELER)
    services.membership_set(project=project, user=carol, role=Membership.Role.ADMIN)


def rate_gold(api, project, alice, prompt, scores: dict) -> dict:
    base = f"/api/projects/{project.id}"
    assert api(alice).get(f"{base}/next-prompt/").json()["prompt"]["id"] == prompt.id
    answer = api(alice).post(f"{base}/rankings/", {
        "prompt": prompt.id, "idempotency_key": "g1",
        "scores": {str(i): value for i, value in scores.items()}}, format="json")
    assert answer.status_code == 201, answer.json()
    return answer.json()["gold_feedback"]


def test_a_rating_of_a_gold_prompt_is_scored_by_the_tiers_its_scores_imply(people, api):
    alice, carol = people
    project, prompt, (a, b, c) = make_project("rated", "rate")
    join(project, alice, carol)
    services.prompt_gold_set(project=project, prompt_id=prompt.id, tiers=[[a], [b], [c]],
                             mode="ranking")
    # b and c scored alike: their tie disagrees with the reference's b > c; a > b, a > c agree.
    feedback = rate_gold(api, project, alice, prompt, {a: 5, b: 3, c: 3})
    assert feedback["reference"] == [[a], [b], [c]]
    assert feedback["accuracy"] == pytest.approx(2 / 3)
    alice_quality = next(q for q in project_quality(project).labelers if q.user_id == alice.id)
    assert alice_quality.gold_scores == [pytest.approx(2 / 3)]


def test_a_tie_at_the_top_misses_a_best_only_reference(people, api):
    alice, carol = people
    project, prompt, (a, b, c) = make_project("best", "rate")
    join(project, alice, carol)
    services.prompt_gold_set(project=project, prompt_id=prompt.id, tiers=[[a], [b, c]],
                             mode="best")
    assert rate_gold(api, project, alice, prompt, {a: 4, b: 4, c: 1})["accuracy"] == 0.0


def test_a_demonstrate_project_refuses_gold_saying_why(people, api, client):
    alice, carol = people
    project, prompt, (a, b, c) = make_project("writing", "demonstrate")
    join(project, alice, carol)
    url = f"/api/projects/{project.id}/prompts/{prompt.id}/gold/"
    refused = api(carol).put(url, {"tiers": [[a], [b, c]], "mode": "best"}, format="json")
    assert refused.status_code == 400
    assert "A demonstrate project takes no gold prompts" in refused.json()["detail"]
    with pytest.raises(Invalid, match="no reference ranking can score"):
        services.prompt_gold_mark(project=project, prompt_id=prompt.id, reference=f"best:{a}")
    prompt.refresh_from_db()
    assert not prompt.is_gold
    # The prompt page says so instead of offering the form.
    client.force_login(carol)
    page = client.get(f"/projects/{project.slug}/prompts/{prompt.id}/").content.decode()
    assert 'id="gold-unavailable"' in page and 'id="gold-mark"' not in page


def test_an_import_marking_gold_in_a_demonstrate_project_is_refused_at_its_line(people):
    project, _, _ = make_project("writing", "demonstrate")
    records = [prompt_record(i, k=3) for i in range(3)]
    records[1]["gold"] = {"tiers": [[0], [1, 2]], "mode": "best"}
    with pytest.raises(services.ImportRejected) as caught:
        services.prompts_import(project=project, binary=io.BytesIO(jsonl_bytes(records)),
                                filename="gold.jsonl")
    assert "gold.jsonl, line 2, field 'gold': a demonstrate project takes no gold prompts" in str(
        caught.value)
    assert project.prompts.count() == 1  # only make_project's own: nothing of the file
    # Without the gold mark the same file imports; in a rank project the mark makes gold.
    del records[1]["gold"]
    services.prompts_import(project=project, binary=io.BytesIO(jsonl_bytes(records)),
                            filename="plain.jsonl")
    assert project.prompts.count() == 4
    ranked, _, _ = make_project("ranked", "rank")
    records[1]["gold"] = {"tiers": [[0], [1, 2]], "mode": "best"}
    services.prompts_import(project=ranked, binary=io.BytesIO(jsonl_bytes(records)),
                            filename="gold.jsonl")
    assert ranked.prompts.filter(external_id="p1").get().is_gold
