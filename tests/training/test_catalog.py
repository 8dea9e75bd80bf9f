"""Models come from the catalog or the project's registry, never from a free path.

Carol administers "helpful" (project A). Dave's project "harmless" (B) has a trained model
under VAR_DIR/jobs. Whatever Carol types to reach B's model, the server's files or a model
outside the roots, she gets the same 400, and nothing is queued.
"""

import shutil

import pytest

from training.catalog import catalog_models
from training.models import ModelArtifact, TrainingJob

from .test_reward_real_data import tiny_bert  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(settings, var_dir, tiny_models, other_project):
    """VAR_DIR/models/tiny holds the tiny models; B's trained model lies in VAR_DIR/jobs."""
    models = var_dir / "models"
    shutil.copytree(tiny_models["reward"].parent, models / "tiny")
    settings.MODEL_ROOTS = [models]
    settings.MODEL_HUB_NAMES, settings.MODEL_HUB_ANY = [], False
    b_model = var_dir / "jobs" / "7" / "output" / "model"
    shutil.copytree(tiny_models["reward"], b_model)
    b_artifact = ModelArtifact.objects.create(
        project=other_project, name="b-rm", version=1, kind="reward", base_model="tiny/reward",
        path="jobs/7/output/model")
    (var_dir / "db.sqlite3").write_bytes(b"SQLite format 3\x00")
    (models / "escape").symlink_to(tiny_models["reward"].parent)  # a root's link out
    (models / "jobs-link").symlink_to(b_model)  # a link into another project's job
    return {"var": var_dir, "b_model": b_model, "b_artifact": b_artifact}


def ask(client, project, export, **fields):
    body = {"project": project.id, "kind": "reward", "export": export.id,
            "params": {"epochs": 1}} | fields
    return client.post("/api/training-jobs/", body, format="json")


def test_the_catalog_lists_the_models_under_the_roots_and_nothing_of_var(
        settings, deployment):
    names = [model.name for model in catalog_models()]
    assert names == ["tiny/policy", "tiny/reward"]  # the links out and into jobs/ left out
    settings.MODEL_ROOTS = [deployment["var"]]  # even a root at VAR_DIR shows only models/
    assert [model.name for model in catalog_models()] == ["models/tiny/policy",
                                                          "models/tiny/reward"]


def test_a_catalog_model_is_accepted(api, carol, project, learnable_export, deployment):
    created = ask(api(carol), project, learnable_export, base_model="tiny/reward")
    assert created.status_code == 201, created.json()
    job = TrainingJob.objects.get()
    assert job.base_model == "tiny/reward" and job.base_location == "models/tiny/reward"


OUT_OF_THE_CATALOG = [
    "{b_model}",  # B's trained model, by the absolute path job results used to show
    "../jobs/7/output/model",
    "tiny/../../jobs/7/output/model",
    "jobs-link",  # a symlink inside the root that lands in VAR_DIR/jobs
    "escape/reward",  # a symlink out of the roots
    "{var}/db.sqlite3",
    "../db.sqlite3",
    "/etc",
    "~/model",
    "tiny/missing",
    "gpt2",  # a hub name, with no allow-list
    "Qwen/Qwen2.5-0.5B",
    "tiny\\reward",
    ".hidden",
]


def test_paths_out_of_the_catalog_get_one_answer_and_queue_nothing(
        api, carol, project, learnable_export, deployment, monkeypatch):
    sent = []
    monkeypatch.setattr("training.services.jobs.job_dispatch", sent.append)
    for name in OUT_OF_THE_CATALOG:
        name = name.format(b_model=deployment["b_model"], var=deployment["var"])
        answer = ask(api(carol), project, learnable_export, base_model=name)
        assert answer.status_code == 400, name
        assert answer.json() == {"detail": (
            f"base_model: no model named {name!r} in this deployment's catalog; choose one "
            "from the catalog or a registered model of this project")}
    assert not TrainingJob.objects.exists() and sent == []


