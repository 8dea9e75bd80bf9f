"""The training API and pages: who may do what, and what they answer."""

import pytest

from training.models import ModelArtifact, TrainingJob

from .conftest import FAST_REWARD, page_form

pytestmark = pytest.mark.django_db


@pytest.fixture
def reward_artifact(project, tiny_models):
    """A registered reward model: the tiny untrained one, by absolute path."""
    return ModelArtifact.objects.create(project=project, name="rm", version=1, kind="reward",
                                        base_model="tiny", path=str(tiny_models["reward"]))


def create_body(project, export, catalog, **params):
    return {"project": project.id, "kind": "reward", "export": export.id,
            "base_model": catalog["reward"], "params": FAST_REWARD | params}


def test_admins_create_follow_and_cancel_a_job(api, carol, project, learnable_export,
                                               catalog):
    client = api(carol)
    body = create_body(project, learnable_export, catalog)
    created = client.post("/api/training-jobs/", body, format="json")
    assert created.status_code == 201, created.json()
    job = created.json()
    assert job["status"] == "queued" and job["export"] == learnable_export.id
    again = client.post("/api/training-jobs/", body, format="json")
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    detail = client.get(f"/api/training-jobs/{job['id']}/").json()
    assert detail["params"]["epochs"] == 3 and detail["output_model"] is None
    assert detail["base_model"] == catalog["reward"]
    # Nothing of the server's insides: no paths, task ids or hosts; the log is superusers'.
    assert not {"dataset_path", "celery_task_id", "worker"} & set(detail)
    assert detail["log_tail"] is None
    listed = client.get(f"/api/training-jobs/?project={project.id}").json()
    assert [j["id"] for j in listed] == [job["id"]]
    for url in ("/api/training-jobs/?project=abc", "/api/models/?project=1.5"):
        bad = client.get(url)
        assert bad.status_code == 400 and "project" in bad.json()
    cancelled = client.post(f"/api/training-jobs/{job['id']}/cancel/")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"


def test_a_bad_request_is_a_400_that_says_what(api, carol, project, learnable_export,
                                               catalog, tiny_models):
    client = api(carol)
    bad = client.post("/api/training-jobs/",
                      create_body(project, learnable_export, catalog, batch_size=0),
                      format="json")
    assert bad.status_code == 400 and "batch_size" in bad.json()["detail"]
    no_data = client.post("/api/training-jobs/", {"project": project.id,
                                                  "base_model": catalog["reward"]},
                          format="json")
    assert no_data.status_code == 400
    assert no_data.json()["detail"] == "export: choose an export of this project"
    # A model is a catalog name: a path on the server is not one.
    path = client.post("/api/training-jobs/", {**create_body(project, learnable_export, catalog),
                                               "base_model": str(tiny_models["reward"])},
                       format="json")
    assert path.status_code == 400 and "catalog" in path.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_over_the_quota_is_a_429(api, carol, project, learnable_export, catalog, settings):
    settings.TRAINING_MAX_ACTIVE_JOBS = 1
    client = api(carol)
    assert client.post("/api/training-jobs/", create_body(project, learnable_export, catalog),
                       format="json").status_code == 201
    other = create_body(project, learnable_export, catalog, epochs=2)
    assert client.post("/api/training-jobs/", other, format="json").status_code == 429


def test_labelers_strangers_and_anonymous_get_nothing(api, alice, dave, carol, project,
                                                      learnable_export, catalog,
                                                      reward_artifact):
    body = create_body(project, learnable_export, catalog)
    job_id = api(carol).post("/api/training-jobs/", body, format="json").json()["id"]
    urls = [f"/api/training-jobs/{job_id}/", f"/api/models/{reward_artifact.id}/"]
    posts = [("/api/training-jobs/", body), (f"/api/training-jobs/{job_id}/cancel/", {}),
             (f"/api/models/{reward_artifact.id}/score/",
              {"items": [{"prompt": "q", "response": "a"}]}),
             (f"/api/projects/{project.id}/prompts/request-more/", {"prompt_ids": [1]})]
    for user, expected in ((alice, 403), (dave, 404), (None, 401)):
        client = api(user)
        for url in urls:
            assert client.get(url).status_code == expected, (user, url)
        for url, data in posts:
            assert client.post(url, data, format="json").status_code == expected, (user, url)
    assert api(dave).get("/api/training-jobs/").json() == []
    assert api(dave).get("/api/models/").json() == []
    assert TrainingJob.objects.get().status == "queued"


