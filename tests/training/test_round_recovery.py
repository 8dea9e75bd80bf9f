"""Rounds that run themselves and recover (issue 16, item 2): a round moves on the moment a
step ends, a failed step is retried with the same or edited settings, a round can be
cancelled, and its page shows each step's status, duration and one-line reason."""

import shutil

import pytest

from annotate.services import export_run
from config.errors import Conflict, Invalid
from training import selectors, services
from training.models import Round, TrainingJob

from .conftest import FAST_REWARD
from .test_generate_text import silent_policy  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

PLAN = {"reward": {"params": FAST_REWARD}, "export": {"min_agreement": 0.66}}


@pytest.fixture
def local_models(settings, tmp_path, tiny_models):
    """The tiny models in a catalog of their own, so a test can take one away."""
    settings.MODEL_ROOTS = [tmp_path / "models"]
    for name in ("reward", "policy"):
        shutil.copytree(tiny_models[name], tmp_path / "models" / name)
    return tmp_path / "models"


def started(project, created_by=None) -> Round:
    return services.round_start(project=project, created_by=created_by, plan=PLAN,
                                reward_model="reward", policy_model="policy")


def failed_at_reward(project, local_models, tiny_models) -> Round:
    """A round whose reward job failed: its base model was gone when the job ran."""
    round_ = started(project)
    export_run(round_.export_id)
    round_.refresh_from_db()
    shutil.rmtree(local_models / "reward")
    services.job_run_and_rounds_advance(round_.reward_job_id)
    shutil.copytree(tiny_models["reward"], local_models / "reward")
    round_.refresh_from_db()
    assert round_.status == "failed"
    return round_


def test_a_round_moves_on_the_moment_its_export_is_built(project, learnable_export,
                                                         local_models):
    round_ = started(project)
    export_run(round_.export_id)  # as the worker does; no tick, no rounds_advance
    round_.refresh_from_db()
    assert round_.status == "training_reward"
    assert round_.reward_job.export_id == round_.export_id


def test_a_listener_failure_does_not_fail_the_export(project, learnable_export, local_models,
                                                     monkeypatch):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr("training.services.rounds.rounds_advance", broken)
    round_ = started(project)
    export_run(round_.export_id)
    round_.export.refresh_from_db()
    assert round_.export.status == "succeeded"


def test_a_failed_step_is_retried_with_edited_settings_and_goes_on(
        project, learnable_export, local_models, tiny_models, carol):
    round_ = failed_at_reward(project, local_models, tiny_models)
    failed_job = round_.reward_job
    retried = services.round_retry(round_, created_by=carol, params={"epochs": 3.0})
    assert (retried.status, retried.error) == ("training_reward", "")
    assert retried.reward_job != failed_job
    assert retried.reward_job.params["epochs"] == 3.0
    assert retried.plan["reward"]["params"]["epochs"] == 3.0  # the next round keeps it
    assert retried.export_id == round_.export_id  # the snapshot is not built again
    services.job_run_and_rounds_advance(retried.reward_job_id)
    retried.refresh_from_db()
    assert retried.status == "training_policy", retried.error
    assert retried.reward_artifact.job == retried.reward_job


def test_a_retry_is_refused_when_it_cannot_be_one(project, learnable_export, local_models,
                                                  tiny_models):
    round_ = failed_at_reward(project, local_models, tiny_models)
    with pytest.raises(Invalid, match="epochs"):
        services.round_retry(round_, created_by=None, params={"epochs": -1.0})
    with pytest.raises(Invalid, match="unknown"):
        services.round_retry(round_, created_by=None, params={"no_such_setting": 1})
    round_.refresh_from_db()
    assert round_.status == "failed"  # nothing started by a refused retry
    assert TrainingJob.objects.filter(kind="reward").count() == 1
    services.round_retry(round_, created_by=None)
    with pytest.raises(Conflict, match="only a failed round"):
        services.round_retry(round_, created_by=None)