def test_another_projects_registered_model_is_not_found(api, carol, project, learnable_export,
                                                        deployment):
    b_id = deployment["b_artifact"].id
    answer = ask(api(carol), project, learnable_export, base_artifact=b_id)
    assert answer.status_code == 400
    assert answer.json()["detail"] == f"base_artifact: no reward model {b_id} in this project"
    policy = api(carol).post("/api/training-jobs/", {
        "project": project.id, "kind": "score", "reward_artifact": b_id}, format="json")
    assert policy.status_code == 400 and "in this project" in policy.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_a_labeler_may_not_ask(api, alice, project, learnable_export, deployment):
    assert ask(api(alice), project, learnable_export,
               base_model="tiny/reward").status_code == 403
    assert api(alice).get("/api/models/catalog/").status_code == 403
    assert not TrainingJob.objects.exists()


def test_a_hub_name_passes_only_when_allowed_and_then_must_load(
        api, carol, project, learnable_export, deployment, settings):
    settings.MODEL_HUB_NAMES = ["org/allowed-model"]
    answer = ask(api(carol), project, learnable_export, base_model="org/allowed-model")
    # Allowed, but there is no hub here: it is checked before anything is queued.
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(
        "base_model: org/allowed-model cannot be a reward model: its config or tokenizer "
        "does not load")
    assert ask(api(carol), project, learnable_export,
               base_model="org/other").status_code == 400
    settings.MODEL_HUB_ANY = True
    assert "does not load" in ask(api(carol), project, learnable_export,
                                  base_model="org/other").json()["detail"]
    assert not TrainingJob.objects.exists()


def test_a_model_that_does_not_fit_the_kind_is_refused_by_name(
        api, carol, project, deployment, tiny_models):
    import json

    folder = deployment["var"] / "models" / "encoder"
    shutil.copytree(tiny_models["reward"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"architectures": ["LlamaModel"]}))
    for model, expected in (("tiny/reward", "it is not a causal language model "
                                            "(LlamaForSequenceClassification)"),
                            ("encoder", "it is not a causal language model (LlamaModel)")):
        answer = api(carol).post("/api/training-jobs/", {
            "project": project.id, "kind": "generate", "base_model": model}, format="json")
        assert answer.status_code == 400
        assert answer.json()["detail"] == f"base_model: {model} cannot be a policy model: " \
                                          f"{expected}"
    (folder / "config.json").write_text("{not json")
    broken = api(carol).post("/api/training-jobs/", {
        "project": project.id, "kind": "generate", "base_model": "encoder"}, format="json")
    assert broken.status_code == 400 and "does not load" in broken.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_the_reward_input_rendering_is_settled_when_the_job_is_asked_for(
        api, carol, project, learnable_export, deployment, request, monkeypatch):
    """A template-less encoder gets the pair encoding, a model with a template its template;
    a template it lacks is refused before anything is queued."""
    monkeypatch.setattr("training.services.jobs.job_dispatch", lambda job_id: False)
    shutil.copytree(request.getfixturevalue("tiny_bert"), deployment["var"] / "models" / "bert")
    refused = ask(api(carol), project, learnable_export, base_model="bert",
                  params={"epochs": 1, "rendering": "chat_template"})
    assert refused.status_code == 400 and refused.json()["detail"] == (
        "rendering: bert's tokenizer has no chat template; choose auto, pair or text")
    for name, rendering in (("bert", "pair"), ("tiny/reward", "chat_template")):
        answer = ask(api(carol), project, learnable_export, base_model=name)
        assert answer.status_code == 201, answer.json()
        assert answer.json()["params"]["rendering"] == rendering


def test_checking_a_model_keeps_transformers_and_torch_out_of_the_web_process(tiny_models):
    """The check runs in a child process: a web worker that served one training request does
    not carry torch from then on (+350 MB each, in the soak)."""
    import subprocess
    import sys

    from tests.processes import ROOT, app_env

    script = (
        "import django, sys; django.setup()\n"
        "from training.catalog import CatalogModel, check_role\n"
        f"facts = check_role(CatalogModel(name='policy', location={str(tiny_models['policy'])!r}),"
        " 'policy', 'base_model')\n"
        "print(facts.architectures, sorted(m for m in ('torch', 'transformers')"
        " if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, env=app_env(DJANGO_SETTINGS_MODULE="config.settings"),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "('LlamaForCausalLM',) []"
