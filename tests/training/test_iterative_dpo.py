"""Iterative DPO (the policy kind's algorithm "dpo"): the policy samples K responses per
prompt, the reward model's best and worst become a pair, DPO trains, and the next iteration
samples from the result; on its own, as a job, and as a round's policy step."""

from pathlib import Path

import pytest

from annotate.services import export_run
from training import services
from training.kinds import KINDS
from training.ml.config import ConfigError
from training.ml.policy import PolicyTrainingConfig
from training.ml.ppo import train_policy
from training.ml.progress import RecordingReporter
from training.ml.synthetic import policy_prompts, write_rows
from training.models import ModelArtifact, Round

from .conftest import FAST_REWARD, import_policy_prompts, request_job

FAST_DPO = {"algorithm": "dpo", "iterations": 2, "num_generations": 8, "ppo_epochs": 4,
            "batch_size": 16, "learning_rate": 0.005, "kl_coef": 0.1, "response_length": 16,
            "temperature": 1.0, "checkpoint_every": 0, "threads": 1}


def test_two_iterations_raise_the_reward_models_mean_reward_on_held_out_prompts(
        ppo_setup, tmp_path):
    held_out = write_rows(tmp_path / "held-out.jsonl", policy_prompts(64, seed=21))
    config = PolicyTrainingConfig(
        policy=ppo_setup["policy"], reward_model=ppo_setup["reward"],
        prompts_file=ppo_setup["prompts"], eval_prompts_file=str(held_out),
        output_dir=str(tmp_path / "out"), eval_prompts=64, seed=0, **FAST_DPO)
    reporter = RecordingReporter()
    result = train_policy(config, reporter)
    first, second = result["iterations"]
    # 64 training prompts, K=8 samples each: every prompt gave a pair (no tie), and each
    # iteration trained 4 passes of 4 batches of 16 pairs, numbered on from the last.
    assert [(it["iteration"], it["pairs"] + it["ties"]) for it in result["iterations"]] == [
        (1, 64), (2, 64)]
    assert first["best"] > first["reward"] > first["worst"]
    assert result["steps"] == 32
    assert [step for step, _, _ in reporter.steps] == list(range(1, 33))
    assert {"loss", "accuracy", "reward", "iteration"} <= set(reporter.steps[-1][2])
    assert reporter.steps[-1][2]["iteration"] == 2
    # The reference is the policy the job started from in both iterations: DPO's implicit
    # rewards are 0 on the first batch of the first (the policy is still the reference) and
    # not on the first of the second (it would be 0 again if the reference followed).
    assert_reference_is_the_start(reporter)
    # Judged on the 64 held-out prompts against the policy it started from, one sample each
    # from the same seed: a policy that had not moved would write the reference's samples
    # word for word and tie it exactly.
    evaluation = result["eval"]
    assert evaluation["prompts"] == evaluation["held_out"] == 64
    assert evaluation["same_as_reference"] < 64 and evaluation["kl"] > 0
    assert evaluation["policy_reward"] > evaluation["reference_reward"] + 0.5, evaluation
    assert evaluation["win_rate"] > 0.5
    saved = Path(result["policy_dir"])
    assert (saved / "adapter_config.json").is_file() and not (saved / "ref").exists()


def assert_reference_is_the_start(reporter: RecordingReporter) -> None:
    firsts = {}
    for _, _, metrics in reporter.steps:
        firsts.setdefault(metrics["iteration"], metrics)
    assert abs(firsts[1]["chosen_reward"]) < 1e-6 and abs(firsts[1]["margin"]) < 1e-6
    assert abs(firsts[2]["chosen_reward"]) > 1e-3 and abs(firsts[2]["margin"]) > 1e-3


def test_a_saved_adapter_goes_on_against_itself_as_loaded(ppo_setup, tmp_path):
    def run(policy: str, out: str, iterations: int) -> tuple[dict, RecordingReporter]:
        reporter = RecordingReporter()
        config = PolicyTrainingConfig(
            policy=policy, reward_model=ppo_setup["reward"], prompts_file=ppo_setup["prompts"],
            output_dir=str(tmp_path / out), eval_prompts=8,
            **FAST_DPO | {"num_generations": 4, "ppo_epochs": 1, "iterations": iterations})
        return train_policy(config, reporter), reporter

    first, _ = run(ppo_setup["policy"], "first", iterations=1)
    result, reporter = run(first["policy_dir"], "second", iterations=2)
    assert_reference_is_the_start(reporter)
    assert (Path(result["policy_dir"]) / "adapter_config.json").is_file()


def test_dpo_settings_are_checked():
    def config(**changes):
        return PolicyTrainingConfig(policy="p", reward_model="r", prompts_file="f",
                                    output_dir="o", **FAST_DPO | changes)

    assert config(batch_size=12, mini_batch_size=4).num_generations == 8  # K need not divide it
    with pytest.raises(ConfigError, match="num_generations: must be 2 or more"):
        config(num_generations=1)
    with pytest.raises(ConfigError, match="iterations: must be between 1 and 100"):
        config(iterations=0)
    with pytest.raises(ConfigError, match="kl_coef: must be above 0 for dpo"):
        config(kl_coef=0.0)


@pytest.fixture
def prompt_project(project, var_dir):
    import_policy_prompts(project, 24)
    return project


