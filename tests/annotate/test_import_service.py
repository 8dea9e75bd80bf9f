"""Importing prompt files into a project: all or nothing, or valid lines with a report."""

import gc
import gzip
import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from annotate import services, tasks
from annotate.models import Completion, Prompt, PromptImport, Ranking
from tests.factories import hh_record, jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db


def import_bytes(project, data: bytes, filename="prompts.jsonl", **options):
    return services.prompts_import(
        project=project, binary=io.BytesIO(data), filename=filename, **options
    )


def nothing_written():
    return not (
        Prompt.objects.exists()
        or Completion.objects.exists()
        or Ranking.objects.exists()
        or PromptImport.objects.exists()
    )


def test_a_jsonl_import_stores_prompts_completions_and_the_import(project, carol):
    records = [prompt_record(i) for i in range(3)]
    records[1]["completions"][0] = {"text": "Best.", "model": "m1", "params": {"top_p": 0.9}}
    record = import_bytes(project, jsonl_bytes(records), imported_by=carol)
    assert (record.prompt_count, record.completion_count, record.ranking_count) == (3, 12, 0)
    assert record.imported_by == carol and record.file_format == "jsonl"
    prompt = Prompt.objects.get(external_id="p1")
    assert prompt.source_import == record and prompt.project == project
    first = prompt.completions.get(position=0)
    assert (first.text, first.model_name, first.generation_params) == (
        "Best.",
        "m1",
        {"top_p": 0.9},
    )
    assert list(prompt.completions.values_list("position", flat=True)) == [0, 1, 2, 3]


def test_a_bad_line_9999_of_10000_imports_nothing(project):
    records = [prompt_record(i) for i in range(10_000)]
    records[9_998] = prompt_record(9_998, completions=["only", "three", "here"])
    with pytest.raises(services.ImportRejected) as caught:
        import_bytes(project, jsonl_bytes(records), filename="big.jsonl")
    assert [(e.line, e.field) for e in caught.value.errors] == [(9_999, "completions")]
    assert "big.jsonl, line 9999, field 'completions': has 3 completions" in str(caught.value)
    assert nothing_written()


def test_every_bad_line_is_reported_not_only_the_first(project):
    records = [prompt_record(i) for i in range(6)]
    records[1] = "{oops"
    records[4] = prompt_record(4, prompt="")
    with pytest.raises(services.ImportRejected) as caught:
        import_bytes(project, jsonl_bytes(records))
    assert [(e.line, e.field) for e in caught.value.errors] == [(2, "line"), (5, "prompt")]
    assert nothing_written()


def test_skip_invalid_imports_the_valid_lines_and_keeps_the_reasons(project):
    records = [prompt_record(i) for i in range(6)]
    records[1] = "{oops"
    records[4] = prompt_record(4, prompt="")
    record = import_bytes(project, jsonl_bytes(records), skip_invalid=True)
    assert record.prompt_count == 4
    assert sorted(Prompt.objects.values_list("external_id", flat=True)) == ["p0", "p2", "p3", "p5"]
    assert [(s["line"], s["field"]) for s in record.skipped] == [(2, "line"), (5, "prompt")]
    assert "invalid JSON" in record.skipped[0]["message"]


def test_ids_already_in_the_project_are_duplicates(project, other_project):
    import_bytes(project, jsonl_bytes([prompt_record(1), prompt_record(2)]))
    with pytest.raises(services.ImportRejected) as caught:
        import_bytes(project, jsonl_bytes([prompt_record(3), prompt_record(2)]))
    [error] = caught.value.errors
    assert (error.line, error.field) == (2, "id") and "already in this project" in error.message
    assert Prompt.objects.filter(project=project).count() == 2
    # The same id in another project is no conflict.
    hh = [hh_record("Q", "a", "b") | {"id": "p2"}]
    assert import_bytes(other_project, jsonl_bytes(hh)).prompt_count == 1


def test_a_file_level_error_rejects_even_with_skip_invalid(project):
    data = b"prompt,completion_1,completion_2\nQ,a,b\n"  # the project takes 4
    with pytest.raises(services.ImportRejected) as caught:
        import_bytes(project, data, filename="p.csv", skip_invalid=True)
    assert caught.value.errors[0].field == "header"
    assert nothing_written()


