"""A demonstrate project's export: SFT examples, every demonstration, a card and a manifest."""

import hashlib
import json
import zipfile

import pytest

from annotate import services
from annotate.content import prompt_key
from annotate.exporters import is_test_prompt
from annotate.models import Export, Prompt
from config.errors import Conflict

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()


def writing_project(slug: str, prompts: list[dict]):
    """A demonstrate project with these prompts ({"text"} or {"messages"}), 2 completions."""
    project = services.project_create(
        created_by=None, slug=slug, name=slug.title(), criterion="helpfulness",
        completions_per_prompt=2, labelers_per_prompt=2, annotation_mode="demonstrate")
    for index, fields in enumerate(prompts):
        prompt = Prompt.objects.create(project=project, external_id=f"{slug}-{index}", **fields)
        for position in range(2):
            prompt.completions.create(position=position, text=f"draft {index}.{position}")
    return project


def demonstrate(project, labeler, text_for, source_position=None):
    """The labeler writes `text_for(prompt)` for every prompt handed to them."""
    while (lease := services.assignment_next(project=project, labeler=labeler)) is not None:
        prompt = lease.prompt
        source = (prompt.completions.get(position=source_position).id
                  if source_position is not None else None)
        services.demonstration_submit(
            project=project, labeler=labeler, prompt_id=prompt.id, text=text_for(prompt),
            source_completion_id=source, idempotency_key=f"{labeler.username}-{prompt.id}")


def build(project, **params) -> Export:
    params.setdefault("formats", ("trl-jsonl",))
    return services.export_create(project=project, params=services.ExportParams(**params),
                                  created_by=None, run_now=True)


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def folder_of(export):
    return services.export_file_path(export, None).with_suffix("")


def test_a_text_project_exports_one_example_per_demonstration(make_user):
    project = writing_project("plain", [{"text": "Q0"}, {"text": "Q1"}])
    alice, bob = make_user("alice"), make_user("bob")
    demonstrate(project, alice, lambda p: f"alice on {p.text}", source_position=1)
    demonstrate(project, bob, lambda p: f"bob on {p.text}")
    prompt_ids = list(project.prompts.values_list("id", flat=True))
    alice_name = services.labeler_pseudonym(project.id, alice.id)
    bob_name = services.labeler_pseudonym(project.id, bob.id)

    export = build(project, test_fraction=0.5, seed=0)
    assert export.status == "succeeded", export.error
    folder = folder_of(export)
    split = {f"Q{i}": "test" if is_test_prompt(prompt_key(f"Q{i}", None), 0.5, 0) else "train"
             for i in range(2)}
    assert set(split.values()) == {"train", "test"}  # seed 0 puts one prompt on each side
    for side in ("train", "test"):
        [question] = [q for q, s in split.items() if s == side]
        assert rows(folder / f"{side}.jsonl") == [
            {"prompt": question, "completion": f"alice on {question}"},
            {"prompt": question, "completion": f"bob on {question}"}]
    assert rows(folder / "demonstrations.jsonl") == [
        {"prompt_id": prompt_id, "external_id": f"plain-{i}", "split": split[f"Q{i}"],
         "labeler": labeler_name, "prompt": f"Q{i}", "text": f"{who} on Q{i}",
         "source_completion_id": source_id, "source_completion": source_text,
         "revision": 1, "time_spent_ms": None}
        for i, prompt_id in enumerate(prompt_ids)
        for who, labeler_name, source_id, source_text in (
            ("alice", alice_name, Prompt.objects.get(id=prompt_id).completions.get(
                position=1).id, f"draft {i}.1"),
            ("bob", bob_name, None, None))]
    assert export.counts == {"prompts": 2, "demonstrations": 4, "edited": 2,
                             "examples": {"train": 2, "test": 2}}


