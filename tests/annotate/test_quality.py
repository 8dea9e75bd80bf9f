"""Labeler quality from the database, the admin dashboard, and exports that use it.

The story: ann, ben and cal rank every prompt best-first in the order the completions were
imported; cat ranks every prompt the other way round. The gold prompt's reference is the
imported order, so cat fails gold and disagrees with everyone else.
"""

import io
import json

import pytest
from django.core.management import call_command

from annotate import services
from annotate.models import Export, Prompt
from annotate.quality import flagged_labeler_ids, project_quality
from annotate.services.exports import MIN_WEIGHT, labeler_reliability
from tests.factories import jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db

AGREEING = ("ann", "ben", "cal")


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()


def rank_everything(project, labeler, *, reverse: bool, time_spent_ms: int) -> None:
    while lease := services.assignment_next(project=project, labeler=labeler):
        ids = list(lease.prompt.completions.order_by("position").values_list("id", flat=True))
        order = ids[::-1] if reverse else ids
        flags = {str(ids[0]): ["off_topic"]} if reverse else None
        services.ranking_submit(
            project=project, labeler=labeler, prompt_id=lease.prompt_id,
            tiers=[[i] for i in order], idempotency_key=f"{labeler}-{lease.prompt_id}",
            displayed_order=ids, flags=flags, time_spent_ms=time_spent_ms,
        )


@pytest.fixture
def story(project, make_user):
    """3 regular prompts and 1 gold prompt (onboarding), each ranked by all four labelers."""
    project.labelers_per_prompt = 4
    project.onboarding_gold_count = 1
    project.save()
    records = [prompt_record(i) for i in range(3)]
    records.append(prompt_record(9, gold={"tiers": [[0], [1], [2], [3]]}))
    services.prompts_import(project=project, binary=io.BytesIO(jsonl_bytes(records)),
                            filename="p.jsonl")
    labelers = {}
    for index, name in enumerate((*AGREEING, "cat")):
        labelers[name] = make_user(name)
        services.membership_set(project=project, user=labelers[name], role="labeler")
        rank_everything(project, labelers[name], reverse=name == "cat",
                        time_spent_ms=1000 * (index + 1))
    return project, labelers


def test_the_dashboard_metrics_tell_the_outlier_apart(story):
    project, labelers = story
    quality = project_quality(project)
    by_name = {q.username: q for q in quality.labelers}
    assert quality.rankings == 16
    for name in AGREEING:
        assert by_name[name].loo_agreement == 1.0 and by_name[name].loo_prompts == 3
        assert by_name[name].gold_accuracy == 1.0 and not by_name[name].below_gold_threshold
        assert by_name[name].first_shown_top_share == 1.0
        assert by_name[name].flag_rate == 0
    cat = by_name["cat"]
    assert cat.loo_agreement == 0.0 and cat.gold_accuracy == 0.0 and cat.below_gold_threshold
    assert cat.first_shown_top_share == 0.0 and cat.expected_top_share == 0.25
    assert cat.flag_rate == 1.0 and cat.median_seconds == 4.0
    assert by_name["ann"].median_seconds == 1.0
    # Three of four labelers agree on each pair of the 3 regular prompts: 18 pairs at 0.75.
    assert quality.pairs_voted == 18
    assert quality.pair_agreement_histogram == [0, 0, 0, 18, 0, 0]
    assert quality.top_share_by_position == [0.75, 0.0, 0.0, 0.25]
    assert 0 < quality.alpha < 1
    assert quality.rankings_per_day[-1][1] == 16


def test_pairs_two_labelers_split_on_count_in_the_agreement_chart(project, make_user):
    # ann and bob rank 2 prompts in opposite orders: every pair splits 1-1 and none has a
    # majority, yet each was voted on twice and belongs in the chart.
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes([prompt_record(i) for i in range(2)])))
    for name in ("ann", "bob"):
        labeler = make_user(name)
        services.membership_set(project=project, user=labeler, role="labeler")
        rank_everything(project, labeler, reverse=name == "bob", time_spent_ms=500)
    quality = project_quality(project)
    assert quality.pairs_voted == 12  # 6 pairs of 4 completions, 2 prompts
    assert quality.pair_agreement_histogram == [12, 0, 0, 0, 0, 0]