def test_a_file_with_no_valid_prompt_is_rejected(project):
    with pytest.raises(services.ImportRejected):
        import_bytes(project, b"\n\n")
    with pytest.raises(services.ImportRejected):
        import_bytes(project, jsonl_bytes(["{bad"]), skip_invalid=True)
    assert nothing_written()


def test_an_oversized_file_is_rejected(project, settings):
    data = jsonl_bytes([prompt_record(i) for i in range(200)])
    settings.IMPORT_MAX_BYTES = len(data) // 2
    with pytest.raises(services.ImportRejected) as caught:
        import_bytes(project, data, skip_invalid=True)
    assert "larger than the limit" in caught.value.errors[-1].message
    assert nothing_written()


def test_a_truncated_gzip_file_is_rejected(project):
    data = jsonl_bytes([prompt_record(i) for i in range(500)], compress=True)
    with pytest.raises(services.ImportRejected) as caught:
        import_bytes(project, data[: len(data) // 2], filename="p.jsonl.gz")
    assert "cannot be read" in caught.value.errors[0].message
    assert nothing_written()


def test_a_gzipped_csv_is_detected_and_imported(project):
    header = "id,prompt,completion_1,completion_2,completion_3,completion_4\n"
    data = gzip.compress((header + "a,Q,w,x,y,z\n").encode())
    record = import_bytes(project, data, filename="p.csv.gz")
    assert (record.file_format, record.prompt_count) == ("csv", 1)


def test_hh_rlhf_import_keeps_the_original_preference_as_an_imported_ranking(other_project):
    rows = [
        hh_record("Q1", "good one", "bad one", history=("Hi", "Hello")),
        hh_record("Q2", "fine", "rude"),
    ]
    record = import_bytes(other_project, jsonl_bytes(rows, compress=True), filename="hh.jsonl.gz")
    assert (record.file_format, record.prompt_count, record.ranking_count) == ("hh-rlhf", 2, 2)
    prompt = Prompt.objects.get(messages__0__content="Hi")
    chosen, rejected = prompt.completions.order_by("position")
    assert (chosen.text, rejected.text) == ("good one", "bad one")
    ranking = prompt.rankings.get()
    assert (ranking.source, ranking.labeler, ranking.tiers) == (
        "imported",
        None,
        [[chosen.id], [rejected.id]],
    )


# --- entry points -------------------------------------------------------------------------


def test_import_prompts_command_imports_and_reports(project, write_file, capsys):
    path = write_file("prompts.jsonl", jsonl_bytes([prompt_record(1), "{x", prompt_record(3)]))
    with pytest.raises(CommandError, match=r"prompts.jsonl, line 2, field 'line': invalid JSON"):
        call_command("import_prompts", "helpful", str(path))
    assert nothing_written()
    call_command("import_prompts", "helpful", str(path), "--skip-invalid")
    out, err = capsys.readouterr()
    assert "Imported 2 prompts, 8 completions" in out and "skipped 1 line." in out
    assert "line 2, field 'line'" in err


def test_import_prompts_command_counts_one_prompt_in_the_singular(project, write_file, capsys):
    path = write_file("one.jsonl", jsonl_bytes([prompt_record(1)]))
    call_command("import_prompts", "helpful", str(path))
    out = capsys.readouterr().out
    assert "Imported 1 prompt, 4 completions and 0 reference rankings from" in out


def test_import_prompts_command_errors_name_the_problem(project, tmp_path):
    with pytest.raises(CommandError, match="No project with slug 'nope'"):
        call_command("import_prompts", "nope", str(tmp_path / "x.jsonl"))
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_prompts", "helpful", str(tmp_path / "missing.jsonl"))


def upload(data: bytes, name="prompts.jsonl") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


@pytest.fixture
def var_dir(settings, tmp_path):
    """Uploads are stored under VAR_DIR until a worker imports them: a folder of the test's."""
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return settings.VAR_DIR


def no_prompts_written() -> bool:
    return not (Prompt.objects.exists() or Completion.objects.exists()
                or Ranking.objects.exists())


def run_worker(import_id: int) -> None:
    """What the worker does with the message the upload sent (in a test, nothing is sent)."""
    tasks.prompt_import_run_task(import_id)


def test_the_import_api_stores_the_file_and_a_worker_imports_it(project, carol, api, var_dir):
    """100,000 prompts took longer than gunicorn's 30 s inside the request, which was killed
    (issue 15, item 2). The request now only stores the file and answers 202 with the
    import to poll; nothing is parsed until the worker runs it."""
    client = api(carol)
    data = jsonl_bytes([prompt_record(i) for i in range(3)])
    response = client.post(f"/api/projects/{project.id}/imports/", {"file": upload(data)},
                           format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["prompt_count"] == 0
    assert body["url"] == f"/api/projects/{project.id}/imports/{body['id']}/"
    assert no_prompts_written()  # not one line read in the request
    record = PromptImport.objects.get(id=body["id"])
    assert record.imported_by == carol and (var_dir / record.upload).read_bytes() == data

    run_worker(body["id"])
    polled = client.get(body["url"])
    assert polled.status_code == 200
    result = polled.json()
    assert result["status"] == "succeeded" and result["finished_at"] is not None
    assert (result["prompt_count"], result["completion_count"], result["ranking_count"],
            result["lines_read"], result["file_format"]) == (3, 12, 0, 3, "jsonl")
    assert Prompt.objects.filter(project=project, source_import=record).count() == 3
    assert list((var_dir / "imports").iterdir()) == []  # the upload is gone once imported


def test_a_bad_upload_ends_failed_with_every_error_and_nothing_written(project, carol, api,
                                                                       var_dir):
    client = api(carol)
    data = jsonl_bytes([prompt_record(1, prompt=""), prompt_record(1)])
    response = client.post(f"/api/projects/{project.id}/imports/", {"file": upload(data)},
                           format="multipart")
    assert response.status_code == 202
    run_worker(response.json()["id"])
    failed = client.get(response.json()["url"]).json()
    assert failed["status"] == "failed"
    assert failed["errors"] == [{"line": 1, "field": "prompt", "message": "is empty"}]
    assert failed["error"] == ("prompts.jsonl: nothing imported. prompts.jsonl, line 1, field "
                               "'prompt': is empty")
    assert failed["prompt_count"] == 0 and no_prompts_written()
    assert list((var_dir / "imports").iterdir()) == []

    response = client.post(f"/api/projects/{project.id}/imports/",
                           {"file": upload(data), "skip_invalid": "true"}, format="multipart")
    assert response.status_code == 202
    run_worker(response.json()["id"])
    skipped = client.get(response.json()["url"]).json()
    assert skipped["status"] == "succeeded" and skipped["prompt_count"] == 1
    assert skipped["skipped"][0]["line"] == 1


def test_import_api_names_the_limit_an_upload_passes(project, carol, api, settings, var_dir):
    # That the body is not read past the limit is shown in test_bad_input.py, with a request
    # body that counts the bytes the server reads.
    settings.IMPORT_MAX_BYTES = 10
    response = api(carol).post(
        f"/api/projects/{project.id}/imports/",
        {"file": upload(jsonl_bytes([prompt_record(1)]))},
        format="multipart",
    )
    assert (
        response.status_code == 400 and "the limit is 10" in response.json()["errors"][0]["message"]
    )
    assert nothing_written() and not (var_dir / "imports").exists()


def test_import_api_is_for_admins_of_the_project_only(project, alice, dave, api, var_dir):
    data = {"file": upload(jsonl_bytes([prompt_record(1)]))}
    url = f"/api/projects/{project.id}/imports/"
    assert api(alice).post(url, data, format="multipart").status_code == 403
    data["file"].seek(0)
    assert api(dave).post(url, data, format="multipart").status_code == 404
    data["file"].seek(0)
    assert api().post(url, data, format="multipart").status_code in (401, 403)
    assert nothing_written()


def test_an_import_is_polled_only_by_its_projects_admins(project, other_project, carol, alice,
                                                        dave, make_user, api, var_dir):
    response = api(carol).post(f"/api/projects/{project.id}/imports/",
                               {"file": upload(jsonl_bytes([prompt_record(1)]))},
                               format="multipart")
    url = response.json()["url"]
    assert api(carol).get(url).status_code == 200
    assert api(alice).get(url).status_code == 403  # she labels the project
    assert api(dave).get(url).status_code == 404  # he cannot see it
    assert api().get(url).status_code in (401, 403)
    # Erin administers the other project: not through hers, nor through this one.
    erin = make_user("erin")
    services.membership_set(project=other_project, user=erin, role="admin")
    import_id = response.json()["id"]
    assert api(erin).get(f"/api/projects/{other_project.id}/imports/{import_id}/").status_code \
        == 404
    assert api(erin).get(url).status_code == 404


def test_uploads_past_the_quota_of_imports_queued_are_a_429(project, carol, api, settings,
                                                           var_dir):
    settings.IMPORT_MAX_ACTIVE = 2
    client, url = api(carol), f"/api/projects/{project.id}/imports/"
    answers = [client.post(url, {"file": upload(jsonl_bytes([prompt_record(i)]))},
                           format="multipart") for i in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert "already has 2 imports queued or running" in answers[2].json()["detail"]
    assert PromptImport.objects.count() == 2 and len(list((var_dir / "imports").iterdir())) == 2
    run_worker(answers[0].json()["id"])  # a finished one frees a place
    again = client.post(url, {"file": upload(jsonl_bytes([prompt_record(9)]))},
                        format="multipart")
    assert again.status_code == 202


def test_the_import_form_queues_the_file_and_the_page_shows_progress_and_the_result(
        project, carol, client, var_dir):
    client.force_login(carol)
    data = jsonl_bytes([prompt_record(1), json.dumps(prompt_record(2, completions=["a"]))])
    page = client.post(f"/projects/{project.slug}/import/",
                       {"file": upload(data), "format": "auto"}, follow=True)
    assert b"prompts.jsonl is queued for import" in page.content
    assert b'http-equiv="refresh"' in page.content  # the page polls while it waits
    assert no_prompts_written()
    record = PromptImport.objects.get()
    PromptImport.objects.filter(id=record.id).update(status="running", lines_read=1)
    assert b"running (1 lines read)" in client.get(f"/projects/{project.slug}/").content

    PromptImport.objects.filter(id=record.id).update(status="queued")
    run_worker(record.id)
    page = client.get(f"/projects/{project.slug}/")
    assert b"Nothing was imported" in page.content
    assert b"prompts.jsonl, line 2, field 'completions': has 1 completions" in page.content
    assert b'http-equiv="refresh"' not in page.content
    assert no_prompts_written()

    client.post(f"/projects/{project.slug}/import/",
                {"file": upload(data), "format": "auto", "skip_invalid": "on"})
    run_worker(PromptImport.objects.latest("id").id)
    page = client.get(f"/projects/{project.slug}/")
    assert b"<td>succeeded</td>" in page.content
    assert Prompt.objects.count() == 1


HH_REAL = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
)


@pytest.mark.skipif(not HH_REAL.exists(), reason="optional check: ../shared/data is not here")
def test_the_real_hh_rlhf_file_reports_its_nine_bad_pairs_and_imports_the_rest(other_project):
    with HH_REAL.open("rb") as binary, pytest.raises(services.ImportRejected) as caught:
        services.prompts_import(project=other_project, binary=binary, filename=HH_REAL.name)
    messages = [error.message for error in caught.value.errors]
    assert sum("differ before the final assistant turn" in m for m in messages) == 5
    assert sum(m == "is empty" for m in messages) == 4
    assert nothing_written()
    with HH_REAL.open("rb") as binary:
        record = services.prompts_import(
            project=other_project, binary=binary, filename=HH_REAL.name, skip_invalid=True
        )
    assert (record.prompt_count, record.ranking_count, len(record.skipped)) == (2303, 2303, 9)


def test_the_same_content_twice_is_refused_or_skipped_with_its_reason(project):
    """A file without ids imported twice used to double the project (issue 15, item 5): the
    same prompt with the same completions is refused, naming where it already is."""
    records = [{k: v for k, v in prompt_record(i).items() if k != "id"} for i in range(3)]
    first = services.prompts_import(project=project, filename="a.jsonl",
                                    binary=io.BytesIO(jsonl_bytes(records)))
    assert first.prompt_count == 3
    with pytest.raises(services.ImportRejected) as again:
        services.prompts_import(project=project, filename="a.jsonl",
                                binary=io.BytesIO(jsonl_bytes(records)))
    assert [(e.line, e.field, e.message) for e in again.value.errors] == [
        (n, "prompt", "the same prompt and completions as a prompt already in this project")
        for n in (1, 2, 3)]
    fresh = {k: v for k, v in prompt_record(7).items() if k != "id"}
    inside = [records[0], fresh, fresh]
    with pytest.raises(services.ImportRejected) as twice:
        services.prompts_import(project=project, filename="b.jsonl",
                                binary=io.BytesIO(jsonl_bytes(inside)))
    assert [(e.line, e.message) for e in twice.value.errors] == [
        (1, "the same prompt and completions as a prompt already in this project"),
        (3, "the same prompt and completions as line 2")]
    skipped = services.prompts_import(project=project, filename="b.jsonl", skip_invalid=True,
                                      binary=io.BytesIO(jsonl_bytes(inside)))
    assert skipped.prompt_count == 1 and [s["line"] for s in skipped.skipped] == [1, 3]
    assert Prompt.objects.filter(project=project).count() == 4
    # Other completions of the same prompt are another prompt (a later round, say).
    other = [records[0] | {"completions": ["Different.", "Answers.", "Here.", "Now."]}]
    assert services.prompts_import(project=project, filename="c.jsonl",
                                   binary=io.BytesIO(jsonl_bytes(other))).prompt_count == 1


def test_on_postgresql_the_file_is_parsed_in_a_thread_of_its_own(project, monkeypatch):
    """On PostgreSQL the import parses ahead in another thread, in its waits on the database
    (annotate/read_ahead.py); on SQLite in its own. The result is the same, and no thread is
    left behind."""
    import threading

    from annotate import importers

    parsed_by = set()
    jsonl_row = importers._jsonl_row

    def jsonl_row_seen(*args):
        parsed_by.add(threading.get_ident())
        return jsonl_row(*args)

    monkeypatch.setattr(importers, "_jsonl_row", jsonl_row_seen)
    record = import_bytes(project, jsonl_bytes([prompt_record(i) for i in range(5000)]))
    assert record.prompt_count == 5000 and Completion.objects.count() == 20_000
    on_postgresql = connection.vendor == "postgresql"
    assert (threading.get_ident() not in parsed_by) == on_postgresql
    assert not [thread for thread in threading.enumerate() if thread.name == "read-ahead"]


def test_the_foreign_keys_are_deferred_again_after_an_import(project):
    """The import checks its rows' foreign keys at each statement's end (PostgreSQL); the
    rest of an enclosing transaction checks them at its commit again, as Django declares."""
    import_bytes(project, jsonl_bytes([prompt_record(0)]))
    saved = transaction.savepoint()
    try:  # a dangling key is taken until the commit (this savepoint is rolled back first)
        Completion.objects.create(prompt_id=2**40, position=0, text="Orphan.")
    finally:
        transaction.savepoint_rollback(saved)


def test_the_foreign_keys_are_deferred_again_after_a_refused_import(project):
    """A refused file inside an enclosing transaction: its rollback (to a savepoint) gives
    the constraints back as they were, deferred to the commit."""
    records = [prompt_record(0), prompt_record(1, completions=["only one"])]
    with pytest.raises(services.ImportRejected):
        import_bytes(project, jsonl_bytes(records))
    saved = transaction.savepoint()
    try:
        Completion.objects.create(prompt_id=2**40, position=0, text="Orphan.")
    finally:
        transaction.savepoint_rollback(saved)


def test_the_heap_is_frozen_only_while_importing(project, monkeypatch):
    """The import keeps the heap it found out of the collector's full passes while it runs,
    and hands it back; a process that froze its heap itself keeps it frozen."""
    from annotate.services import imports

    frozen_during = []
    import_rows = imports._import_rows

    def import_rows_seen(*args, **kwargs):
        frozen_during.append(gc.get_freeze_count() > 0)
        return import_rows(*args, **kwargs)

    monkeypatch.setattr(imports, "_import_rows", import_rows_seen)
    import_bytes(project, jsonl_bytes([prompt_record(i) for i in range(3)]))
    assert frozen_during == [True] and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        import_bytes(project, jsonl_bytes([prompt_record(i) for i in range(3, 6)]))
        assert gc.get_freeze_count() > 0  # not handed back: it was not the import's
    finally:
        gc.unfreeze()
