"""A rate project's export: pairs with margins from mean scores, scores.jsonl, the filters."""

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotate import services
from annotate.content import prompt_key
from annotate.exporters import is_test_prompt
from annotate.models import Export, Project, Prompt, Ranking
from annotate.ratings import tiers_from_scores
from tests.factories import jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()


def rate(prompt: Prompt, labeler, *values, aspects=("overall",)) -> Ranking:
    """Store `labeler`'s rating of the prompt's completions, in their order: one score each
    (a tuple of scores, one per aspect, when the project has several)."""
    ids = list(prompt.completions.order_by("position").values_list("id", flat=True))
    scores = {str(cid): dict(zip(aspects, v if isinstance(v, tuple) else (v,), strict=True))
              for cid, v in zip(ids, values, strict=True)}
    return Ranking.objects.create(prompt=prompt, labeler=labeler, tiers=tiers_from_scores(scores),
                                  scores=scores, displayed_order=ids)


@pytest.fixture
def rate_project(project):
    """Two prompts of 4 completions in a 1..5 rate project (max spread 2 by default)."""
    Project.objects.filter(id=project.id).update(annotation_mode="rate")
    project.refresh_from_db()
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes([prompt_record(i) for i in range(2)])))
    return project


@pytest.fixture
def rated(rate_project, make_user):
    """ann, ben and cat rate prompt p0; ann and ben give every completion of p1 a 3."""
    ann, ben, cat = (make_user(name) for name in ("ann", "ben", "cat"))
    first, second = rate_project.prompts.order_by("id")
    rate(first, ann, 5, 3, 1, 4)
    rate(first, ben, 4, 3, 2, 1)
    rate(first, cat, 5, 2, 1, 5)  # answer 3: 4, 1 and 5, a spread of 4
    rate(second, ann, 3, 3, 3, 3)
    rate(second, ben, 3, 3, 3, 3)
    return rate_project


def build(project, **params) -> Export:
    params.setdefault("formats", ("trl-jsonl",))
    return services.export_create(project=project, params=services.ExportParams(**params),
                                  created_by=None, run_now=True)


def folder_of(export: Export) -> Path:
    return services.export_file_path(export, None).with_suffix("")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def completion_ids(prompt_index: int) -> list[int]:
    prompt = Prompt.objects.get(external_id=f"p{prompt_index}")
    return list(prompt.completions.order_by("position").values_list("id", flat=True))


def test_pairs_have_the_difference_of_mean_scores_as_margin(rated):
    export = build(rated, test_fraction=0)
    assert export.status == "succeeded" and export.params["max_spread"] == 2.0
    a, b, c, _ = completion_ids(0)
    prompt = Prompt.objects.get(external_id="p0")

    def pair(chosen, rejected, margin, chosen_score, rejected_score):
        return {"prompt_id": prompt.id, "external_id": "p0", "prompt": "Question number 0?",
                "chosen": f"Answer 0.{[a, b, c].index(chosen)}",
                "rejected": f"Answer 0.{[a, b, c].index(rejected)}",
                "chosen_id": chosen, "rejected_id": rejected, "margin": margin,
                "chosen_score": chosen_score, "rejected_score": rejected_score,
                "chosen_votes": 3, "rejected_votes": 3}

    # Means: 14/3, 8/3, 4/3; answer 3 is out (spread 4); p1's are all equal: no pair.
    assert rows(folder_of(export) / "train.jsonl") == [
        pair(a, b, 2.0, 4.666667, 2.666667),
        pair(a, c, 3.333333, 4.666667, 1.333333),
        pair(b, c, 1.333333, 2.666667, 1.333333),
    ]
    assert rows(folder_of(export) / "test.jsonl") == []
    assert export.counts["pairs"] == {"train": 3, "test": 0}
    assert export.counts["left_out_spread"] == 1 and export.counts["rankings"] == 5


