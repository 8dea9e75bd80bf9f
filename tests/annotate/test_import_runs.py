"""Uploads imported on a worker (issue 15, item 2): the request stores the file and answers
202; the worker imports it in one transaction, under the same rules as exports (send while
the broker is down, claim, take over from a dead importer, heartbeat, reaper). With no
worker process: the task is called as the worker would call it.

Carol administers the "helpful" project (4 completions a prompt).
"""

import gzip
import json
import socket
import subprocess
import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from annotate import services
from annotate import tasks as annotate_tasks
from annotate.models import Completion, Prompt, PromptImport, Ranking
from annotate.services import import_runs
from annotate.services import imports as import_services
from config.runners import MAX_ATTEMPTS
from tests.factories import jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return settings.VAR_DIR


def upload(project, carol, data: bytes, name="prompts.jsonl", **options) -> PromptImport:
    """Queue an upload as the API and the form do (in a test transaction nothing is sent)."""
    return services.prompts_import_upload(
        project=project, upload=SimpleUploadedFile(name, data), imported_by=carol,
        file_format=options.get("file_format", "auto"),
        skip_invalid=options.get("skip_invalid", False))


def stored_upload(record: PromptImport):
    """The file the upload was stored as (the row forgets it once the file is removed)."""
    return import_runs.upload_path(record)


def no_prompts_written() -> bool:
    return not (Prompt.objects.exists() or Completion.objects.exists()
                or Ranking.objects.exists())


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture
def small_batches(monkeypatch):
    """Write every 10 prompts, so a file of a few dozen lines is several batches."""
    monkeypatch.setattr(import_services, "IMPORT_BATCH_SIZE", 10)
    written = []
    write_batch = import_services._write_batch

    def counting_write_batch(record, rows):
        written.append(len(rows))
        write_batch(record, rows)

    monkeypatch.setattr(import_services, "_write_batch", counting_write_batch)
    return written


def test_a_bad_last_line_after_batches_were_written_leaves_nothing(project, carol,
                                                                   small_batches):
    """One transaction: batches written before the bad last line are rolled back."""
    records = [prompt_record(i) for i in range(35)]
    records[-1] = prompt_record(34, completions=["one", "two"])
    record = upload(project, carol, jsonl_bytes(records))
    stored = stored_upload(record)
    annotate_tasks.prompt_import_run_task(record.id)
    record.refresh_from_db()
    assert small_batches == [10, 10, 10]  # written, then undone
    assert record.status == "failed" and no_prompts_written()
    assert record.errors == [{"line": 35, "field": "completions",
                              "message": "has 2 completions; this project takes 4"}]
    assert record.lines_read == 35 and record.prompt_count == 0
    assert not stored.exists() and record.upload == ""


def test_a_worker_killed_mid_import_leaves_nothing_and_the_redelivery_imports_once(
        project, carol, small_batches, monkeypatch):
    class WorkerKilled(BaseException):
        """What SIGKILL does to the import's transaction: it ends, uncommitted."""

    write_batch = import_services._write_batch

    def killed_on_the_third_batch(record, rows):
        if len(small_batches) == 3:
            raise WorkerKilled
        write_batch(record, rows)

    record = upload(project, carol, jsonl_bytes([prompt_record(i) for i in range(40)]))
    stored = stored_upload(record)
    monkeypatch.setattr(import_services, "_write_batch", killed_on_the_third_batch)
    with pytest.raises(WorkerKilled):
        annotate_tasks.prompt_import_run_task(record.id)
    record.refresh_from_db()
    assert record.status == "running" and record.attempts == 1 and no_prompts_written()
    assert stored.exists()  # kept for the next attempt

    monkeypatch.setattr(import_services, "_write_batch", write_batch)
    annotate_tasks.prompt_import_run_task(record.id)  # redelivered while its importer lives
    record.refresh_from_db()
    assert record.status == "running" and record.attempts == 1 and no_prompts_written()

    PromptImport.objects.filter(id=record.id).update(
        worker=f"{socket.gethostname()}:{dead_pid()}")
    annotate_tasks.prompt_import_run_task(record.id)  # redelivered after the kill
    record.refresh_from_db()
    assert (record.status, record.attempts, record.prompt_count) == ("succeeded", 2, 40)
    assert Prompt.objects.count() == 40 and Completion.objects.count() == 160
    assert not stored.exists()


