"""manage.py train_reward_model and train_policy (run_job KIND takes the same arguments)."""

import io
import re

import pytest
from django.core.management import CommandError, call_command

from training.ml.synthetic import preference_rows, write_rows

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
HELD_OUT = re.compile(r"^Held-out: (\d+) pairs, .*; accuracy ([\d.]+), mean margin", re.M)


def test_inline_training_on_a_jsonl_file_prints_the_held_out_accuracy(project, var_dir,
                                                                       tiny_models, tmp_path):
    from training.models import ModelArtifact, TrainingJob

    train = write_rows(tmp_path / "train.jsonl", preference_rows(32, seed=1))
    test = write_rows(tmp_path / "test.jsonl", preference_rows(8, seed=2, first_id=100))
    out = io.StringIO()
    call_command("train_reward_model", "--project", project.slug, "--dataset", str(train),
                 "--eval-file", str(test), "--base-model", str(tiny_models["reward"]),
                 "--out", str(tmp_path / "rm"), "--epochs", "3", "--batch-size", "24",
                 "--learning-rate", "0.003", "--inline", stdout=out)
    text = out.getvalue()
    held_out = HELD_OUT.search(text)
    assert held_out and int(held_out[1]) == 48, text
    assert float(held_out[2]) >= 0.85
    assert (tmp_path / "rm" / "config.json").is_file()  # --out: the model folder's files
    # --inline runs a real job of the project, which registers its model.
    job = TrainingJob.objects.get()
    assert job.status == "succeeded" and job.eval_file == str(test)
    assert ModelArtifact.objects.get(job=job).project == project


def test_inline_training_of_an_export(tiny_models, learnable_export, tmp_path):
    out = io.StringIO()
    call_command("train_reward_model", "--dataset", str(learnable_export.id), "--base-model",
                 str(tiny_models["reward"]), "--out", str(tmp_path / "rm"), "--inline",
                 "--epochs", "1", "--lora", stdout=out)
    assert HELD_OUT.search(out.getvalue()), out.getvalue()
    assert (tmp_path / "rm" / "adapter_config.json").is_file()


def test_bad_arguments_are_clear_errors(project, tmp_path, tiny_models):
    from training.models import TrainingJob

    with pytest.raises(CommandError, match="neither an export id nor a file"):
        call_command("train_reward_model", "--dataset", str(tmp_path / "missing.jsonl"),
                     "--base-model", "x", "--inline")
    with pytest.raises(CommandError, match="No finished export with id 999"):
        call_command("train_reward_model", "--dataset", "999", "--base-model", "x")
    train = write_rows(tmp_path / "train.jsonl", preference_rows(2, seed=1))
    with pytest.raises(CommandError, match="--project is needed"):
        call_command("train_reward_model", "--dataset", str(train), "--base-model", "x")
    with pytest.raises(CommandError, match="epochs"):
        call_command("train_reward_model", "--project", project.slug, "--dataset", str(train),
                     "--base-model", "x", "--epochs", "0", "--inline")
    # Neither a model of the catalog nor a folder.
    with pytest.raises(CommandError, match="no model named 'x'"):
        call_command("train_reward_model", "--project", project.slug, "--dataset", str(train),
                     "--base-model", "x", "--inline")
    assert not TrainingJob.objects.exists()


@pytest.fixture
def registered_reward(project, var_dir, ppo_setup):
    from training.models import ModelArtifact

    return ModelArtifact.objects.create(project=project, name="rm", version=1, kind="reward",
                                        base_model="tiny", path=ppo_setup["reward"])


def test_train_policy_inline_on_a_prompt_file(ppo_setup, registered_reward, tmp_path):
    out = io.StringIO()
    call_command("train_policy", "--policy", ppo_setup["policy"], "--reward-model",
                 str(registered_reward.id), "--prompts", ppo_setup["prompts"], "--out",
                 str(tmp_path / "policy"), "--total-episodes", "32", "--response-length", "8",
                 "--learning-rate", "0.003", "--inline", stdout=out)
    text = out.getvalue()
    assert "Mean reward: policy" in text and "win rate" in text
    assert (tmp_path / "policy" / "adapter_config.json").is_file()


def test_train_policy_refuses_what_it_cannot_use(project, ppo_setup, tmp_path):
    with pytest.raises(CommandError, match="no reward model with that registry id"):
        call_command("train_policy", "--policy", "x", "--reward-model", "77", "--prompts",
                     ppo_setup["prompts"])
    with pytest.raises(CommandError, match="mini_batch_size"):
        call_command("train_policy", "--project", project.slug, "--policy", "x",
                     "--reward-model", ppo_setup["reward"], "--prompts", ppo_setup["prompts"],
                     "--mini-batch-size", "5", "--inline")


@pytest.fixture
def worker_in_the_foreground(monkeypatch):
    """What a worker would do while the command follows the job: run it, here and now."""
    from training import services
    from training.management import kind_command

    def run_then_follow(job):
        services.job_run_and_rounds_advance(job.id)
        job.refresh_from_db()
        return job

    monkeypatch.setattr(kind_command, "follow", run_then_follow)


def test_a_queued_reward_job_is_followed_and_copied_out(tiny_models, learnable_export,
                                                        tmp_path, worker_in_the_foreground):
    from training.models import ModelArtifact

    out = io.StringIO()
    call_command("train_reward_model", "--dataset", str(learnable_export.id), "--base-model",
                 str(tiny_models["reward"]), "--out", str(tmp_path / "copy"), "--epochs", "1",
                 "--name", "cli-rm", stdout=out)
    assert "Queued job" in out.getvalue() and HELD_OUT.search(out.getvalue()), out.getvalue()
    assert ModelArtifact.objects.get().name == "cli-rm"
    assert (tmp_path / "copy" / "config.json").is_file()


def test_a_queued_policy_job_on_a_prompt_file(ppo_setup, registered_reward, tmp_path,
                                              worker_in_the_foreground):
    from training.models import ModelArtifact

    out = io.StringIO()
    call_command("train_policy", "--policy", ppo_setup["policy"], "--reward-model",
                 str(registered_reward.id), "--prompts", ppo_setup["prompts"],
                 "--total-episodes", "16", "--response-length", "6", "--out",
                 str(tmp_path / "policy"), stdout=out)
    assert "Queued job" in out.getvalue() and "Mean reward: policy" in out.getvalue()
    assert ModelArtifact.objects.filter(kind="policy").count() == 1
    assert (tmp_path / "policy" / "adapter_config.json").is_file()
    with pytest.raises(CommandError, match="--prompts other-project: no such file"):
        call_command("train_policy", "--policy", "x", "--reward-model",
                     str(registered_reward.id), "--prompts", "other-project")
