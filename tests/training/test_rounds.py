"""Generation jobs and rounds: a policy writes a round that labelers rank, and a round runs
snapshot -> reward model -> policy -> generation by itself."""

import io
import shutil

import pytest
from django.core.management import call_command

from annotate import services as annotate_services
from annotate.models import Completion, Prompt
from annotate.services import export_run
from annotate.signals import export_finished
from config.errors import Conflict, Invalid
from training import selectors, services
from training.kinds import KINDS
from training.models import Round, TrainingJob
from training.services.rounds import advance_after_export

from .conftest import FAST_REWARD, import_policy_prompts, page_form, request_job
from .test_policy_jobs import FAST_PPO

pytestmark = pytest.mark.django_db

FAST_GENERATE = {"max_new_tokens": 8, "batch_size": 16, "temperature": 1.0}


@pytest.fixture
def prompt_project(project, var_dir):
    import_policy_prompts(project, 12)
    return project


@pytest.mark.slow
def test_a_generation_job_fills_a_round_that_labelers_rank(prompt_project, ppo_catalog, alice):
    job, _ = request_job(prompt_project, "generate", params=FAST_GENERATE,
                         base=ppo_catalog["policy"])
    services.job_run_and_rounds_advance(job.id)  # as the worker's task does
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    round_ = Round.objects.get(project=prompt_project)
    assert (round_.number, round_.status, round_.generation_job) == (1, "ranking", job)
    generated = Prompt.objects.filter(source_import=round_.prompt_import)
    assert generated.count() == 12 and job.result["completions"] == 48
    completion = Completion.objects.filter(prompt__in=generated).first()
    assert completion.model_name == ppo_catalog["policy"]  # its catalog name, not a path
    assert completion.generation_params == {"temperature": 1.0, "top_p": 0.95,
                                            "max_new_tokens": 8, "seed": 0}
    ranked = 0
    while lease := annotate_services.assignment_next(project=prompt_project, labeler=alice):
        ids = list(lease.prompt.completions.values_list("id", flat=True))
        annotate_services.ranking_submit(project=prompt_project, labeler=alice,
                                         prompt_id=lease.prompt_id, tiers=[[i] for i in ids],
                                         idempotency_key=f"a{lease.prompt_id}")
        ranked += lease.prompt.source_import_id == round_.prompt_import_id
    assert ranked == 12
    (row, progress, _), = selectors.rounds_with_progress(prompt_project)
    assert progress == {"prompts": 12, "ranked": 12, "needed": 36}


def test_the_api_queues_a_generation_job(api, carol, prompt_project, ppo_catalog):
    answer = api(carol).post("/api/training-jobs/", {
        "project": prompt_project.id, "kind": "generate", "base_model": ppo_catalog["policy"],
        "params": FAST_GENERATE}, format="json")
    assert answer.status_code == 201 and answer.json()["kind"] == "generate"
    # K is the project's, always: a request cannot set it.
    bad = api(carol).post("/api/training-jobs/", {
        "project": prompt_project.id, "kind": "generate", "base_model": ppo_catalog["policy"],
        "params": {"k": 2}}, format="json")
    assert bad.status_code == 400 and bad.json()["detail"].startswith("params: unknown k;")


def test_the_training_page_starts_a_generation_job(client, carol, prompt_project, ppo_catalog):
    client.force_login(carol)
    changes = {"temperature": 0.9, "top_p": 1.0, "max_new_tokens": 8, "seed": 3}
    started = client.post(f"/projects/{prompt_project.slug}/training/", page_form(
        prompt_project, "generate", base=ppo_catalog["policy"], **changes))
    assert started.status_code == 302
    created = TrainingJob.objects.get(kind="generate")
    # The settings as shown (the kind's defaults), with the changes; no k: it is the project's.
    shown = {k: v for k, v in KINDS["generate"].defaults().items() if v is not None}
    assert created.params == shown | changes and created.base_model == ppo_catalog["policy"]
    missing = client.post(f"/projects/{prompt_project.slug}/training/",
                          page_form(prompt_project, "generate", base="", **changes))
    (form,) = [f for f in missing.context["forms"] if f.kind.name == "generate"]
    assert form.errors == {"base": ["This field is required."]}  # beside the policy picker
    assert b"This field is required." in missing.content


def test_generation_takes_the_projects_k(prompt_project, ppo_catalog):
    with pytest.raises(Invalid, match="^params: unknown k;"):
        request_job(prompt_project, "generate", params={"k": 3}, base=ppo_catalog["policy"])
    with pytest.raises(Invalid, match="temperature"):
        request_job(prompt_project, "generate", params={"temperature": 0},
                    base=ppo_catalog["policy"])
    assert not TrainingJob.objects.exists()


