"""Versioned preference exports: contents, determinism, formats, entry points."""

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command

from annotate import services
from annotate.consensus import LabeledRanking, merge_votes
from annotate.content import prompt_key
from annotate.exporters import is_test_prompt
from annotate.models import Export, Prompt, Ranking
from tests.factories import hh_record, jsonl_bytes, prompt_record, rank_at_random

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()


@pytest.fixture
def ranked_project(project, make_user):
    """12 prompts of 4 completions, each ranked by the same 3 labelers at random."""
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes([prompt_record(i) for i in range(12)])))
    rank_at_random(project, [make_user(name) for name in ("ann", "ben", "cat")], seed=3)
    return project


def build(project, **params) -> Export:
    params.setdefault("formats", ("trl-jsonl",))
    return services.export_create(project=project, params=services.ExportParams(**params),
                                  created_by=None, run_now=True)


def folder_of(export: Export) -> Path:
    return services.export_file_path(export, None).with_suffix("")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_export_holds_exactly_the_pairs_the_converter_keeps(ranked_project):
    export = build(ranked_project, min_votes=3, min_agreement=0.66, test_fraction=0.25, seed=1)
    assert export.status == "succeeded" and export.version == 1
    folder = folder_of(export)
    exported = rows(folder / "train.jsonl") + rows(folder / "test.jsonl")
    labeled = [LabeledRanking(r.prompt_id, str(r.labeler_id), r.tiers)
               for r in Ranking.objects.all()]
    expected = merge_votes(labeled, min_votes=3, min_agreement=0.66)
    assert sorted((r["prompt_id"], r["chosen_id"], r["rejected_id"]) for r in exported) == sorted(
        (v.prompt_id, v.chosen, v.rejected) for v in expected)
    assert export.counts["pairs"]["train"] + export.counts["pairs"]["test"] == len(expected) == 72
    assert export.counts["rankings"] == 36 and export.counts["prompts"] == 12
    row = exported[0]
    prompt = Prompt.objects.get(id=row["prompt_id"])
    assert row["prompt"] == prompt.text
    assert row["chosen"] == prompt.completions.get(id=row["chosen_id"]).text
    assert row["margin"] == pytest.approx(2 * row["agreement"] - 1, abs=1e-5)


def test_the_split_is_by_prompt_and_follows_the_seed(ranked_project):
    folder = folder_of(build(ranked_project, min_votes=1, min_agreement=0.5, test_fraction=0.5,
                             seed=7))
    train = {r["prompt_id"] for r in rows(folder / "train.jsonl")}
    test = {r["prompt_id"] for r in rows(folder / "test.jsonl")}
    assert train and test and not train & test
    key = {p.id: prompt_key(p.text, p.messages) for p in Prompt.objects.all()}
    assert test == {p for p in train | test if is_test_prompt(key[p], 0.5, 7)}