def test_an_import_whose_importer_was_lost_too_often_fails(project, carol):
    record = upload(project, carol, jsonl_bytes([prompt_record(1)]))
    PromptImport.objects.filter(id=record.id).update(
        status="running", attempts=MAX_ATTEMPTS, heartbeat_at=timezone.now(),
        worker=f"{socket.gethostname()}:{dead_pid()}")
    annotate_tasks.prompt_import_run_task(record.id)
    record.refresh_from_db()
    assert record.status == "failed" and "lost 3 times" in record.error
    assert no_prompts_written()


def test_the_old_importer_of_an_import_taken_over_meanwhile_writes_nothing(
        project, carol, monkeypatch):
    """An importer thought gone (its heartbeat late) whose row another worker took over:
    its end finds the row not its own, and its whole transaction is rolled back."""
    record = upload(project, carol, jsonl_bytes([prompt_record(i) for i in range(3)]))
    write_batch = import_services._write_batch
    holders = []

    def taken_over_while_importing(importing, rows):
        write_batch(importing, rows)
        # The takeover is another connection's write; in this test's one transaction, the
        # same is seen by making this importer a stale one instead.
        holders.append(importing.worker)
        importing.worker = "node-7:42 (gone, it was thought)"

    monkeypatch.setattr(import_services, "_write_batch", taken_over_while_importing)
    annotate_tasks.prompt_import_run_task(record.id)
    record.refresh_from_db()
    assert record.status == "running" and record.worker == holders[0]  # theirs to finish
    assert no_prompts_written() and stored_upload(record).exists()