@pytest.mark.slow
def test_a_round_goes_from_snapshot_to_generated_prompts(project, learnable_export,
                                                        ppo_catalog):
    plan = {"reward": {"params": FAST_REWARD}, "policy": {"params": {**FAST_PPO,
                                                                     "total_episodes": 16}},
            "generate": {"params": FAST_GENERATE}, "export": {"min_agreement": 0.66}}
    with pytest.raises(Invalid, match="^reward_model: .*first round"):
        services.round_start(project=project, created_by=None, plan=plan)
    first = services.round_start(project=project, created_by=None, plan=plan,
                                 reward_model=ppo_catalog["reward"],
                                 policy_model=ppo_catalog["policy"])
    assert first.number == 1 and first.status == "exporting"
    with pytest.raises(Conflict, match="still running"):
        services.round_start(project=project, created_by=None)
    export_run(first.export_id)  # a worker would, and the round moves on at once
    for expected in ("training_reward", "training_policy", "generating"):
        first.refresh_from_db()
        assert first.status == expected
        job = {"training_reward": first.reward_job, "training_policy": first.policy_job,
               "generating": first.generation_job}[expected]
        services.job_run_and_rounds_advance(job.id)  # and moves the round on when it ends
    first.refresh_from_db()
    assert first.status == "ranking", first.error
    assert first.reward_artifact.job == first.reward_job
    assert first.policy_artifact.job == first.policy_job
    assert first.policy_job.reward_artifact == first.reward_artifact
    # The tiny policy often ends a question with EOS at once: those prompts are skipped.
    generated = first.generation_job.result
    assert first.prompt_import.prompt_count == generated["written"] > 0
    assert generated["written"] + generated["skipped"] == 32
    # The next round goes on from this round's models, with its plan.
    second = services.round_start(project=project, created_by=None)
    assert second.number == 2 and second.export.version == first.export.version + 1
    assert second.plan["reward"]["model"] == f"model:{first.reward_artifact_id}"
    assert second.plan["policy"]["model"] == f"model:{first.policy_artifact_id}"


def test_a_failed_step_fails_the_round_with_its_reason(project, learnable_export, tiny_models,
                                                       tmp_path, settings):
    # Models that are not in the catalog are refused before anything starts.
    with pytest.raises(Invalid, match="no model named 'missing'"):
        services.round_start(project=project, created_by=None, reward_model="missing",
                             policy_model="x")
    assert not Round.objects.exists()
    # A reward base that is gone by the time its job runs fails the job, and the round.
    settings.MODEL_ROOTS = [tmp_path / "models"]
    for name in ("reward", "policy"):
        shutil.copytree(tiny_models[name], tmp_path / "models" / name)
    round_ = services.round_start(project=project, created_by=None, reward_model="reward",
                                  policy_model="policy")
    export_run(round_.export_id)
    services.rounds_advance()
    round_.refresh_from_db()
    shutil.rmtree(tmp_path / "models" / "reward")
    services.job_run_and_rounds_advance(round_.reward_job_id)
    round_.refresh_from_db()
    assert round_.status == "failed"
    assert round_.error.startswith(
        f"Reward model job {round_.reward_job_id} failed: Reward model failed: "), round_.error


def test_the_rounds_page(client, carol, alice, project, learnable_export, catalog):
    client.force_login(carol)
    assert client.get(f"/projects/{project.slug}/rounds/").status_code == 200
    started = client.post(f"/projects/{project.slug}/rounds/", {
        "reward_model": catalog["reward"], "policy_model": catalog["policy"]})
    assert started.status_code == 302
    assert Round.objects.get().plan["policy"]["model"] == catalog["policy"]
    page = client.get(f"/projects/{project.slug}/rounds/").content.decode()
    assert "Round 1" in page and "Exporting the dataset" in page
    assert "can start once this one is ready" in page and "Start round 2" not in page
    # What the form posts when it goes on from the last round (a stale page: none is shown).
    refused = client.post(f"/projects/{project.slug}/rounds/",
                          {"reward_model": "", "policy_model": ""}, follow=True)
    assert "still running" in refused.content.decode()
    client.force_login(alice)
    assert client.get(f"/projects/{project.slug}/rounds/").status_code == 403


@pytest.mark.slow
def test_generate_completions_inline(prompt_project, ppo_setup):
    out = io.StringIO()
    # An operator's command may name a local folder; K is the project's.
    call_command("generate_completions", "--project", prompt_project.slug, "--policy",
                 ppo_setup["policy"], "--max-new-tokens", "6", "--inline", stdout=out)
    assert ("12 prompts with 48 completions imported into helpful as round 1"
            in out.getvalue()), out.getvalue()


def test_a_failed_export_or_generation_fails_the_round(project, learnable_export, ppo_catalog):
    from annotate.models import Export

    round_ = services.round_start(project=project, created_by=None,
                                  reward_model=ppo_catalog["reward"],
                                  policy_model=ppo_catalog["policy"])
    Export.objects.filter(id=round_.export_id).update(status="failed")
    services.rounds_advance()
    round_.refresh_from_db()
    assert round_.status == "failed" and f"export v{round_.export.version} failed" in round_.error
    # A round waiting for its generation job fails when that job is cancelled.
    job, _ = request_job(project, "generate", params=FAST_GENERATE, base=ppo_catalog["policy"])
    waiting = Round.objects.create(project=project, number=2, status="generating",
                                   generation_job=job)
    services.job_cancel(job)
    services.rounds_advance()
    waiting.refresh_from_db()
    assert waiting.status == "failed" and waiting.error == f"Generation job {job.id} cancelled"


def test_the_minute_tick_reaps_jobs_and_moves_rounds(project, learnable_export, ppo_catalog):
    round_ = services.round_start(project=project, created_by=None,
                                  reward_model=ppo_catalog["reward"],
                                  policy_model=ppo_catalog["policy"])
    # The tick is the safety net for a round that missed its export's news (a worker that
    # died between building the export and telling the rounds).
    export_finished.disconnect(dispatch_uid="training.rounds.export")
    try:
        export_run(round_.export_id)
    finally:
        export_finished.connect(advance_after_export, dispatch_uid="training.rounds.export")
    round_.refresh_from_db()
    assert round_.status == "exporting"
    counts = services.training_tick()
    assert counts["rounds_moved"] == 1 and {"requeued", "failed", "dispatched"} <= set(counts)
    round_.refresh_from_db()
    assert round_.status == "training_reward" and round_.reward_job.status == "queued"
