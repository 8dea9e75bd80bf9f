"""Human-judged progress (issue 16, item 3): a round's generation mixes the new policy with the
previous policy and the reference, and the labelers' rankings of that round say, with an
interval, whether the policy beats the reference: on the rounds page and in the export's
dataset card."""

import io
import json

import pytest

from annotate import selectors as annotate_selectors
from annotate import services as annotate_services
from annotate.models import Prompt
from training import selectors
from training.models import Round, TrainingJob
from training.services.rounds import generation_mix

pytestmark = pytest.mark.django_db

POLICY, REFERENCE = "helpful-policy v1", "tiny/policy"


def mixed_round(project, prompts: int = 12, number: int = 1) -> Round:
    """A ranked-to-be round as a mixed generation leaves it: 2 completions per prompt by the
    policy, 2 by the reference."""
    lines = [{"prompt": f"Round {number}, question {n}?", "completions": [
        {"text": f"policy answer {n}.{j}", "model": POLICY} for j in range(2)] + [
        {"text": f"reference answer {n}.{j}", "model": REFERENCE} for j in range(2)]}
        for n in range(prompts)]
    record = annotate_services.prompts_import(
        project=project, filename="generated.jsonl",
        binary=io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode()))
    job = TrainingJob.objects.create(
        project=project, kind="generate", params={}, base_model=POLICY,
        dedupe_key=f"g{number}",
        status="succeeded", result={"prompt_import_id": record.id, "sources": [
            {"slot": "base", "model": POLICY, "count": 2},
            {"slot": "reference", "model": REFERENCE, "count": 2}]})
    return Round.objects.create(project=project, number=number, status="ranking",
                                generation_job=job, prompt_import=record)


def rank(project, labeler, *, policy_wins=lambda prompt: True) -> None:
    """The labeler ranks every prompt leased to them: the policy's two completions above the
    reference's where policy_wins(prompt), else below."""
    annotate_services.membership_set(project=project, user=labeler, role="labeler")
    while lease := annotate_services.assignment_next(project=project, labeler=labeler):
        by_model = {}
        for cid, model in lease.prompt.completions.values_list("id", "model_name"):
            by_model.setdefault(model, []).append(cid)
        order = [POLICY, REFERENCE] if policy_wins(lease.prompt) else [REFERENCE, POLICY]
        annotate_services.ranking_submit(
            project=project, labeler=labeler, prompt_id=lease.prompt_id,
            tiers=[[cid] for model in order for cid in by_model[model]],
            idempotency_key=f"{labeler.username}-{lease.prompt_id}")


def test_the_labelers_verdict_on_a_round(project, make_user):
    round_ = mixed_round(project)
    first_six = set(Prompt.objects.filter(project=project).order_by("id")[:6])
    rank(project, make_user("ann"))
    rank(project, make_user("ben"), policy_wins=lambda prompt: prompt in first_six)
    (judged,) = selectors.rounds_judged([round_])
    # Each ranking: 2 x 2 cross-model pairs. ann: 12 prompts x 4 won; ben: 6 x 4 won, 6 x 4
    # lost: 72 of 96 comparisons won.
    assert (judged.human.comparisons, judged.human.wins) == (96, 72)
    assert judged.human.win_rate == 0.75
    assert judged.human.win_rate_low < 0.75 < judged.human.win_rate_high <= 1
    assert judged.summary.startswith(f"{POLICY} beats {REFERENCE} 75% (95% CI ")
    assert judged.reference == REFERENCE and judged.policy == POLICY
    # A retired prompt is out of the export, and out of the verdict: ben's lost six remain.
    from django.utils import timezone

    Prompt.objects.filter(id__in=[p.id for p in first_six]).update(retired_at=timezone.now())
    (judged,) = selectors.rounds_judged([round_])
    assert (judged.human.comparisons, judged.human.wins) == (48, 24)


def test_a_round_not_ranked_yet_says_so_and_single_model_rounds_are_left_out(project):
    round_ = mixed_round(project, prompts=2)
    (judged,) = selectors.rounds_judged([round_])
    assert judged.human is None and judged.summary == f"{POLICY}: not ranked yet"
    round_.generation_job.result["sources"] = [{"slot": "base", "model": POLICY, "count": 4}]
    round_.generation_job.save()
    assert selectors.rounds_judged([round_]) == []


def test_the_rounds_page_shows_the_verdict_with_its_interval(client, carol, project,
                                                             make_user):
    mixed_round(project)
    rank(project, make_user("ann"))
    client.force_login(carol)
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert "The labelers&#x27; verdict" in page or "The labelers' verdict" in page
    assert f"{POLICY} beats {REFERENCE} 100% (95% CI 100-100%, 48 comparisons)" in page
    assert "Win rate against the reference, by round" not in page  # one point: no line
    mixed_round(project, number=2)
    rank(project, make_user("ben"))
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert "Win rate against the reference, by round" in page  # the chart, across rounds


def test_the_dataset_card_states_the_models_standing(project, make_user, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    mixed_round(project)
    rank(project, make_user("ann"))
    export = annotate_services.export_create(
        project=project, created_by=None, run_now=True,
        params=annotate_services.ExportParams(min_votes=1, formats=("trl-jsonl",)))
    card = (tmp_path / export.directory / "README.md").read_text()
    assert "## Models, as the labelers judged them" in card
    assert f"| {POLICY} | 48 | 100% (100-100%) |" in card
    assert f"| {POLICY} | {REFERENCE} | 48 | 100% (100-100%) |" in card


def test_a_single_model_project_has_no_such_section(project, settings, tmp_path, make_user):
    from tests.factories import rank_at_random

    settings.VAR_DIR = tmp_path
    annotate_services.prompts_import(project=project, filename="p.jsonl", binary=io.BytesIO(
        b'{"prompt": "Q", "completions": ["a", "b", "c", "d"]}\n'))
    rank_at_random(project, [make_user("ann")])
    assert annotate_selectors.model_win_rates(project) is None
    export = annotate_services.export_create(
        project=project, created_by=None, run_now=True,
        params=annotate_services.ExportParams(min_votes=1, formats=("trl-jsonl",)))
    assert "judged them" not in (tmp_path / export.directory / "README.md").read_text()


@pytest.mark.parametrize(("k", "round_number", "expected"), [
    (4, 1, {"reference_count": 2}),  # the previous policy is the reference in round 1
    (4, 2, {"previous_count": 1, "reference_count": 1}),
    (2, 1, {"reference_count": 1}),
    (2, 2, {"reference_count": 1}),  # the policy writes at least half: previous dropped
    (3, 2, {"reference_count": 1}),
])
def test_the_generation_mix_of_a_round(k, round_number, expected):
    plan = {"generate": {"params": {"temperature": 1.0, "previous_count": 1,
                                    "reference_count": 1}},
            "policy": {"model": "tiny/policy" if round_number == 1 else "model:7"},
            "reference_model": "tiny/policy"}
    params, models = generation_mix(plan, k)
    assert params == {"temperature": 1.0, **expected}
    assert models == {slot.removesuffix("_count"): {"previous": "model:7",
                                                    "reference": "tiny/policy"}[
        slot.removesuffix("_count")] for slot in expected}
