"""Exports built on a worker: one export per set of parameters at a time, a quota, sending
while the broker is down, claiming, taking over from a dead builder, the heartbeat and the
reaper. With no worker; the real processes are in tests/training/test_faults.py."""

import io
import os
import socket
import subprocess
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate import services
from annotate import tasks as annotate_tasks
from annotate.models import Export
from annotate.services import export_runs
from annotate.services import exports as export_services
from config.errors import QuotaExceeded, status_of
from config.runners import MAX_ATTEMPTS
from tests.factories import jsonl_bytes, prompt_record, rank_at_random

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()


@pytest.fixture
def ranked_project(project, make_user):
    """Four prompts, each ranked by ann and ben."""
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes([prompt_record(i) for i in range(4)])))
    rank_at_random(project, [make_user(name) for name in ("ann", "ben")], seed=None)
    return project


def queue_export(project, **params) -> Export:
    """Ask for an export on a worker (in a test transaction nothing is sent)."""
    params.setdefault("formats", ("trl-jsonl",))
    return services.export_create(project=project, params=services.ExportParams(**params),
                                  created_by=None)


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_same_parameters_while_one_is_queued_get_that_export_and_a_quota_caps_the_rest(
        ranked_project, settings):
    settings.EXPORT_MAX_ACTIVE = 2
    first = queue_export(ranked_project, seed=1)
    assert [queue_export(ranked_project, seed=1).id for _ in range(5)] == [first.id] * 5
    second = queue_export(ranked_project, seed=2)
    assert second.version == 2
    with pytest.raises(QuotaExceeded, match="already has 2 exports") as refused:
        queue_export(ranked_project, seed=3)
    assert status_of(refused.value) == 429
    assert Export.objects.count() == 2
    Export.objects.filter(id=first.id).update(status="succeeded")  # a finished one frees both
    third = queue_export(ranked_project, seed=1)
    assert third.id != first.id and third.version == 3


def test_the_api_answers_the_same_export_then_429(ranked_project, carol, api, settings):
    settings.EXPORT_MAX_ACTIVE = 1
    client, url = api(carol), f"/api/projects/{ranked_project.id}/exports/"
    first = client.post(url, {"seed": 4}, format="json")
    again = client.post(url, {"seed": 4}, format="json")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = client.post(url, {"seed": 5}, format="json")
    assert other.status_code == 429 and "already has 1 exports" in other.json()["detail"]
    assert Export.objects.count() == 1


def test_an_export_asked_for_while_the_broker_is_down_stays_queued_until_the_tick(
        ranked_project, carol, api, monkeypatch, django_capture_on_commit_callbacks):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(annotate_tasks.export_run_task, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(carol).post(f"/api/projects/{ranked_project.id}/exports/", {},
                                   format="json")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    export = Export.objects.get()
    assert export.status == "queued" and export.dispatched_at is None
    assert services.exports_reap()["dispatched"] == 0  # the broker is still down

    sent = []
    monkeypatch.setattr(annotate_tasks.export_run_task, "apply_async",
                        lambda args, **kwargs: sent.append(args))
    Export.objects.filter(id=export.id).update(created_at=timezone.now() - timedelta(minutes=1))
    assert services.exports_reap()["dispatched"] == 1
    export.refresh_from_db()
    assert sent == [(export.id,)] and export.dispatched_at is not None
    assert services.exports_reap()["dispatched"] == 0  # sent once


def test_a_redelivered_export_stays_with_a_live_builder_and_is_taken_from_a_dead_one(
        ranked_project, settings):
    export = queue_export(ranked_project)
    here = socket.gethostname()
    Export.objects.filter(id=export.id).update(
        status="running", attempts=1, worker=f"{here}:{os.getppid()}", heartbeat_at=timezone.now())
    assert export_runs.export_claim(export.id) is None  # its builder lives
    Export.objects.filter(id=export.id).update(worker=f"{here}:{dead_pid()}")
    taken = export_runs.export_claim(export.id)
    assert taken.attempts == 2 and taken.worker == f"{here}:{os.getpid()}"

    Export.objects.filter(id=export.id).update(worker="gpu-node-7:42", heartbeat_at=timezone.now())
    assert export_runs.export_claim(export.id) is None  # elsewhere: its heartbeat is fresh
    stale = timezone.now() - timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS + 1)
    Export.objects.filter(id=export.id).update(heartbeat_at=stale)
    assert export_runs.export_claim(export.id).attempts == 3


def test_an_export_whose_builder_was_lost_too_often_fails(ranked_project):
    export = queue_export(ranked_project)
    Export.objects.filter(id=export.id).update(
        status="running", attempts=MAX_ATTEMPTS,
        worker=f"{socket.gethostname()}:{dead_pid()}", heartbeat_at=timezone.now())
    assert export_runs.export_claim(export.id) is None
    export.refresh_from_db()
    assert export.status == "failed" and "lost 3 times" in export.error


def test_the_old_builder_of_an_export_taken_over_meanwhile_leaves_it_alone(
        ranked_project, monkeypatch):
    export = queue_export(ranked_project)
    build = export_services._build

    def taken_over_while_building(export, directory):
        result = build(export, directory)
        Export.objects.filter(id=export.id).update(worker="gpu-node-7:42")
        return result

    monkeypatch.setattr(export_services, "_build", taken_over_while_building)
    services.export_run(export.id)
    export.refresh_from_db()
    assert export.status == "running" and export.worker == "gpu-node-7:42"  # theirs to finish


def test_the_reaper_requeues_silent_exports_and_fails_hopeless_ones(ranked_project, settings,
                                                                     monkeypatch):
    sent = []
    monkeypatch.setattr(annotate_tasks.export_run_task, "apply_async",
                        lambda args, **kwargs: sent.append(args))
    stale = timezone.now() - timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS + 5)
    silent, hopeless, alive = (queue_export(ranked_project, seed=n) for n in range(3))
    Export.objects.filter(id=silent.id).update(status="running", attempts=1, heartbeat_at=stale,
                                               worker="n1:1", created_at=stale)
    Export.objects.filter(id=hopeless.id).update(status="running", attempts=3,
                                                 heartbeat_at=stale, worker="n1:2")
    Export.objects.filter(id=alive.id).update(status="running", attempts=1,
                                              heartbeat_at=timezone.now(), worker="n1:3")
    assert services.exports_reap() == {"requeued": 1, "failed": 1, "dispatched": 1}
    for export in (silent, hopeless, alive):
        export.refresh_from_db()
    assert silent.status == "queued" and silent.dispatched_at is not None
    assert sent == [(silent.id,)]
    assert hopeless.status == "failed" and "No heartbeat from worker n1:2" in hopeless.error
    assert alive.status == "running"


@pytest.mark.django_db(transaction=True)
def test_a_building_export_keeps_its_heartbeat(ranked_project, settings, monkeypatch):
    settings.EXPORT_HEARTBEAT_STALE_SECONDS = 4  # a beat every second
    export = queue_export(ranked_project)
    build = export_services._build
    beats = []

    def slow_build(export, directory):
        claimed_at = Export.objects.get(id=export.id).heartbeat_at
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            heartbeat = Export.objects.get(id=export.id).heartbeat_at
            if heartbeat > claimed_at:
                beats.append(heartbeat)
                break
            time.sleep(0.2)
        return build(export, directory)

    monkeypatch.setattr(export_services, "_build", slow_build)
    services.export_run(export.id)
    export.refresh_from_db()
    assert export.status == "succeeded" and beats, "no heartbeat while it built"
