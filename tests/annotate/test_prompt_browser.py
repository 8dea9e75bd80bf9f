"""The prompt browser: carol, who administers "helpful", finds prompts by text and by state,
reads one with every ranking of it, marks it gold and retires it; alice and bob label."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate import prompt_browser, selectors, services
from annotate.models import Assignment, Membership, Prompt, Ranking
from annotate.services.exports import ExportParams, prompts_with_rankings

pytestmark = pytest.mark.django_db


@pytest.fixture
def small(project):
    """"helpful" with two completions a prompt, two labelers a prompt and no gold hand-outs."""
    project.completions_per_prompt, project.labelers_per_prompt = 2, 2
    project.gold_rate = 0
    project.save()
    return project


@pytest.fixture
def bob(make_user, small):
    user = make_user("bob")
    services.membership_set(project=small, user=user, role=Membership.Role.LABELER)
    return user


def add_prompt(project, text: str, completions=("Yes.", "No.")) -> Prompt:
    prompt = Prompt.objects.create(project=project, text=text)
    for position, answer in enumerate(completions):
        prompt.completions.create(position=position, text=answer)
    return prompt


def lease(prompt: Prompt, labeler) -> Assignment:
    now = timezone.now()
    return Assignment.objects.create(prompt=prompt, labeler=labeler, seed=1, leased_at=now,
                                     expires_at=now + timedelta(minutes=30))


def rank(prompt: Prompt, labeler, *, best_last: bool = False, flags=None) -> None:
    if not Assignment.objects.filter(prompt=prompt, labeler=labeler).exists():
        lease(prompt, labeler)
    ids = list(prompt.completions.values_list("id", flat=True))
    tiers = [[i] for i in (reversed(ids) if best_last else ids)]
    services.ranking_submit(project=prompt.project, labeler=labeler, prompt_id=prompt.id,
                            tiers=tiers, flags=flags, idempotency_key=f"{labeler}-{prompt.id}")


@pytest.fixture
def prompts(small, alice, bob):
    """One prompt in each state."""
    made = {name: add_prompt(small, f"The {name} prompt") for name in (
        "untouched", "in_progress", "complete", "gold", "flagged", "skipped", "sent_back",
        "retired", "leased")}
    rank(made["in_progress"], alice)
    rank(made["complete"], alice)
    rank(made["complete"], bob)
    services.prompt_gold_mark(project=small, prompt_id=made["gold"].id,
                              reference=f"best:{made['gold'].completions.first().id}")
    first = made["flagged"].completions.first()
    rank(made["flagged"], alice, flags={str(first.id): ["unsafe"]})
    lease(made["skipped"], bob)
    services.prompt_skip(project=small, labeler=bob, prompt_id=made["skipped"].id,
                         reason="not English")
    rank(made["sent_back"], alice)
    rank(made["sent_back"], bob)
    services.prompts_request_more_rankings(project=small, prompt_ids=[made["sent_back"].id])
    rank(made["retired"], alice)
    services.prompt_retire(project=small, prompt_id=made["retired"].id)
    lease(made["leased"], alice)  # held, not ranked yet: in progress
    return made


def found(project, **filters) -> set[str]:
    return {p.text.split()[1] for p in prompt_browser.prompts_browse(project, **filters)}


@pytest.mark.parametrize(("state", "expected"), [
    ("all", {"untouched", "in_progress", "complete", "gold", "flagged", "skipped", "sent_back",
             "leased"}),
    ("untouched", {"untouched", "gold"}),
    ("in_progress", {"in_progress", "flagged", "skipped", "sent_back", "leased"}),
    ("complete", {"complete"}),
    ("gold", {"gold"}),
    ("flagged", {"flagged"}),
    ("skipped", {"skipped"}),
    ("sent_back", {"sent_back"}),
    ("retired", {"retired"}),
    ("no-such-state", {"untouched", "in_progress", "complete", "gold", "flagged", "skipped",
                       "sent_back", "leased"}),
])
def test_each_state_filter_lists_its_prompts(small, prompts, state, expected):
    assert found(small, state=state) == expected


def test_an_expired_lease_leaves_a_prompt_untouched(small, alice):
    prompt = add_prompt(small, "The forgotten prompt")
    held = lease(prompt, alice)
    Assignment.objects.filter(id=held.id).update(leased_at=timezone.now() - timedelta(hours=2),
                                                 expires_at=timezone.now() - timedelta(hours=1))
    assert found(small, state="untouched") == {"forgotten"}


def test_search_finds_prompt_text_chat_messages_and_completions_ignoring_case(small):
    add_prompt(small, "How do I boil an EGG?")
    add_prompt(small, "Name a colour", completions=("Ultramarine blue", "Red"))
    Prompt.objects.create(project=small, messages=[
        {"role": "user", "content": "Tell me about Eggplants"}]).completions.create(
            position=0, text="A vegetable.")
    add_prompt(small, "Unrelated")
    texts = {p.last_text for p in prompt_browser.prompts_browse(small, query="egg")}
    assert texts == {"How do I boil an EGG?", "Tell me about Eggplants"}
    assert [p.text for p in prompt_browser.prompts_browse(small, query="ULTRAMARINE")] == [
        "Name a colour"]
    assert prompt_browser.prompts_browse(small, query="  ").count() == 4
    assert prompt_browser.prompts_browse(small, query="egg" * 500).count() == 0  # cut, bounded


def test_search_and_state_combine_and_stay_in_the_project(small, other_project, prompts):
    add_prompt(other_project, "The complete prompt of another project")
    assert found(small, query="COMPLETE", state="complete") == {"complete"}
    assert found(small, query="complete", state="untouched") == set()


def test_a_retired_prompt_is_handed_to_no_one_until_restored(small, alice):
    junk, good = add_prompt(small, "junk"), add_prompt(small, "good")
    held = services.assignment_next(project=small, labeler=alice)
    assert held.prompt_id == junk.id
    _, ended = services.prompt_retire(project=small, prompt_id=junk.id)
    assert ended == 1  # alice's lease on it ended
    assert services.assignment_next(project=small, labeler=alice).prompt_id == good.id
    rank(good, alice)
    assert services.assignment_next(project=small, labeler=alice) is None
    assert selectors.labeler_progress(small, alice)["project_needed"] == 2  # "good" only
    services.prompt_restore(project=small, prompt_id=junk.id)
    assert services.assignment_next(project=small, labeler=alice).prompt_id == junk.id


def test_a_retired_gold_prompt_is_handed_to_no_one(small, alice):
    gold = add_prompt(small, "gold")
    services.prompt_gold_mark(project=small, prompt_id=gold.id,
                              reference=f"best:{gold.completions.first().id}")
    small.onboarding_gold_count = 1
    small.save()
    services.prompt_retire(project=small, prompt_id=gold.id)
    assert services.assignment_next(project=small, labeler=alice) is None


def test_a_retired_prompt_keeps_its_rankings_but_leaves_exports_until_restored(
        small, alice, bob):
    junk, good = add_prompt(small, "junk"), add_prompt(small, "good")
    for prompt in (junk, good):
        rank(prompt, alice)
        rank(prompt, bob)

    def exported() -> dict[int, int]:
        return {prompt.prompt_id: len(rankings)
                for prompt, rankings in prompts_with_rankings(small, ExportParams())}

    assert exported() == {junk.id: 2, good.id: 2}
    services.prompt_retire(project=small, prompt_id=junk.id)
    assert exported() == {good.id: 2}
    assert Ranking.objects.filter(prompt=junk).count() == 2
    export = services.export_create(project=small, params=ExportParams(formats=("trl-jsonl",)),
                                    created_by=None, run_now=True)
    assert export.status == "succeeded" and export.prompts_total == 1
    services.prompt_restore(project=small, prompt_id=junk.id)
    assert exported() == {junk.id: 2, good.id: 2}


def test_the_review_shows_each_ranking_by_username_the_consensus_and_the_pairs(
        small, alice, bob, make_user):
    prompt = add_prompt(small, "Which?", completions=("first", "second", "third"))
    small.labelers_per_prompt = 3
    small.save()
    charlie = make_user("charlie")
    services.membership_set(project=small, user=charlie, role=Membership.Role.LABELER)
    rank(prompt, alice)
    rank(prompt, bob)
    rank(prompt, charlie, best_last=True)
    review = prompt_browser.prompt_review(small, prompt)
    assert [c.label for c in review.completions] == ["A", "B", "C"]
    assert {row.labeler: row.tiers for row in review.rankings} == {
        "alice": [["A"], ["B"], ["C"]], "bob": [["A"], ["B"], ["C"]],
        "charlie": [["C"], ["B"], ["A"]]}
    assert review.consensus == [["A"], ["B"], ["C"]]
    agreement = {row.labeler: row.agreement for row in review.rankings}
    assert agreement == {"alice": 1.0, "bob": 1.0, "charlie": 0.0}
    pairs = {(p.first, p.second): (p.winner, p.votes, round(p.agreement, 2))
             for p in review.pairs}
    assert pairs == {("A", "B"): ("A", 3, 0.67), ("A", "C"): ("A", 3, 0.67),
                     ("B", "C"): ("B", 3, 0.67)}


# --- the pages --------------------------------------------------------------------------


def test_carol_marks_gold_from_the_page_and_clears_it(client, small, carol, alice, bob):
    prompt = add_prompt(small, "Gold?")
    ids = list(prompt.completions.values_list("id", flat=True))
    client.force_login(carol)
    url = f"/projects/{small.slug}/prompts/{prompt.id}/gold/"
    response = client.post(url, {"reference": f"best:{ids[1]}"})
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert (prompt.gold_mode, prompt.gold_tiers) == ("best", [[ids[1]], [ids[0]]])
    assert prompt_browser.prompt_review(small, prompt).gold == [["B"], ["A"]]
    client.post(url, {"action": "clear"})
    prompt.refresh_from_db()
    assert not prompt.is_gold
    # No rankings: no consensus to take.
    client.post(url, {"reference": "consensus"})
    prompt.refresh_from_db()
    assert not prompt.is_gold
    rank(prompt, alice, best_last=True)
    rank(prompt, bob, best_last=True)
    page = client.post(url, {"reference": "consensus"}, follow=True)
    assert "This prompt is gold now." in page.content.decode()
    prompt.refresh_from_db()
    assert (prompt.gold_mode, prompt.gold_tiers) == ("ranking", [[ids[1]], [ids[0]]])


def test_a_completion_of_another_prompt_cannot_be_the_reference(client, small, carol):
    prompt, other = add_prompt(small, "One"), add_prompt(small, "Two")
    client.force_login(carol)
    response = client.post(f"/projects/{small.slug}/prompts/{prompt.id}/gold/",
                           {"reference": f"best:{other.completions.first().id}"}, follow=True)
    assert "Choose the consensus or one of this prompt" in response.content.decode()
    prompt.refresh_from_db()
    assert not prompt.is_gold


def test_carol_retires_and_restores_from_the_page(client, small, carol, alice):
    prompt = add_prompt(small, "Junk")
    rank(prompt, alice)
    client.force_login(carol)
    url = f"/projects/{small.slug}/prompts/{prompt.id}/retire/"
    client.post(url, {"action": "retire"})
    prompt.refresh_from_db()
    assert prompt.is_retired and prompt.rankings.count() == 1
    listed = client.get(f"/projects/{small.slug}/prompts/?state=retired").content.decode()
    assert f'data-prompt-id="{prompt.id}"' in listed
    client.post(url, {"action": "restore"})
    prompt.refresh_from_db()
    assert not prompt.is_retired


def test_the_pages_list_search_and_show_a_prompt(client, small, carol, prompts):
    client.force_login(carol)
    listed = client.get(f"/projects/{small.slug}/prompts/", {"q": "FLAGGED"}).content.decode()
    assert "The flagged prompt" in listed and "The complete prompt" not in listed
    assert "flagged 1" in listed
    page = client.get(f"/projects/{small.slug}/prompts/{prompts['complete'].id}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-labeler="alice"' in html and 'data-labeler="bob"' in html
    assert 'id="consensus"' in html and 'data-pair="AB"' in html


def test_a_labeler_cannot_use_the_browser(client, small, alice, prompts):
    client.force_login(alice)
    prompt = prompts["untouched"]
    assert client.get(f"/projects/{small.slug}/prompts/").status_code == 403
    assert client.get(f"/projects/{small.slug}/prompts/{prompt.id}/").status_code == 403
    assert client.post(f"/projects/{small.slug}/prompts/{prompt.id}/retire/").status_code == 403
    prompt.refresh_from_db()
    assert not prompt.is_retired
