"""Application errors: services raise them without HTTP statuses, one place maps each type
to its status, and no answer to a non-superuser carries a traceback or a server path."""

import re
import shutil
from pathlib import Path

import pytest

import annotate.services  # noqa: F401 - every error type the services define is loaded
import training.services  # noqa: F401
from config import errors
from config.errors import (
    STATUS_OF,
    ApplicationError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    QuotaExceeded,
    Unavailable,
    api_exception_handler,
    reason_line,
    status_of,
)

ROOT = Path(__file__).resolve().parents[2]


def all_subclasses(cls) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def test_every_application_error_maps_to_exactly_one_status_in_one_place():
    assert STATUS_OF == {Invalid: 400, Forbidden: 403, NotFound: 404, Conflict: 409,
                         QuotaExceeded: 429, Unavailable: 503}
    for error_type in all_subclasses(ApplicationError):
        categories = [c for c in error_type.__mro__ if c in STATUS_OF]
        assert len(categories) == 1, f"{error_type} is in {categories}"
        error = error_type.__new__(error_type)  # status_of reads only the type
        assert status_of(error) == STATUS_OF[categories[0]]
    assert status_of(ApplicationError("refused")) == 400


def test_the_handler_answers_each_type_with_its_status_and_message():
    for error_type, code in STATUS_OF.items():
        response = api_exception_handler(error_type("what went wrong"), {})
        assert response.status_code == code and response.data == {"detail": "what went wrong"}
    busy = api_exception_handler(Unavailable("loading", extra={"retry_after": 7}), {})
    assert busy.status_code == 503 and busy["Retry-After"] == "7"
    assert busy.data == {"detail": "loading"}
    rows = api_exception_handler(Invalid("f.jsonl: nothing imported.",
                                         extra={"errors": [{"line": 3}]}), {})
    assert rows.data == {"detail": "f.jsonl: nothing imported.", "errors": [{"line": 3}]}


def test_services_carry_no_http_statuses_and_apis_catch_no_service_errors():
    raising_a_status = re.compile(r"raise \w+\(.*,\s*(status=)?(400|403|404|409|429|503)\)")
    for path in [*ROOT.glob("annotate/services/*.py"), *ROOT.glob("training/services/*.py"),
                 ROOT / "training/catalog.py", *ROOT.glob("training/kinds/*.py")]:
        text = path.read_text()
        assert not raising_a_status.search(text), path
        assert "self.status" not in text, path
    for path in (ROOT / "annotate/apis.py", ROOT / "training/apis.py"):
        text = path.read_text()
        assert not re.search(r"except (services\.)?\w*(Error|Refused|Rejected)", text), path


def test_a_reason_line_is_one_line_with_no_directories():
    error = OSError("model.safetensors missing in /srv/rlhf/var/jobs/12/output/model\n"
                    "Traceback (most recent call last):\n  File \"/usr/lib/x.py\"")
    assert reason_line(error) == "OSError: model.safetensors missing in model"
    assert reason_line(Invalid("epochs: must be above 0")) == "epochs: must be above 0"
    assert errors.ABSOLUTE_PATH.sub("", "ratio 1/2, and/or a/b") == "ratio 1/2, and/or a/b"


@pytest.mark.django_db
@pytest.mark.slow
def test_no_answer_to_a_project_admin_holds_a_traceback_or_a_server_path(
        api, client, carol, root, project, learnable_export, tiny_models, settings, var_dir):
    """A reward job that fails in its training process (its base model lost its weights
    after it was checked), then every job and model answer and page, as Carol and as root."""
    from training import services
    from training.kinds import JobRequest
    from training.models import ModelArtifact, TrainingJob

    settings.MODEL_ROOTS = [var_dir / "models"]
    broken = var_dir / "models" / "broken"
    shutil.copytree(tiny_models["reward"], broken)
    job, _ = services.job_request(
        project=project, created_by=carol, dispatch=False,
        request=JobRequest("reward", {"epochs": 1, "threads": 1}, {"base": "broken"},
                           export_id=learnable_export.id))
    (broken / "model.safetensors").unlink()
    services.job_run(job.id)
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error.startswith("Reward model failed: ") and "\n" not in job.error
    assert "Traceback" in job.log_tail  # kept for the operator
    model = ModelArtifact.objects.create(project=project, name="rm", version=1, kind="reward",
                                         base_model="broken", path=str(tiny_models["reward"]),
                                         job=job, export=learnable_export)
    urls = ["/api/training-jobs/", f"/api/training-jobs/{job.id}/",
            f"/api/training-jobs/?project={project.id}", "/api/models/",
            f"/api/models/{model.id}/", f"/training/jobs/{job.id}/",
            f"/training/jobs/{job.id}/?fragment=1", f"/projects/{project.slug}/training/",
            f"/training/models/{model.id}/", f"/projects/{project.slug}/rounds/"]
    server_paths = [str(var_dir), str(tiny_models["reward"].parent), str(ROOT), "/tmp/",
                    "site-packages"]
    client.force_login(carol)
    for url in urls:
        answer = (api(carol) if url.startswith("/api/") else client).get(url)
        assert answer.status_code == 200, url
        body = answer.content.decode()
        assert "Traceback" not in body and 'File "' not in body, url
        for path in server_paths:
            assert path not in body, (url, path)
    detail = api(carol).get(f"/api/training-jobs/{job.id}/").json()
    assert detail["error"] == job.error and detail["log_tail"] is None
    assert {"dataset_path", "worker", "celery_task_id", "base_location"}.isdisjoint(detail)
    files = api(carol).get(f"/api/models/{model.id}/").json()["files"]
    assert {"config.json", "model.safetensors"} <= {f["name"] for f in files}
    download = api(carol).get(files[0]["url"])
    assert download.status_code == 200 and download["Content-Disposition"].startswith(
        "attachment")
    as_root = api(root).get(f"/api/training-jobs/{job.id}/").json()
    assert "Traceback" in as_root["log_tail"]
    assert TrainingJob.objects.count() == 1