def test_the_same_parameters_over_the_same_rankings_give_the_same_bytes(ranked_project):
    every_format = ("trl-jsonl", "parquet", "hf-dataset")
    first = build(ranked_project, min_votes=2, seed=3, formats=every_format)
    second = build(ranked_project, min_votes=2, seed=3, formats=every_format)
    assert (first.version, second.version) == (1, 2)
    assert first.content_hash == second.content_hash
    files = {path.relative_to(folder_of(first)) for path in folder_of(first).rglob("*")
             if path.is_file()}
    assert {"manifest.json", "README.md", "hf_dataset/train/state.json"} <= {
        f.as_posix() for f in files}
    for name in files:  # every file, the manifest and the hf-dataset folder included
        assert (folder_of(first) / name).read_bytes() == (folder_of(second) / name).read_bytes()
    third = build(ranked_project, min_votes=3, min_agreement=1.0, seed=3)
    assert third.content_hash != first.content_hash


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_export_of_n_rankings_has_n_records_and_a_manifest_that_checks_out(
        ranked_project, carol, api):
    # Ann revises one ranking (still one ranking, now revision 2); two new prompts have none.
    ann = ranked_project.memberships.get(user__username="ann").user
    prompt = Prompt.objects.filter(project=ranked_project).first()
    ids = list(prompt.completions.values_list("id", flat=True))
    services.ranking_submit(project=ranked_project, labeler=ann, prompt_id=prompt.id,
                            tiers=[[i] for i in ids[::-1]], idempotency_key="ann-revises")
    services.prompts_import(project=ranked_project, filename="more.jsonl", binary=io.BytesIO(
        jsonl_bytes([prompt_record(i) for i in range(50, 52)])))
    export = build(ranked_project, formats=("trl-jsonl", "parquet", "hf-dataset"))
    folder = folder_of(export)
    n = Ranking.objects.filter(prompt__project=ranked_project, source="labeler").count()
    assert n == 36
    ranking_rows = rows(folder / "rankings.jsonl")
    assert len(ranking_rows) == n == export.counts["rankings"]
    assert sorted(r["revision"] for r in ranking_rows)[-2:] == [1, 2]

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == export.counts and manifest["counts"]["rankings"] == n
    assert manifest["content_hash"] == export.content_hash
    entries = {entry["path"]: entry for entry in manifest["files"]}
    on_disk = {path.relative_to(folder).as_posix(): path for path in folder.rglob("*")
               if path.is_file() and path.name != "manifest.json"}
    assert set(entries) == set(on_disk) and "hf_dataset/dataset_dict.json" in entries
    for name, path in on_disk.items():  # recomputed here, not trusted
        data = path.read_bytes()
        assert (entries[name]["bytes"], entries[name]["sha256"]) == (len(data), sha256_of(data))
    assert entries["rankings.jsonl"]["records"] == n
    pairs = export.counts["pairs"]
    assert entries["train.jsonl"]["records"] == pairs["train"] == len(rows(folder / "train.jsonl"))
    assert entries["test.jsonl"]["records"] == pairs["test"]
    assert entries["train.parquet"]["records"] == pairs["train"]
    assert entries["consensus.jsonl"]["records"] == 12  # the prompts with rankings
    assert entries["README.md"]["records"] is None

    # The zip that Carol downloads holds the manifest, and every file in it matches it.
    download = api(carol).get(f"/api/exports/{export.id}/download/")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert archive.read("v1/manifest.json") == (folder / "manifest.json").read_bytes()
    for name, entry in entries.items():
        assert sha256_of(archive.read(f"v1/{name}")) == entry["sha256"], name


def test_imported_rankings_are_records_only_when_they_vote(other_project):
    services.prompts_import(project=other_project, filename="hh.jsonl", binary=io.BytesIO(
        jsonl_bytes([hh_record(f"Q{i}?", "good", "bad") for i in range(3)])))
    assert Ranking.objects.filter(source="imported").count() == 3
    for include, expected in ((True, 3), (False, 0)):
        export = build(other_project, min_votes=1, min_agreement=0.5, include_imported=include)
        folder = folder_of(export)
        manifest = json.loads((folder / "manifest.json").read_text())
        [entry] = [e for e in manifest["files"] if e["path"] == "rankings.jsonl"]
        assert entry["records"] == len(rows(folder / "rankings.jsonl")) == expected
        assert manifest["counts"]["rankings"] == export.counts["rankings"] == expected


def test_rankings_are_exported_with_pseudonyms_not_user_names(ranked_project):
    folder = folder_of(build(ranked_project))
    raw = (folder / "rankings.jsonl").read_text()
    assert "ann" not in raw and "ben" not in raw
    labelers = {r["labeler"] for r in rows(folder / "rankings.jsonl")}
    assert len(labelers) == 3 and all(name.startswith("labeler-") for name in labelers)
    consensus = rows(folder / "consensus.jsonl")
    assert len(consensus) == 12 and consensus[0]["method"] == "ranked-pairs"
    assert sorted(i for tier in consensus[0]["ranking"] for i in tier) == sorted(
        Prompt.objects.get(id=consensus[0]["prompt_id"]).completions.values_list("id", flat=True))