def test_scores_jsonl_holds_each_kept_completion_normalised(rated):
    folder = folder_of(build(rated, test_fraction=0))
    first, second = Prompt.objects.order_by("id")

    def line(prompt, index, completion_id, score, votes, spread):
        return {"prompt_id": prompt.id, "external_id": prompt.external_id,
                "completion_id": completion_id, "prompt": prompt.text,
                "completion": f"Answer {prompt.external_id[1]}.{index}", "score": score,
                "votes": votes, "spread": spread, "aspects": {"overall": score},
                "split": "train"}

    a, b, c, _ = completion_ids(0)
    # On 1..5, a mean of 14/3 is 2 * (14/3 - 1) / 4 - 1 = 5/6; 3 is 0.
    assert rows(folder / "scores.jsonl") == [
        line(first, 0, a, 0.833333, 3, 1.0),
        line(first, 1, b, -0.166667, 3, 1.0),
        line(first, 2, c, -0.833333, 3, 1.0),
        *(line(second, n, cid, 0.0, 2, 0.0) for n, cid in enumerate(completion_ids(1))),
    ]
    assert build(rated, test_fraction=0).counts["scores"] == {"train": 7, "test": 0}


def test_max_spread_decides_which_completions_are_kept(rated):
    wide = build(rated, test_fraction=0, max_spread=4)
    pairs = rows(folder_of(wide) / "train.jsonl")
    assert len(pairs) == 6 and len(rows(folder_of(wide) / "scores.jsonl")) == 8
    d = completion_ids(0)[3]
    assert [p["margin"] for p in pairs if d in (p["chosen_id"], p["rejected_id"])] == [
        1.333333, 0.666667, 2.0]  # a > d (10/3) > b > c
    narrow = build(rated, test_fraction=0, max_spread=0.5)
    assert rows(folder_of(narrow) / "train.jsonl") == []
    assert [r["prompt_id"] for r in rows(folder_of(narrow) / "scores.jsonl")] == [
        Prompt.objects.get(external_id="p1").id] * 4
    assert narrow.params["max_spread"] == 0.5


def test_the_project_setting_is_the_default_max_spread(rated):
    Project.objects.filter(id=rated.id).update(consensus_max_spread=4.0)
    rated.refresh_from_db()
    export = build(rated, test_fraction=0)
    assert export.params["max_spread"] == 4.0 and export.counts["pairs"]["train"] == 6


def test_min_votes_leaves_out_completions_rated_too_rarely(rated):
    export = build(rated, test_fraction=0, min_votes=3)
    folder = folder_of(export)
    assert {r["votes"] for r in rows(folder / "scores.jsonl")} == {3}
    assert len(rows(folder / "train.jsonl")) == 3
    assert export.counts["left_out_few_votes"] == 4


def test_scores_and_pairs_share_the_prompt_split(rated):
    folder = folder_of(build(rated, test_fraction=0.5, seed=3))
    prompt_of = {p.id: p for p in Prompt.objects.all()}
    for line in rows(folder / "scores.jsonl"):
        prompt = prompt_of[line["prompt_id"]]
        in_test = is_test_prompt(prompt_key(prompt.text, prompt.messages), 0.5, 3)
        assert line["split"] == ("test" if in_test else "train")
    pair_split = ("test" if rows(folder / "test.jsonl") else "train")
    assert {r["split"] for r in rows(folder / "scores.jsonl")
            if r["prompt_id"] == prompt_of[min(prompt_of)].id} == {pair_split}


def test_aspects_are_averaged_into_the_score_and_kept_normalised(rate_project, make_user):
    Project.objects.filter(id=rate_project.id).update(rating_aspects=["helpful", "honest"])
    rate_project.refresh_from_db()
    prompt = rate_project.prompts.order_by("id").first()
    both = ("helpful", "honest")
    rate(prompt, make_user("ann"), (5, 3), (1, 1), (2, 2), (3, 3), aspects=both)
    rate(prompt, make_user("ben"), (5, 5), (1, 3), (2, 2), (3, 3), aspects=both)
    folder = folder_of(build(rate_project, test_fraction=0))
    first = rows(folder / "scores.jsonl")[0]
    # helpful 5 and 5 -> 1.0; honest 3 and 5 -> 4 -> 0.5; the score: mean 4.5 -> 0.75.
    assert (first["score"], first["aspects"], first["spread"]) == (
        0.75, {"helpful": 1.0, "honest": 0.5}, 1.0)
    assert "helpful, honest" in (folder / "README.md").read_text()


def test_rankings_jsonl_keeps_each_ratings_tiers_and_scores(rated):
    folder = folder_of(build(rated, test_fraction=0))
    lines = rows(folder / "rankings.jsonl")
    assert len(lines) == 5
    stored = {r.scores.__repr__(): r.tiers for r in Ranking.objects.all()}
    assert {repr(line["scores"]): line["tiers"] for line in lines} == stored