def test_a_chat_project_exports_messages_and_the_card_manifest_and_zip_hold_them(make_user):
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
             {"role": "user", "content": "2+2?"}]
    project = writing_project("chat", [{"messages": turns}])
    demonstrate(project, make_user("alice"), lambda p: "  4.\n")
    export = build(project, test_fraction=0.0, formats=("trl-jsonl", "parquet"))
    folder = folder_of(export)
    assert rows(folder / "train.jsonl") == [
        {"prompt": turns, "completion": [{"role": "assistant", "content": "4."}]}]
    assert (folder / "test.jsonl").read_text() == ""
    card = (folder / "README.md").read_text()
    assert "# Chat: demonstrations" in card and "`demonstrations.jsonl`" in card
    assert "| demonstrations | 1 |" in card and "conversational" in card
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = {entry["path"]: entry for entry in manifest["files"]}
    assert set(listed) == {"train.jsonl", "test.jsonl", "demonstrations.jsonl", "README.md",
                           "train.parquet", "test.parquet"}
    body = (folder / "demonstrations.jsonl").read_bytes()
    assert listed["demonstrations.jsonl"] == {
        "path": "demonstrations.jsonl", "bytes": len(body), "records": 1,
        "sha256": hashlib.sha256(body).hexdigest()}
    assert manifest["counts"]["examples"] == {"train": 1, "test": 0}
    with zipfile.ZipFile(services.export_file_path(export, None)) as archive:
        names = set(archive.namelist())
    assert {f"v1/{name}" for name in ("train.jsonl", "demonstrations.jsonl", "manifest.json",
                                      "README.md")} <= names
    assert services.export_file_path(export, "demonstrations.jsonl").name == (
        "demonstrations.jsonl")


def test_a_revised_demonstration_exports_its_latest_version(make_user):
    project = writing_project("revised", [{"text": "Q"}])
    alice = make_user("alice")
    demonstrate(project, alice, lambda p: "first")
    prompt = project.prompts.get()
    services.demonstration_submit(project=project, labeler=alice, prompt_id=prompt.id,
                                  text="second", idempotency_key="again")
    [row] = rows(folder_of(build(project, test_fraction=0.0)) / "demonstrations.jsonl")
    assert (row["text"], row["revision"]) == ("second", 2)


def test_retired_prompts_are_left_out(make_user):
    project = writing_project("retired", [{"text": "Q0"}, {"text": "Q1"}])
    demonstrate(project, make_user("alice"), lambda p: f"on {p.text}")
    services.prompt_retire(project=project, prompt_id=project.prompts.get(text="Q0").id)
    export = build(project, test_fraction=0.0)
    assert rows(folder_of(export) / "train.jsonl") == [{"prompt": "Q1", "completion": "on Q1"}]


def test_an_export_with_no_demonstrations_fails_saying_why():
    project = writing_project("empty", [{"text": "Q"}])
    with pytest.raises(Conflict):
        build(project)
    export = Export.objects.get(project=project)
    assert export.status == "failed"
    assert "has no demonstrations to export yet" in export.error


def test_the_export_reports_its_progress_as_it_writes(make_user, monkeypatch):
    """Every PROGRESS_EVERY prompts with demonstrations, the export's count of prompts done
    goes up, as a ranking export's does (its page shows it while it runs)."""
    from annotate.services import demonstration_exports

    project = writing_project("progress", [{"text": f"Q{i}"} for i in range(5)])
    demonstrate(project, make_user("alice"), lambda p: f"on {p.text}")
    seen = []

    def progress_of(export_id):
        def progress(done):
            seen.append(done)
            Export.objects.filter(id=export_id).update(prompts_done=done)
        return progress

    monkeypatch.setattr("annotate.services.exports.PROGRESS_EVERY", 2)
    monkeypatch.setattr(demonstration_exports, "export_progress", progress_of)
    export = build(project)
    assert seen == [2, 4]
    assert export.status == "succeeded" and export.counts["demonstrations"] == 5