def test_parquet_and_the_hf_dataset_hold_the_same_rows(ranked_project):
    import datasets
    import pyarrow.parquet as pq

    export = build(ranked_project, formats=("trl-jsonl", "parquet", "hf-dataset"),
                   test_fraction=0.3)
    folder = folder_of(export)
    for split in ("train", "test"):
        assert pq.read_table(folder / f"{split}.parquet").to_pylist() == rows(
            folder / f"{split}.jsonl")
    loaded = datasets.load_from_disk(str(folder / "hf_dataset"))
    assert loaded["train"].num_rows == export.counts["pairs"]["train"]
    assert set(loaded["train"].column_names) >= {"prompt", "chosen", "rejected", "margin"}


def test_the_dataset_card_states_parameters_counts_and_hash(ranked_project):
    export = build(ranked_project, min_votes=2, min_agreement=0.66)
    card = (folder_of(export) / "README.md").read_text()
    assert "at least\n2 labelers" in card and "0.66" in card
    assert f"| rankings used | {export.counts['rankings']} |" in card
    assert export.content_hash in card


def test_chat_prompts_export_in_the_conversational_form(other_project, make_user):
    services.prompts_import(project=other_project, filename="hh.jsonl", binary=io.BytesIO(
        jsonl_bytes([hh_record("Q?", "good", "bad", history=("Hi", "Hello"))])))
    export = build(other_project, min_votes=1, min_agreement=0.5, include_imported=True,
                   test_fraction=0.0)
    [row] = rows(folder_of(export) / "train.jsonl")
    assert row["prompt"][-1] == {"role": "user", "content": "Q?"}
    assert row["chosen"] == [{"role": "assistant", "content": "good"}]
    assert row["rejected"] == [{"role": "assistant", "content": "bad"}]
    without = build(other_project, min_votes=1, min_agreement=0.5, test_fraction=0.0)
    assert without.counts["pairs"] == {"train": 0, "test": 0}


def test_a_failed_build_is_recorded_and_leaves_no_partial_files(ranked_project, monkeypatch,
                                                                settings):
    def broken(*args, **kwargs):
        raise RuntimeError(f"disk full under {settings.VAR_DIR}/exports\nmore detail")

    monkeypatch.setattr("annotate.exporters.content_hash", broken)
    with pytest.raises(RuntimeError):
        build(ranked_project)
    export = Export.objects.get()
    # One line for the admins, no traceback, no server path.
    assert export.status == "failed"
    assert export.error == "Export failed: RuntimeError: disk full under exports"
    assert not any((settings.VAR_DIR / "exports").rglob("*.jsonl"))


def test_a_redelivered_job_does_nothing(ranked_project):
    export = build(ranked_project)
    finished = export.finished_at
    services.export_run(export.id)
    export.refresh_from_db()
    assert export.finished_at == finished and export.status == "succeeded"


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="min_agreement must be between 0.5 and 1"):
        services.ExportParams(min_agreement=0.3)
    with pytest.raises(ValueError, match="unknown formats"):
        services.ExportParams(formats=("csv",))


# --- entry points -------------------------------------------------------------------------

@pytest.fixture
def eager_celery():
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_export_api_queues_builds_and_streams_the_download(ranked_project, carol, api,
                                                           eager_celery,
                                                           django_capture_on_commit_callbacks):
    client = api(carol)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/projects/{ranked_project.id}/exports/",
                               {"min_votes": 2, "formats": ["trl-jsonl"]}, format="json")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    export_id = response.json()["id"]
    detail = client.get(f"/api/exports/{export_id}/").json()
    assert detail["status"] == "succeeded" and len(detail["content_hash"]) == 64
    download = client.get(detail["download_url"])
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment;")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert "v1/train.jsonl" in archive.namelist()
    assert "v1/manifest.json" in archive.namelist()
    one = client.get(f"/api/exports/{export_id}/download/?file=README.md")
    assert one.status_code == 200 and one["Content-Disposition"].startswith("attachment;")
    escape = client.get(f"/api/exports/{export_id}/download/?file=../../etc/passwd")
    assert escape.status_code == 404


