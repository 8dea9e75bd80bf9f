"""Every registered job kind, asked for through the API, the page's form and the command:
all three accept it and build the same config for the training process."""

import io

import pytest
from django.core.management import CommandError, call_command

from training import services
from training.forms import JobForm
from training.kinds import KINDS
from training.management.kind_command import slot_option
from training.models import ModelArtifact, TrainingJob

from .conftest import page_form

pytestmark = pytest.mark.django_db

# One setting away from its default per kind, so the walk shows settings travel too.
# Optional models are all chosen, so they travel too (generate: 2 of K = 4 by others).
CHANGED = {"reward": {"epochs": 2.0}, "policy": {"total_episodes": 32},
           "generate": {"temperature": 0.5, "previous_count": 1, "reference_count": 1},
           "score": {"alpha": 2.0}, "sft": {"learning_rate": 0.001},
           "dpo": {"beta": 0.2}}


@pytest.fixture
def registered_reward(project, tiny_models):
    return ModelArtifact.objects.create(project=project, name="rm", version=1, kind="reward",
                                        base_model="reward", path=str(tiny_models["reward"]))


def choices_for(kind, registered_reward) -> dict[str, str]:
    """The model each slot takes in this walk: catalog models, the registered reward model."""
    by_role = {"policy": "policy", "reward": "reward"}
    return {slot.slot: (f"model:{registered_reward.id}" if not slot.catalog
                        else by_role[slot.role]) for slot in kind.models}


def via_api(api, carol, project, kind, models, export) -> TrainingJob:
    body = {"project": project.id, "kind": kind.name, "params": CHANGED.get(kind.name, {})}
    if "base" in models:
        body["base_model"] = models["base"]
    if "reward" in models:
        body["reward_artifact"] = int(models["reward"].removeprefix("model:"))
    body["models"] = {slot: choice for slot, choice in models.items()
                      if slot not in ("base", "reward")}
    if kind.takes_export:
        body["export"] = export.id
    answer = api(carol).post("/api/training-jobs/", body, format="json")
    assert answer.status_code == 201, answer.json()
    return TrainingJob.objects.get(id=answer.json()["id"])


def via_form(client, carol, project, kind, models, export) -> TrainingJob:
    assert JobForm(kind=kind, project=project).unavailable == ""
    data = page_form(project, kind.name, **models, **{
        name: str(value) for name, value in CHANGED.get(kind.name, {}).items()})
    if kind.takes_export:
        assert data["export"] == str(export.id)  # the only export is preselected
    client.force_login(carol)
    before = set(TrainingJob.objects.values_list("id", flat=True))
    answer = client.post(f"/projects/{project.slug}/training/", data)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    return TrainingJob.objects.exclude(id__in=before).get()


def via_command(monkeypatch, project, kind, models, export) -> TrainingJob:
    def stop_following(job):
        raise CommandError(f"not following job {job.id} in this test")

    monkeypatch.setattr("training.management.kind_command.follow", stop_following)
    monkeypatch.setattr("training.services.jobs.job_dispatch", lambda job_id: False)
    options = {slot.slot: slot_option(kind, slot) for slot in kind.models}
    argv = [kind.name, "--project", project.slug]
    for slot, choice in models.items():
        argv += [options[slot], choice.removeprefix("model:")]
    if kind.takes_export:
        argv += ["--dataset", str(export.id)]
    for name, value in CHANGED.get(kind.name, {}).items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    before = set(TrainingJob.objects.values_list("id", flat=True))
    with pytest.raises(CommandError, match="not following"):
        call_command("run_job", *argv, stdout=io.StringIO())
    return TrainingJob.objects.exclude(id__in=before).get()


def config_of(job: TrainingJob, tmp_path) -> dict:
    """The config the training process would get, less the paths inside the job's folder."""
    folder = tmp_path / f"job-{job.id}"
    folder.mkdir()
    spec = KINDS[job.kind].spec(job, folder)
    return {key: value for key, value in spec["config"].items()
            if not (isinstance(value, str) and value.startswith(str(folder)))}


@pytest.mark.parametrize("kind_name", list(KINDS))
def test_every_kind_is_the_same_job_from_the_api_the_form_and_the_command(
        kind_name, api, client, carol, project, learnable_export, catalog, registered_reward,
        monkeypatch, tmp_path, settings):
    settings.TRAINING_MAX_ACTIVE_JOBS = 10
    monkeypatch.setattr("training.services.jobs.job_dispatch", lambda job_id: False)
    kind = KINDS[kind_name]
    models = choices_for(kind, registered_reward)
    jobs = []
    for ask in (lambda: via_api(api, carol, project, kind, models, learnable_export),
                lambda: via_form(client, carol, project, kind, models, learnable_export),
                lambda: via_command(monkeypatch, project, kind, models, learnable_export)):
        job = ask()
        jobs.append(job)
        services.job_cancel(job)  # so the next interface's identical request is a new job
    configs = [config_of(job, tmp_path) for job in jobs]
    assert configs[0] == configs[1] == configs[2]
    for name, value in CHANGED.get(kind_name, {}).items():
        assert configs[0][name] == value
    assert {job.kind for job in jobs} == {kind_name}


def test_the_named_commands_are_the_kinds_commands():
    from django.core.management import load_command_class

    named = {"train_reward_model": "reward", "train_policy": "policy",
             "generate_completions": "generate", "score_completions": "score",
             "train_sft": "sft", "train_dpo": "dpo"}
    for command, kind in named.items():
        assert load_command_class("training", command).kind_name == kind
    assert set(named.values()) == set(KINDS)