def test_skips_count_in_the_skip_rate(project, make_user):
    project.labelers_per_prompt = 1
    project.save()
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes([prompt_record(i) for i in range(4)])))
    eve = make_user("eve")
    services.membership_set(project=project, user=eve, role="labeler")
    lease = services.assignment_next(project=project, labeler=eve)
    services.prompt_skip(project=project, labeler=eve, prompt_id=lease.prompt_id, reason="unclear")
    rank_everything(project, eve, reverse=False, time_spent_ms=500)
    (eve_quality,) = project_quality(project).labelers
    assert (eve_quality.rankings, eve_quality.skips) == (3, 1)
    assert eve_quality.skip_rate == 0.25
    assert eve_quality.loo_agreement is None  # nobody to agree with


def test_flagged_labelers_are_those_below_the_gold_threshold(story):
    project, labelers = story
    assert flagged_labeler_ids(project) == {labelers["cat"].id}
    project.gold_min_accuracy = 0.0
    assert flagged_labeler_ids(project) == set()


def verdicts_of(export: Export) -> dict:
    """Every exported pair's (votes, agreement), from the consensus file's pairs."""
    folder = services.export_file_path(export, None).with_suffix("")
    pairs = {}
    for split in ("train", "test"):
        for line in (folder / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            pairs[(row["prompt_id"], row["chosen_id"], row["rejected_id"])] = row
    return pairs


def build(project, **params) -> Export:
    return services.export_create(
        project=project, created_by=None, run_now=True,
        params=services.ExportParams(formats=("trl-jsonl",), min_votes=1, min_agreement=0.5,
                                     **params),
    )


def test_an_export_can_leave_out_labelers_who_fail_gold(story):
    project, _ = story
    regular = set(Prompt.objects.filter(gold_tiers__isnull=True).values_list("id", flat=True))
    with_cat = {key: row for key, row in verdicts_of(build(project)).items() if key[0] in regular}
    assert len(with_cat) == 18 and {row["agreement"] for row in with_cat.values()} == {0.75}
    export = build(project, exclude_flagged=True)
    without_cat = {k: row for k, row in verdicts_of(export).items() if k[0] in regular}
    assert without_cat.keys() == with_cat.keys()
    assert {row["agreement"] for row in without_cat.values()} == {1.0}
    assert export.params["exclude_flagged"] is True
    card = (services.export_file_path(export, None).with_suffix("") / "README.md").read_text()
    assert "below the gold accuracy threshold left out" in card


def test_the_projects_setting_is_the_default_and_is_frozen_into_the_export(story):
    project, _ = story
    assert build(project).params["exclude_flagged"] is False
    project.gold_exclude_flagged = True
    project.save()
    export = build(project)
    assert export.params["exclude_flagged"] is True
    assert build(project, exclude_flagged=False).params["exclude_flagged"] is False


def test_reliability_weights_shrink_the_outliers_votes(story):
    project, labelers = story
    weights = labeler_reliability(project, services.ExportParams(), excluded=set())
    assert weights[labelers["ann"].id] == 1.0 and weights[labelers["cat"].id] == MIN_WEIGHT
    regular = set(Prompt.objects.filter(gold_tiers__isnull=True).values_list("id", flat=True))
    pairs = verdicts_of(build(project, weight_by_reliability=True))
    shares = [row["agreement"] for key, row in pairs.items() if key[0] in regular]
    assert len(shares) == 18
    assert shares == pytest.approx([3 / (3 + MIN_WEIGHT)] * 18, abs=1e-5)


def test_the_export_command_takes_the_quality_options(story, tmp_path):
    project, _ = story
    call_command("export_preferences", project.slug, "--exclude-flagged",
                 "--weight-by-reliability", "--out", str(tmp_path / "out.zip"))
    export = Export.objects.get(project=project)
    assert export.params["exclude_flagged"] and export.params["weight_by_reliability"]
    assert (tmp_path / "out.zip").stat().st_size > 0


def test_the_dashboard_draws_the_metrics_for_admins_only(story, client, carol, make_user,
                                                        other_project, dave):
    project, labelers = story
    client.force_login(carol)
    page = client.get(f"/projects/{project.slug}/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.split("<title>")[1].split("</title>")[0] == "Dashboard · Helpfulness · rlhf-studio"
    assert html.count("<svg") == 3
    assert "below gold threshold" in html and "cat" in html
    assert "12 / 12" in html  # rankings done / needed, gold prompts left out
    assert "New export" in html  # exports are created, listed and downloaded here too
    client.force_login(labelers["ann"])
    assert client.get(f"/projects/{project.slug}/dashboard/").status_code == 403
    client.force_login(dave)
    assert client.get(f"/projects/{project.slug}/dashboard/").status_code == 404


def test_an_empty_project_has_a_dashboard_too(project, client, carol):
    client.force_login(carol)
    page = client.get(f"/projects/{project.slug}/dashboard/")
    assert page.status_code == 200 and "No data yet" in page.content.decode()
