"""Policy training jobs (PPO, RLOO, GRPO) through the services, the API and the pages."""

from pathlib import Path

import pytest

from training import selectors, services
from training.models import ModelArtifact, TrainingJob

from .conftest import import_policy_prompts

pytestmark = pytest.mark.django_db

FAST_PPO = {"total_episodes": 64, "batch_size": 16, "mini_batch_size": 8,
            "learning_rate": 0.003, "response_length": 12, "temperature": 1.0,
            "checkpoint_every": 0, "threads": 1}


@pytest.fixture
def prompt_project(project, var_dir):
    """40 open-ended prompts, each with the K=4 completions a project needs."""
    import_policy_prompts(project, 40)
    return project


@pytest.fixture
def reward_model(prompt_project, ppo_setup):
    return ModelArtifact.objects.create(project=prompt_project, name="rm", version=1,
                                        kind="reward", base_model="tiny",
                                        path=ppo_setup["reward"])


@pytest.mark.slow
def test_a_ppo_job_registers_a_policy_with_its_lineage(prompt_project, reward_model, ppo_setup):
    job, created = services.policy_job_create(
        project=prompt_project, params={**FAST_PPO, "model_name": "helpful-policy"},
        reward_artifact=reward_model, base_model=ppo_setup["policy"], created_by=None)
    assert created and job.kind == "ppo"
    services.job_run(job.id)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.total_steps == 4 and {"reward", "kl", "entropy", "clip_fraction"} <= set(
        job.metrics[-1])
    policy = ModelArtifact.objects.get(job=job)
    assert (policy.kind, policy.name, policy.is_adapter) == ("policy", "helpful-policy", True)
    evaluation = policy.metrics["eval"]
    held_out = Path(services.job_directory(job)) / "eval-prompts.jsonl"
    assert evaluation["prompts"] == len(held_out.read_text().splitlines()) > 0
    assert {"policy_reward", "reference_reward", "win_rate", "kl", "samples"} <= set(evaluation)
    chain = [kind for kind, _ in selectors.lineage(policy)]
    assert chain == ["model", "job", "reward model"]


def test_policy_requests_are_checked(prompt_project, reward_model, ppo_setup, other_project):
    def create(**overrides):
        arguments = dict(project=prompt_project, params=dict(FAST_PPO),
                         reward_artifact=reward_model, base_model=ppo_setup["policy"],
                         created_by=None) | overrides
        return services.policy_job_create(**arguments)

    with pytest.raises(services.JobRefused, match="mini_batch_size"):
        create(params={**FAST_PPO, "mini_batch_size": 5})
    with pytest.raises(services.JobRefused, match="reward_model: set by the job"):
        create(params={**FAST_PPO, "reward_model": "/etc"})
    with pytest.raises(services.JobRefused, match="not a reward model of this project"):
        create(project=other_project)
    with pytest.raises(services.JobRefused, match="policy: give"):
        create(base_model="")
    assert not TrainingJob.objects.exists()
    job, _ = create()
    assert job.reward_artifact == reward_model and job.params["batch_size"] == 16


def test_the_api_and_the_page_start_policy_jobs(api, client, carol, prompt_project,
                                                reward_model, ppo_setup):
    answer = api(carol).post("/api/training-jobs/", {
        "project": prompt_project.id, "kind": "ppo", "reward_artifact": reward_model.id,
        "base_model": ppo_setup["policy"], "params": {**FAST_PPO, "algorithm": "grpo"}},
        format="json")
    assert answer.status_code == 201, answer.json()
    assert answer.json()["reward_artifact"] == reward_model.id
    missing = api(carol).post("/api/training-jobs/", {
        "project": prompt_project.id, "kind": "ppo", "base_model": "x"}, format="json")
    assert missing.status_code == 400 and "reward_artifact" in missing.json()["detail"]
    client.force_login(carol)
    form = {"form": "policy", "reward_artifact": reward_model.id,
            "base_model": ppo_setup["policy"], "algorithm": "ppo", "total_episodes": 32,
            "batch_size": 16, "mini_batch_size": 8, "ppo_epochs": 2, "learning_rate": 1e-3,
            "kl_coef": 0.05, "clip_range": 0.2, "clip_range_value": 0.2,
            "response_length": 8, "temperature": 1.0, "missing_eos_penalty": 1.0,
            "num_generations": 4, "seed": 0, "lora": "on"}
    started = client.post(f"/projects/{prompt_project.slug}/training/", form)
    job = TrainingJob.objects.get(params__algorithm="ppo")
    assert started.status_code == 302 and started.url == f"/training/jobs/{job.id}/"
    fragment = client.get(started.url + "?fragment=1")
    assert fragment.content.count(b"<svg") == 6  # reward, KL, entropy, losses, clip, length