def test_a_failed_export_is_retried_from_the_export(project, learnable_export, local_models):
    from annotate.models import Export

    round_ = started(project)
    Export.objects.filter(id=round_.export_id).update(status="failed", error="disk full")
    services.rounds_advance()
    round_.refresh_from_db()
    assert selectors.round_steps(round_)[0].error == "disk full"
    with pytest.raises(Invalid, match="^export: min_votes must be at least 1"):
        services.round_retry(round_, created_by=None, params={"min_votes": 0})
    with pytest.raises(Invalid, match="^export: .*unexpected keyword argument 'bogus'"):
        services.round_retry(round_, created_by=None, params={"bogus": 1})
    round_.refresh_from_db()
    assert round_.status == "failed"  # nothing started by a refused retry
    retried = services.round_retry(round_, created_by=None, params={"min_votes": 1})
    assert retried.status == "exporting" and retried.export_id != round_.export_id
    assert retried.export.params["min_votes"] == 1


def test_a_round_is_cancelled_with_its_running_job(project, learnable_export, local_models):
    round_ = started(project)
    export_run(round_.export_id)
    round_.refresh_from_db()
    cancelled = services.round_cancel(round_)
    assert cancelled.status == "cancelled"
    assert cancelled.reward_job.status == "cancelled"  # it was queued: cancelled at once
    assert services.rounds_advance() == 0
    with pytest.raises(Conflict, match="only a running round"):
        services.round_cancel(cancelled)
    with pytest.raises(Conflict, match="only a failed round"):
        services.round_retry(cancelled, created_by=None)
    # The next round may start; it does not go on from the cancelled one.
    with pytest.raises(Invalid, match="first round needs one"):
        services.round_start(project=project, created_by=None)
    assert started(project).number == 2


def test_the_steps_show_status_duration_and_reason(project, learnable_export, local_models,
                                                   tiny_models):
    round_ = failed_at_reward(project, local_models, tiny_models)
    export, reward, policy, generate = selectors.round_steps(round_)
    assert (export.status, reward.status, policy.status, generate.status) == (
        "succeeded", "failed", "waiting", "waiting")
    assert export.seconds is not None and reward.seconds is not None
    assert reward.error.startswith("Reward model failed: ") and "\n" not in reward.error
    assert reward.job_id == round_.reward_job_id and export.error == ""


def test_the_rounds_page_retries_and_cancels(client, carol, alice, project, learnable_export,
                                             local_models, tiny_models):
    round_ = failed_at_reward(project, local_models, tiny_models)
    client.force_login(carol)
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert "Retry round 1" in page and "Reward model failed: " in page
    assert 'name="retry1-epochs"' in page  # the failed step's settings, to edit
    url = f"/projects/{project.slug}/rounds/1/"
    form = _retry_values(page)
    refused = client.post(url + "retry/", {**form, "retry1-epochs": "-1"}, follow=True)
    assert "epochs: must be above 0 and at most 100" in refused.content.decode()
    incomplete = client.post(url + "retry/", {"retry1-epochs": "2"}, follow=True)
    assert "max_length: This field is required." in incomplete.content.decode()
    round_.refresh_from_db()
    assert round_.status == "failed"
    form["retry1-epochs"] = "2"
    assert client.post(url + "retry/", form).status_code == 302
    round_.refresh_from_db()
    assert round_.status == "training_reward" and round_.reward_job.params["epochs"] == 2.0
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert "Cancel round 1" in page and "Retry round 1" not in page
    client.force_login(alice)  # a labeler of the project
    assert client.post(url + "cancel/").status_code == 403
    client.force_login(carol)
    assert client.post(url + "cancel/").status_code == 302
    round_.refresh_from_db()
    assert round_.status == "cancelled"
    assert client.post(f"/projects/{project.slug}/rounds/9/cancel/").status_code == 404