def test_the_manifest_card_and_zip_carry_scores_jsonl(rated):
    export = build(rated, test_fraction=0)
    folder = folder_of(export)
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["path"] == "scores.jsonl")
    assert entry["records"] == 7
    card = (folder / "README.md").read_text()
    assert "`scores.jsonl`" in card and "in scale units" in card and "[-1, 1]" in card
    names = zipfile.ZipFile(services.export_file_path(export, None)).namelist()
    assert "v1/scores.jsonl" in names and "v1/consensus.jsonl" not in names
    assert services.export_file_path(export, "scores.jsonl").name == "scores.jsonl"


def test_parquet_and_the_hf_dataset_carry_the_margin(rated):
    import datasets
    import pyarrow.parquet as pq

    folder = folder_of(build(rated, test_fraction=0,
                             formats=("trl-jsonl", "parquet", "hf-dataset")))
    train = pq.read_table(folder / "train.parquet")
    assert train.column("margin").to_pylist() == [2.0, 3.333333, 1.333333]
    assert pq.read_table(folder / "test.parquet").schema == train.schema
    loaded = datasets.load_from_disk(str(folder / "hf_dataset"))
    assert loaded["train"]["margin"] == [2.0, 3.333333, 1.333333]


def test_max_spread_is_validated_everywhere(rated, carol, api):
    with pytest.raises(ValueError, match="max_spread must be a number of at least 0"):
        services.ExportParams(max_spread=-1)
    response = api(carol).post(f"/api/projects/{rated.id}/exports/", {"max_spread": -0.5},
                               format="json")
    assert response.status_code == 400
    assert "max_spread" in json.dumps(response.json()) and not Export.objects.exists()
    infinite = api(carol).post(f"/api/projects/{rated.id}/exports/", b'{"max_spread": 1e999}',
                               content_type="application/json")
    assert infinite.status_code == 400 and "max_spread" in infinite.json()
    with pytest.raises(CommandError, match="max_spread must be a number of at least 0"):
        call_command("export_preferences", rated.slug, "--max-spread", "-1")


def test_the_api_takes_max_spread(rated, carol, api):
    response = api(carol).post(f"/api/projects/{rated.id}/exports/",
                               {"max_spread": 4, "formats": ["trl-jsonl"]}, format="json")
    assert response.status_code == 202 and response.json()["params"]["max_spread"] == 4.0


def test_the_command_help_names_max_spread(capsys):
    with pytest.raises(SystemExit):
        call_command("export_preferences", "--help")
    assert "--max-spread" in capsys.readouterr().out


def test_the_command_says_why_a_rate_export_kept_nothing(rated, tmp_path):
    with pytest.raises(CommandError, match=r"kept no pairs: of 8 completions rated, 0 have "
                                           r"fewer than 2 ratings \(min_votes\) and 4 a spread "
                                           r"above 0.5 \(max_spread\); the 4 kept have equal"):
        call_command("export_preferences", rated.slug, "--max-spread", "0.5",
                     "--format", "trl-jsonl", "--test-fraction", "0")
    with pytest.raises(CommandError, match="8 have fewer than 4 ratings .*: lower min_votes"):
        call_command("export_preferences", rated.slug, "--min-votes", "4",
                     "--format", "trl-jsonl")


def test_a_rate_project_without_ratings_says_so(rate_project):
    with pytest.raises(CommandError, match="kept no pairs: the project has no ratings yet"):
        call_command("export_preferences", rate_project.slug)


def test_a_rank_projects_params_have_no_max_spread(project):
    assert "max_spread" not in services.ExportParams().as_dict()
    assert "max_spread" not in build(project).params


def test_the_training_readers_take_the_files(rated):
    from training.ml.data import read_preferences
    from training.ml.scores import read_scores

    folder = folder_of(build(rated, test_fraction=0))
    assert [row.margin for row in read_preferences(folder / "train.jsonl")] == [
        2.0, 3.333333, 1.333333]
    scores = read_scores(folder / "scores.jsonl")
    assert [row.score for row in scores][:3] == [0.833333, -0.166667, -0.833333]
    assert {row.split for row in scores} == {"train"}
