"""Gold prompts: known answers mixed into labelers' queues, and onboarding with feedback."""

import io

import pytest

from annotate import services
from annotate.models import Prompt
from tests.factories import jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db


def import_prompts(project, records):
    return services.prompts_import(project=project, binary=io.BytesIO(jsonl_bytes(records)),
                                   filename="p.jsonl")


@pytest.fixture
def gold_project(project):
    """Four regular prompts and two gold ones (reference: completion 2, then 0, 1, 3)."""
    project.labelers_per_prompt = 1
    project.gold_rate = 0.0
    project.save()
    records = [prompt_record(i) for i in range(4)]
    records += [prompt_record(10 + i, gold={"tiers": [[2], [0], [1], [3]]}) for i in range(2)]
    import_prompts(project, records)
    return project


def test_import_marks_gold_prompts_with_their_reference_ranking(gold_project):
    gold = Prompt.objects.get(external_id="p10")
    ids = list(gold.completions.order_by("position").values_list("id", flat=True))
    assert gold.gold_tiers == [[ids[2]], [ids[0]], [ids[1]], [ids[3]]]
    assert gold.gold_mode == "ranking" and gold.is_gold
    assert not Prompt.objects.get(external_id="p0").is_gold


@pytest.mark.parametrize(
    ("gold", "field"),
    [({"tiers": [[0], [1]]}, "gold.tiers"), ({"tiers": [[0], [1], [2], [3]], "mode": "x"},
                                              "gold.mode"), ("best", "gold")],
)
def test_a_bad_gold_reference_is_an_import_error(project, gold, field):
    with pytest.raises(services.ImportRejected) as caught:
        import_prompts(project, [prompt_record(1, gold=gold)])
    assert caught.value.errors[0].field == field


def test_without_a_gold_rate_labelers_only_get_regular_prompts(gold_project, alice):
    handed = set()
    while lease := services.assignment_next(project=gold_project, labeler=alice):
        handed.add(lease.prompt_id)
        services.prompt_skip(project=gold_project, labeler=alice, prompt_id=lease.prompt_id,
                             reason="x")
    assert handed == set(Prompt.objects.filter(gold_tiers__isnull=True).values_list("id",
                                                                                     flat=True))


def test_gold_prompts_are_mixed_in_and_every_labeler_may_rank_them(gold_project, alice,
                                                                   make_user):
    gold_project.gold_rate = 1.0
    gold_project.save()
    bob = make_user("bob")
    services.membership_set(project=gold_project, user=bob, role="labeler")
    gold_ids = set(Prompt.objects.filter(gold_tiers__isnull=False).values_list("id", flat=True))
    for labeler in (alice, bob):
        for _ in range(2):
            lease = services.assignment_next(project=gold_project, labeler=labeler)
            assert lease.prompt_id in gold_ids
            ids = list(lease.prompt.completions.values_list("id", flat=True))
            services.ranking_submit(project=gold_project, labeler=labeler,
                                    prompt_id=lease.prompt_id, tiers=[[i] for i in ids],
                                    idempotency_key=f"{labeler}-{lease.prompt_id}")
        # Gold is used up for this labeler: regular prompts follow.
        assert services.assignment_next(project=gold_project, labeler=labeler).prompt_id not in (
            gold_ids)
    # N is 1, yet both labelers ranked both gold prompts.
    assert set(Prompt.objects.filter(id__in=gold_ids).values_list("ranking_count",
                                                                  flat=True)) == {2}


def test_onboarding_shows_the_reference_after_each_gold_prompt_then_stops(gold_project, alice,
                                                                          api):
    gold_project.onboarding_gold_count = 1
    gold_project.save()
    client = api(alice)
    base = f"/api/projects/{gold_project.id}"
    first = client.get(f"{base}/next-prompt/").json()
    gold = Prompt.objects.get(id=first["prompt"]["id"])
    assert gold.is_gold
    reference = gold.gold_tiers
    response = client.post(f"{base}/rankings/", {
        "prompt": gold.id, "tiers": reference, "idempotency_key": "g1"}, format="json").json()
    assert response["gold_feedback"]["reference"] == reference
    assert response["gold_feedback"]["accuracy"] == 1.0
    # Onboarding is over: the next prompt is regular, and a later gold one is unannounced.
    second = client.get(f"{base}/next-prompt/").json()
    assert not Prompt.objects.get(id=second["prompt"]["id"]).is_gold
    gold_project.gold_rate = 1.0
    gold_project.save()
    ids = [c["id"] for c in second["completions"]]
    client.post(f"{base}/rankings/", {"prompt": second["prompt"]["id"],
                                       "tiers": [[i] for i in ids], "idempotency_key": "r1"},
                format="json")
    later = client.get(f"{base}/next-prompt/").json()
    assert Prompt.objects.get(id=later["prompt"]["id"]).is_gold
    ids = [c["id"] for c in later["completions"]]
    answer = client.post(f"{base}/rankings/", {"prompt": later["prompt"]["id"],
                                               "tiers": [[i] for i in ids],
                                               "idempotency_key": "g2"}, format="json").json()
    assert "gold_feedback" not in answer


def test_admins_mark_and_unmark_gold_through_the_api(gold_project, carol, alice, api):
    prompt = Prompt.objects.get(external_id="p0")
    ids = list(prompt.completions.values_list("id", flat=True))
    url = f"/api/projects/{gold_project.id}/prompts/{prompt.id}/gold/"
    assert api(alice).put(url, {"tiers": [ids]}, format="json").status_code == 403
    bad = api(carol).put(url, {"tiers": [[ids[0]]], "mode": "best"}, format="json")
    assert bad.status_code == 400 and "leave out" in bad.json()["detail"]
    assert api(carol).put(url, {"tiers": [[ids[1]], ids[0:1] + ids[2:]], "mode": "best"},
                          format="json").status_code == 200
    prompt.refresh_from_db()
    assert prompt.gold_mode == "best" and prompt.gold_tiers[0] == [ids[1]]
    assert api(carol).delete(url).status_code == 204
    prompt.refresh_from_db()
    assert not prompt.is_gold