@pytest.mark.django_db
def test_a_dpo_policy_job_registers_a_policy_with_its_iterations(prompt_project, ppo_setup,
                                                                 ppo_catalog):
    reward = ModelArtifact.objects.create(project=prompt_project, name="rm", version=1,
                                          kind="reward", base_model="tiny",
                                          path=ppo_setup["reward"])
    job, _ = request_job(prompt_project, "policy",
                         params={**FAST_DPO, "num_generations": 4, "ppo_epochs": 1},
                         base=ppo_catalog["policy"], reward=reward)
    services.job_run(job.id)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    policy = ModelArtifact.objects.get(job=job)
    assert policy.kind == "policy" and policy.metrics["algorithm"] == "dpo"
    assert [it["iteration"] for it in policy.metrics["iterations"]] == [1, 2]
    assert {"policy_reward", "reference_reward", "win_rate", "kl"} <= set(
        policy.metrics["eval"])
    lines = KINDS["policy"].report_lines(job)
    assert lines[1].startswith("Iteration 1: mean reward of the samples ")
    assert lines[2].startswith("Iteration 2: ") and lines[3].startswith("Mean reward: policy ")


@pytest.mark.slow
@pytest.mark.django_db
def test_a_round_started_with_iterative_dpo_reaches_ranking(client, carol, project,
                                                            learnable_export, ppo_catalog):
    from .test_rounds import FAST_GENERATE

    plan = {"reward": {"params": FAST_REWARD},
            "policy": {"params": {**FAST_DPO, "num_generations": 4, "ppo_epochs": 1,
                                  "iterations": 1}},
            "generate": {"params": FAST_GENERATE}, "export": {"min_agreement": 0.66}}
    round_ = services.round_start(project=project, created_by=None, plan=plan,
                                  reward_model=ppo_catalog["reward"],
                                  policy_model=ppo_catalog["policy"], algorithm="dpo")
    assert round_.plan["policy"]["params"]["algorithm"] == "dpo"
    export_run(round_.export_id)
    for job in ("reward_job", "policy_job", "generation_job"):
        round_.refresh_from_db()
        services.job_run_and_rounds_advance(getattr(round_, job).id)
    round_.refresh_from_db()
    assert round_.status == "ranking", round_.error
    assert round_.policy_job.params["algorithm"] == "dpo"
    assert round_.policy_artifact.metrics["algorithm"] == "dpo"
    client.force_login(carol)
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert '<span class="muted small algorithm">dpo</span>' in page
    assert '<option value="dpo" selected>dpo</option>' in page  # the next round: as this one


@pytest.mark.django_db
def test_the_rounds_form_sets_the_algorithm(client, carol, project, learnable_export,
                                            catalog):
    client.force_login(carol)
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert '<option value="ppo" selected>ppo</option>' in page  # the default, first
    started = client.post(f"/projects/{project.slug}/rounds/", {
        "reward_model": catalog["reward"], "policy_model": catalog["policy"],
        "algorithm": "dpo"})
    assert started.status_code == 302
    assert Round.objects.get().plan["policy"]["params"]["algorithm"] == "dpo"
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert '<span class="muted small algorithm">dpo</span>' in page


@pytest.mark.django_db
def test_the_rounds_form_goes_on_from_the_round_a_new_one_starts_from(client, carol, project,
                                                                      learnable_export, catalog):
    """A failed round is not what the next one goes on from: the form proposes the algorithm
    and "go on" choice of the last round that did not fail, as round_start uses it."""
    client.force_login(carol)
    client.post(f"/projects/{project.slug}/rounds/", {
        "reward_model": catalog["reward"], "policy_model": catalog["policy"],
        "algorithm": "dpo"})
    Round.objects.filter(number=1).update(status=Round.Status.FAILED, error="stopped")
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert '<option value="ppo" selected>ppo</option>' in page  # not the failed round's dpo
    assert "go on from the last round&#x27;s" not in page  # nothing finished to go on from


@pytest.mark.slow
@pytest.mark.django_db
def test_a_round_can_train_its_policy_by_dpo_on_the_labelers_own_pairs(
        client, carol, project, learnable_export, ppo_catalog):
    """dpo-labelers: the policy step is a DPO job on the round's snapshot (the pairs the
    labelers ranked), not on the reward model's picks; the reward model still judges."""
    from .test_rounds import FAST_GENERATE
    from .test_sft_dpo import FAST_DPO as FAST_OFFLINE_DPO

    plan = {"reward": {"params": FAST_REWARD}, "generate": {"params": FAST_GENERATE},
            "dpo": {"params": {**FAST_OFFLINE_DPO, "epochs": 1.0}},
            "export": {"min_agreement": 0.66}}
    round_ = services.round_start(project=project, created_by=None, plan=plan,
                                  reward_model=ppo_catalog["reward"],
                                  policy_model=ppo_catalog["policy"], algorithm="dpo-labelers")
    assert round_.policy_algorithm == "dpo-labelers"
    export_run(round_.export_id)
    for job in ("reward_job", "policy_job", "generation_job"):
        round_.refresh_from_db()
        services.job_run_and_rounds_advance(getattr(round_, job).id)
    round_.refresh_from_db()
    assert round_.status == "ranking", round_.error
    assert round_.policy_job.kind == "dpo"
    assert round_.policy_job.export_id == round_.export_id  # the labelers' pairs
    assert round_.policy_artifact.kind == "policy"
    assert round_.reward_artifact is not None
    client.force_login(carol)
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert '<span class="muted small algorithm">dpo-labelers</span>' in page
    assert '<option value="dpo-labelers" selected>dpo-labelers</option>' in page


@pytest.mark.django_db
def test_an_unknown_round_algorithm_is_refused_naming_the_choices(project, learnable_export,
                                                                  catalog):
    from config.errors import Invalid

    with pytest.raises(Invalid, match="algorithm: must be one of ppo, rloo, grpo, dpo, "
                                      "dpo-labelers"):
        services.round_start(project=project, created_by=None, reward_model=catalog["reward"],
                             policy_model=catalog["policy"], algorithm="sgd")
    assert not Round.objects.exists()