def test_an_upload_sent_while_the_broker_is_down_stays_queued_until_the_tick(
        project, carol, api, monkeypatch, django_capture_on_commit_callbacks):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(annotate_tasks.prompt_import_run_task, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(carol).post(
            f"/api/projects/{project.id}/imports/",
            {"file": SimpleUploadedFile("p.jsonl", jsonl_bytes([prompt_record(1)]))},
            format="multipart")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    record = PromptImport.objects.get()
    assert record.dispatched_at is None
    assert services.prompt_imports_reap()["dispatched"] == 0  # the broker is still down

    sent = []
    monkeypatch.setattr(annotate_tasks.prompt_import_run_task, "apply_async",
                        lambda args, **kwargs: sent.append(args))
    PromptImport.objects.filter(id=record.id).update(
        created_at=timezone.now() - timedelta(minutes=1))
    assert services.prompt_imports_reap()["dispatched"] == 1
    record.refresh_from_db()
    assert sent == [(record.id,)] and record.dispatched_at is not None
    assert services.prompt_imports_reap()["dispatched"] == 0  # sent once


def test_an_upload_is_sent_to_the_default_queue_once_stored(
        project, carol, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(annotate_tasks.prompt_import_run_task, "apply_async",
                        lambda args, **kwargs: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        record = upload(project, carol, jsonl_bytes([prompt_record(1)]))
    assert sent == [(record.id,)] and stored_upload(record).exists()
    from django.conf import settings

    routes = settings.CELERY_TASK_ROUTES
    assert "annotate.prompt_import_run" not in routes  # so: CELERY_TASK_DEFAULT_QUEUE
    assert settings.CELERY_TASK_DEFAULT_QUEUE == "default"


def test_the_reaper_requeues_silent_imports_and_fails_hopeless_ones(project, carol, settings,
                                                                    monkeypatch):
    sent = []
    monkeypatch.setattr(annotate_tasks.prompt_import_run_task, "apply_async",
                        lambda args, **kwargs: sent.append(args))
    stale = timezone.now() - timedelta(seconds=settings.IMPORT_HEARTBEAT_STALE_SECONDS + 5)
    silent, hopeless, alive = (upload(project, carol, jsonl_bytes([prompt_record(n)]))
                               for n in range(3))
    PromptImport.objects.filter(id=silent.id).update(
        status="running", attempts=1, heartbeat_at=stale, worker="n1:1", created_at=stale)
    PromptImport.objects.filter(id=hopeless.id).update(
        status="running", attempts=3, heartbeat_at=stale, worker="n1:2")
    PromptImport.objects.filter(id=alive.id).update(
        status="running", attempts=1, heartbeat_at=timezone.now(), worker="n1:3")
    assert services.prompt_imports_reap() == {"requeued": 1, "failed": 1, "dispatched": 1}
    for record in (silent, hopeless, alive):
        record.refresh_from_db()
    assert silent.status == "queued" and silent.dispatched_at is not None
    assert sent == [(silent.id,)] and stored_upload(silent).exists()
    assert hopeless.status == "failed" and "no heartbeat from worker n1:2" in hopeless.error
    assert hopeless.upload == "" and len(list(import_runs.upload_path(silent).parent.iterdir())) \
        == 2  # the hopeless one's upload is removed; the others wait
    assert alive.status == "running"

    annotate_tasks.prompt_import_run_task(silent.id)  # the requeued one imports
    silent.refresh_from_db()
    assert silent.status == "succeeded" and silent.attempts == 2


def test_a_gzip_bomb_uploaded_is_refused_by_the_worker_before_a_line_is_parsed(
        project, carol, settings, monkeypatch):
    settings.IMPORT_MAX_BYTES = 4 * MiB
    line = json.dumps(prompt_record(0)).encode() + b"\n"
    bomb = gzip.compress(line * (5 * MiB // len(line)), compresslevel=9)
    assert len(bomb) < settings.IMPORT_MAX_BYTES  # the upload itself passes the request
    parsed = []
    real_parse = import_services.importers.parse_prompts

    def counting_parse(*args, **kwargs):
        for row in real_parse(*args, **kwargs):
            parsed.append(row)
            yield row

    monkeypatch.setattr(import_services.importers, "parse_prompts", counting_parse)
    record = upload(project, carol, bomb, name="bomb.jsonl.gz")
    annotate_tasks.prompt_import_run_task(record.id)
    record.refresh_from_db()
    assert record.status == "failed" and parsed == [] and no_prompts_written()
    assert record.errors == [{"line": 0, "field": "file", "message": (
        "expands past the limit of 4,194,304 bytes when decompressed (a gzip file is measured "
        "by what it holds)")}]


def test_an_upload_gone_from_the_server_fails_saying_so(project, carol):
    record = upload(project, carol, jsonl_bytes([prompt_record(1)]))
    stored_upload(record).unlink()
    annotate_tasks.prompt_import_run_task(record.id)
    record.refresh_from_db()
    assert record.status == "failed" and "is no longer on the server" in record.error
    assert str(import_runs.upload_path(record).parent) not in record.error


def test_the_command_imports_at_once_and_sends_nothing(project, write_file, monkeypatch,
                                                      django_capture_on_commit_callbacks,
                                                      capsys):
    sent = []
    monkeypatch.setattr(annotate_tasks.prompt_import_run_task, "apply_async",
                        lambda args, **kwargs: sent.append(args))
    path = write_file("p.jsonl", jsonl_bytes([prompt_record(i) for i in range(3)]))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        call_command("import_prompts", project.slug, str(path))
    assert "Imported 3 prompts" in capsys.readouterr().out
    assert callbacks == [] and sent == []
    record = PromptImport.objects.get()
    assert (record.status, record.prompt_count, record.lines_read, record.upload) == (
        "succeeded", 3, 3, "")
    assert record.finished_at is not None and Prompt.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_running_import_shows_the_lines_read_while_its_transaction_is_open(
        project, carol, monkeypatch, small_batches):
    """PostgreSQL only: on SQLite the import's transaction holds the one write lock, so the
    lines read show when it ends."""
    if connection.vendor != "postgresql":
        pytest.skip("the heartbeat writes beside an open write transaction on PostgreSQL only")
    monkeypatch.setattr(import_runs, "PROGRESS_EVERY_SECONDS", 0.2)
    seen = []
    write_batch = import_services._write_batch

    def slow_write_batch(record, rows):
        if len(small_batches) == 2:  # after the first batch: wait to see the progress
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not seen:
                lines_read = PromptImport.objects.get(id=record.id).lines_read
                if lines_read >= 20:
                    seen.append(lines_read)
                time.sleep(0.1)
        write_batch(record, rows)

    monkeypatch.setattr(import_services, "_write_batch", slow_write_batch)
    record = upload(project, carol, jsonl_bytes([prompt_record(i) for i in range(30)]))
    annotate_tasks.prompt_import_run_task(record.id)
    record.refresh_from_db()
    assert record.status == "succeeded" and seen, "no progress while it imported"
    assert record.lines_read == 30