def test_scoring_through_the_api(api, carol, reward_artifact):
    client = api(carol)
    url = f"/api/models/{reward_artifact.id}/score/"
    items = [{"prompt": "Say hi.", "response": " hello."},
             {"prompt": [{"role": "user", "content": "Hi?"}],
              "response": [{"role": "assistant", "content": "Hello!"}]}]
    answer = client.post(url, {"items": items}, format="json")
    assert answer.status_code == 200
    rewards = answer.json()["rewards"]
    assert len(rewards) == 2 and all(isinstance(r, float) for r in rewards)
    scaled = client.post(url, {"items": items, "alpha": 2.0}, format="json").json()["rewards"]
    assert scaled == pytest.approx([2 * r for r in rewards], abs=1e-5)
    bad = client.post(url, {"items": [{"prompt": [{"role": "user"}], "response": "x"}]},
                      format="json")
    assert bad.status_code == 400 and "items[0]" in bad.json()["detail"]
    too_many = client.post(url, {"items": [{"prompt": "q", "response": "a"}] * 300},
                           format="json")
    assert too_many.status_code == 400 and "scoring job" in too_many.json()["detail"]


def test_only_reward_models_score(api, carol, project, tmp_path):
    policy = ModelArtifact.objects.create(project=project, name="p", version=1, kind="policy",
                                          base_model="tiny", path=str(tmp_path))
    answer = api(carol).post(f"/api/models/{policy.id}/score/",
                             {"items": [{"prompt": "q", "response": "a"}]}, format="json")
    assert answer.status_code == 400 and "Only reward models" in answer.json()["detail"]
    job = api(carol).post("/api/training-jobs/", {"project": project.id, "kind": "score",
                                                  "reward_artifact": policy.id}, format="json")
    assert job.status_code == 400
    assert job.json()["detail"] == f"reward_artifact: no reward model {policy.id} in this project"
    assert not TrainingJob.objects.exists()


def test_a_score_job_needs_a_model(api, carol, project, reward_artifact):
    client = api(carol)
    missing = client.post("/api/training-jobs/", {"project": project.id, "kind": "score"},
                          format="json")
    assert missing.status_code == 400
    assert missing.json()["detail"] == "reward_artifact: choose a reward model"
    # Score jobs take the reward model in reward_artifact, not base_artifact.
    wrong_slot = client.post("/api/training-jobs/", {"project": project.id, "kind": "score",
                                                     "base_artifact": reward_artifact.id},
                             format="json")
    assert wrong_slot.status_code == 400 and "no such model" in wrong_slot.json()["detail"]
    created = client.post("/api/training-jobs/", {"project": project.id, "kind": "score",
                                                  "reward_artifact": reward_artifact.id},
                          format="json")
    assert created.status_code == 201 and created.json()["kind"] == "score"
    assert created.json()["reward_artifact"] == reward_artifact.id


def test_the_training_pages(client, carol, alice, project, learnable_export, catalog,
                            reward_artifact):
    client.force_login(carol)
    page = client.get(f"/projects/{project.slug}/training/")
    assert page.status_code == 200 and b"Train a reward model" in page.content
    title = page.content.decode().split("<title>")[1].split("</title>")[0]
    assert title == "Training · Helpfulness · rlhf-studio"
    form = page_form(project, "reward", export=learnable_export.id, base=catalog["reward"],
                     method="kway", epochs=1, batch_size=8, learning_rate=1e-3, max_length=256)
    started = client.post(f"/projects/{project.slug}/training/", form)
    job = TrainingJob.objects.get()
    assert started.status_code == 302 and started.url == f"/training/jobs/{job.id}/"
    assert job.params["epochs"] == 1 and job.params["method"] == "kway"
    detail = client.get(started.url)
    assert detail.status_code == 200 and b"job-live" in detail.content
    assert client.get(started.url + "?fragment=1").content.count(b"<svg") == 3
    assert client.post(f"/training/jobs/{job.id}/cancel/").status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"
    missing = client.post(f"/projects/{project.slug}/training/", {**form, "base": ""})
    (reward_form,) = [f for f in missing.context["forms"] if f.kind.name == "reward"]
    assert reward_form.errors == {"base": ["This field is required."]}  # beside the picker
    assert b"This field is required." in missing.content
    assert TrainingJob.objects.count() == 1
    model_page = client.post(f"/training/models/{reward_artifact.id}/",
                             {"prompt": "Say hi.", "response": " hello.", "alpha": 1})
    assert model_page.status_code == 200 and b'id="reward"' in model_page.content
    client.force_login(alice)
    assert client.get(f"/projects/{project.slug}/training/").status_code == 403
    assert client.get(f"/training/jobs/{job.id}/").status_code == 403
    assert client.get(f"/training/models/{reward_artifact.id}/").status_code == 403


def test_a_model_download_serves_only_the_files_of_its_folder(api, carol, alice,
                                                             reward_artifact):
    client = api(carol)
    url = f"/api/models/{reward_artifact.id}/download/"
    good = client.get(f"{url}?file=config.json")
    assert good.status_code == 200 and good["Content-Disposition"].startswith("attachment")
    for name in ("../../../etc/passwd", "/etc/passwd", "", "config.json/..", "%2e%2e/x"):
        missing = client.get(url, {"file": name})
        assert missing.status_code == 404, name
        assert missing.json()["detail"].startswith("no file ")
    assert api(alice).get(f"{url}?file=config.json").status_code == 403