def test_exports_are_for_the_projects_admins_only(ranked_project, alice, dave, api):
    export = build(ranked_project)
    assert api(alice).get(f"/api/exports/{export.id}/").status_code == 403
    assert api(alice).post(f"/api/projects/{ranked_project.id}/exports/", {}).status_code == 403
    assert api(dave).get(f"/api/exports/{export.id}/").status_code == 404
    assert api(dave).get(f"/api/exports/{export.id}/download/").status_code == 404
    assert api().get(f"/api/exports/{export.id}/").status_code == 401


def test_export_preferences_command_writes_the_files(ranked_project, tmp_path, capsys):
    call_command("export_preferences", ranked_project.slug, "--format", "trl-jsonl",
                 "--min-votes", "2", "--min-agreement", "0.66", "--out", str(tmp_path / "out"))
    assert "Export v1 of helpful" in capsys.readouterr().out
    assert (tmp_path / "out" / "train.jsonl").exists()
    assert (tmp_path / "out" / "README.md").exists()


def test_an_empty_test_split_loads_every_way_the_card_and_the_formats_offer(ranked_project):
    """test_fraction 0: the card's snippet, both Parquet files and the HF dataset all load,
    the empty split with the other's columns (issue 15, item 9)."""
    import datasets
    import pyarrow.parquet as pq

    export = build(ranked_project, test_fraction=0, formats=("trl-jsonl", "parquet",
                                                             "hf-dataset"))
    folder = services.export_file_path(export, None).with_suffix("")
    train, test = (pq.read_table(folder / f"{split}.parquet") for split in ("train", "test"))
    assert train.num_rows == export.counts["pairs"]["train"] > 0 and test.num_rows == 0
    assert test.schema == train.schema
    card = (folder / "README.md").read_text()
    snippet = card.split("```python\n")[1].split("```")[0]
    scope = {}
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        exec(snippet, scope)  # the card's own words, run as a reader would
    finally:
        os.chdir(cwd)
    assert scope["data"]["train"].num_rows == train.num_rows
    saved = datasets.load_from_disk(str(folder / "hf_dataset"))  # the splits with rows
    assert list(saved) == ["train"] and saved["train"].num_rows == train.num_rows
    assert list(test.to_pandas().columns) == list(train.to_pandas().columns)


def test_copies_of_a_prompt_land_on_one_side_and_the_card_says_none_straddle(project,
                                                                            make_user):
    """The same prompt with other completions (a later round, say) is another prompt of
    the project, but the split follows its content: never in both (issue 15, item 5)."""
    records = [prompt_record(i) for i in range(20)]
    again = [prompt_record(i, id=f"again-{i}") | {"completions": [f"Other {i}.{k}" for k in
                                                                   range(4)]}
             for i in range(20)]
    services.prompts_import(project=project, filename="a.jsonl",
                            binary=io.BytesIO(jsonl_bytes(records + again)))
    rank_at_random(project, [make_user(name) for name in ("ann", "ben")], seed=2)
    export = build(project, min_votes=1, min_agreement=0.5, test_fraction=0.5, seed=4)
    folder = folder_of(export)
    sides = {}
    for split in ("train", "test"):
        for row in rows(folder / f"{split}.jsonl"):
            sides.setdefault(row["prompt"], set()).add(split)
    assert sides and all(len(found) == 1 for found in sides.values())
    assert {"train", "test"} == set().union(*sides.values())
    counts = export.counts
    assert counts["prompts_in_both"] == 0
    assert counts["distinct_prompts"]["train"] + counts["distinct_prompts"]["test"] == 20
    card = (folder / "README.md").read_text()
    assert (f"{counts['distinct_prompts']['train']} distinct\nprompts in train, "
            f"{counts['distinct_prompts']['test']} in test, 0 in both") in card