def _retry_values(page: str) -> dict:
    """The retry form's fields as the page fills them in."""
    import re

    values = {}
    for tag in re.findall(r"<input[^>]*name=\"retry1-[^\"]+\"[^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag).group(1)
        value = re.search(r'value="([^"]*)"', tag)
        if 'type="checkbox"' in tag:
            if "checked" in tag:
                values[name] = "on"
        elif value:
            values[name] = value.group(1)
    for name, body in re.findall(r'<select name="(retry1-[^"]+)"[^>]*>(.*?)</select>', page,
                                 re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', body)
        if chosen:
            values[name] = chosen.group(1)
    return values


def test_a_round_whose_generation_failed_is_retried_and_completes(
        project, learnable_export, local_models, tiny_models, silent_policy):  # noqa: F811
    """The policy (one that only ever writes EOS) is allowed to stop at once: every prompt
    comes out empty, the generation fails, and so the round. Retried with min_new_tokens
    edited, the same policy must write, and the round reaches ranking."""
    from training.models import ModelArtifact

    plan = {**PLAN, "generate": {"params": {"min_new_tokens": 0, "max_new_tokens": 4,
                                            "max_resamples": 1, "previous_count": 0,
                                            "reference_count": 0}}}
    round_ = services.round_start(project=project, created_by=None, plan=plan,
                                  reward_model="reward", policy_model="policy")
    export_run(round_.export_id)
    round_.refresh_from_db()
    services.job_run_and_rounds_advance(round_.reward_job_id)
    round_.refresh_from_db()
    # The policy step, as if PPO had trained the silent policy.
    policy_job = round_.policy_job
    TrainingJob.objects.filter(id=policy_job.id).update(status="succeeded")
    ModelArtifact.objects.create(project=project, name="silent", version=1, kind="policy",
                                 base_model="policy", path=str(silent_policy), job=policy_job)
    services.rounds_advance()
    round_.refresh_from_db()
    assert round_.status == "generating"
    services.job_run_and_rounds_advance(round_.generation_job_id)
    round_.refresh_from_db()
    assert round_.status == "failed"
    assert "every prompt was skipped" in round_.error, round_.error
    assert selectors.round_steps(round_)[3].status == "failed"

    retried = services.round_retry(round_, created_by=None, params={"min_new_tokens": 3})
    assert retried.status == "generating"
    assert retried.generation_job.params["min_new_tokens"] == 3
    services.job_run_and_rounds_advance(retried.generation_job_id)
    retried.refresh_from_db()
    assert retried.status == "ranking", retried.error
    assert retried.prompt_import.prompts.exists()
    assert [s.status for s in selectors.round_steps(retried)] == ["succeeded"] * 4


def test_a_round_needs_rankings_before_it_starts(project, local_models):
    with pytest.raises(Invalid, match="No prompt has 2 rankings yet"):
        started(project)
    assert not Round.objects.exists()


def test_an_export_that_keeps_no_pairs_fails_the_round_before_training(
        project, local_models, make_user):
    """Two labelers ranked the one prompt in opposite orders: no pair reaches 2/3."""
    import io

    from annotate import services as annotate_services

    annotate_services.prompts_import(project=project, filename="p.jsonl", binary=io.BytesIO(
        b'{"prompt": "Q", "completions": ["a", "b", "c", "d"]}\n'))
    for name, reverse in (("ann", False), ("ben", True)):
        labeler = make_user(name)
        annotate_services.membership_set(project=project, user=labeler, role="labeler")
        lease = annotate_services.assignment_next(project=project, labeler=labeler)
        ids = sorted(lease.prompt.completions.values_list("id", flat=True), reverse=reverse)
        annotate_services.ranking_submit(project=project, labeler=labeler,
                                         prompt_id=lease.prompt_id, tiers=[[i] for i in ids],
                                         idempotency_key=name)
    round_ = started(project)
    export_run(round_.export_id)
    round_.refresh_from_db()
    assert round_.status == "failed" and round_.reward_job is None
    assert round_.error == (f"export v{round_.export.version} kept no pairs to train on (a "
                            "pair needs 2 votes and 0.66 agreement): rank more prompts, then "
                            "retry")
