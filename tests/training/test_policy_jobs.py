"""Policy training jobs (PPO, RLOO, GRPO) through the services, the API and the pages."""

from pathlib import Path

import pytest

from config.errors import Invalid
from training import selectors, services
from training.models import ModelArtifact, TrainingJob

from .conftest import import_policy_prompts, page_form, request_job

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
def test_a_ppo_job_registers_a_policy_with_its_lineage(prompt_project, reward_model,
                                                       ppo_catalog):
    job, created = request_job(prompt_project, "policy",
                               params={**FAST_PPO, "model_name": "helpful-policy"},
                               base=ppo_catalog["policy"], reward=reward_model)
    assert created and job.kind == "policy"
    services.job_run(job.id)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.total_steps == 4 and {"reward", "kl", "entropy", "clip_fraction"} <= set(
        job.metrics[-1])
    policy = ModelArtifact.objects.get(job=job)
    assert (policy.kind, policy.name, policy.is_adapter) == ("policy", "helpful-policy", True)
    evaluation = policy.metrics["eval"]
    held_out = Path(services.job_directory(job)) / "eval-prompts.jsonl"
    # A tenth of 40 prompts is held out: training prompts fill the evaluation up to 32.
    assert evaluation["held_out"] == len(held_out.read_text().splitlines()) > 0
    assert evaluation["prompts"] == 32 and len(evaluation["samples"]) == 8
    for name in ("policy_reward", "reference_reward", "win_rate", "kl", "policy_length",
                 "reference_length"):
        assert isinstance(evaluation[name], float), name
    chain = [kind for kind, _ in selectors.lineage(policy)]
    assert chain == ["model", "job", "reward model"]


def test_policy_requests_are_checked(prompt_project, reward_model, ppo_catalog, other_project):
    def create(project=prompt_project, params=FAST_PPO, base=ppo_catalog["policy"]):
        return request_job(project, "policy", params=params, base=base, reward=reward_model)

    with pytest.raises(Invalid, match="mini_batch_size"):
        create(params={**FAST_PPO, "mini_batch_size": 5})
    with pytest.raises(Invalid, match="^params: unknown reward_model;"):  # the job's to set
        create(params={**FAST_PPO, "reward_model": "/etc"})
    with pytest.raises(Invalid, match=f"^reward_artifact: no reward model {reward_model.id} in "
                                      "this project$"):
        create(project=other_project)
    with pytest.raises(Invalid, match="^base_model: choose a policy$"):
        create(base="")
    assert not TrainingJob.objects.exists()
    job, _ = create()
    assert job.reward_artifact == reward_model and job.params["batch_size"] == 16


def test_the_api_and_the_page_start_policy_jobs(api, client, carol, prompt_project,
                                                reward_model, ppo_catalog):
    answer = api(carol).post("/api/training-jobs/", {
        "project": prompt_project.id, "kind": "policy", "reward_artifact": reward_model.id,
        "base_model": ppo_catalog["policy"], "params": {**FAST_PPO, "algorithm": "grpo"}},
        format="json")
    assert answer.status_code == 201, answer.json()
    assert answer.json()["reward_artifact"] == reward_model.id
    assert answer.json()["kind"] == "policy" and answer.json()["params"]["algorithm"] == "grpo"
    missing = api(carol).post("/api/training-jobs/", {
        "project": prompt_project.id, "kind": "policy", "base_model": ppo_catalog["policy"]},
        format="json")
    assert missing.status_code == 400 and "reward_artifact" in missing.json()["detail"]
    old_name = api(carol).post("/api/training-jobs/", {
        "project": prompt_project.id, "kind": "ppo", "reward_artifact": reward_model.id,
        "base_model": ppo_catalog["policy"]}, format="json")
    assert old_name.status_code == 400 and "kind" in old_name.json()  # "ppo" is "policy" now
    client.force_login(carol)
    form = page_form(prompt_project, "policy", reward=f"model:{reward_model.id}",
                     base=ppo_catalog["policy"], algorithm="ppo", total_episodes=32,
                     batch_size=16, mini_batch_size=8, ppo_epochs=2, learning_rate=1e-3,
                     kl_coef=0.05, response_length=8, temperature=1.0, lora=True)
    started = client.post(f"/projects/{prompt_project.slug}/training/", form)
    job = TrainingJob.objects.get(params__algorithm="ppo")
    assert started.status_code == 302 and started.url == f"/training/jobs/{job.id}/"
    fragment = client.get(started.url + "?fragment=1")
    assert fragment.content.count(b"<svg") == 6  # reward, KL, entropy, losses, clip, length


def a_policy_evaluation(**changes) -> dict:
    chat = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "How do I boil an egg?"}]
    return {"prompts": 16, "held_out": 2, "temperature": 0.7, "policy_reward": 0.412,
            "reference_reward": -0.108, "win_rate": 0.6875, "kl": 1.25, "policy_length": 14.5,
            "reference_length": 30.0, "same_as_reference": 3,
            "samples": [{"prompt": chat, "held_out": True, "policy": "Simmer it 9 minutes.",
                         "policy_reward": 0.9, "reference": "egg egg egg",
                         "reference_reward": -0.4},
                        {"prompt": "Name a colour", "held_out": False, "policy": "Blue.",
                         "policy_reward": 0.1, "reference": "colour colour",
                         "reference_reward": 0.2}]} | changes


def test_a_policys_page_shows_its_evaluation_and_a_reward_models_its_accuracy(
        client, carol, project, var_dir):
    def registered(kind: str, metrics: dict) -> ModelArtifact:
        return ModelArtifact.objects.create(project=project, name=kind, version=1, kind=kind,
                                            base_model="tiny", path="/nowhere", metrics=metrics)

    policy = registered("policy", {"algorithm": "ppo", "eval": a_policy_evaluation()})
    reward_model = registered("reward", {"eval": {"accuracy": 0.8, "mean_margin": 0.25,
                                                  "pairs": 48}})
    client.force_login(carol)
    page = client.get(f"/training/models/{policy.id}/").content.decode()
    for shown in ("0.412", "-0.108", "0.69", "1.25", "14.5", "30.0",
                  "16 prompts (2 held out, 14 also trained on)", "<strong>user:</strong> How do "
                  "I boil an egg?", "<strong>system:</strong> Be brief.", "Simmer it 9 minutes.",
                  "(0.90)", "(-0.40)", "trained on</span>",
                  "3 of 16 samples are the reference's word for word"):
        assert shown in page, shown
    assert "[{" not in page and "&#x27;role&#x27;" not in page and "'role'" not in page
    assert "pair accuracy" not in page and "Held-out" not in page
    reward_page = client.get(f"/training/models/{reward_model.id}/").content.decode()
    assert "pair accuracy 0.800, mean margin 0.250, 48 pairs" in reward_page
    assert 'id="policy-evaluation"' not in reward_page
