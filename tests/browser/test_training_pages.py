"""The demo's admin closes the loop from the training page, choosing every model and
dataset from pickers: a reward model, then a policy on it, then a generation job."""

import re
import shutil

import pytest
from playwright.sync_api import expect

from annotate import services as annotate_services
from annotate.demo import DEMO_SLUG, demo_load
from annotate.models import Project
from tests.browser.conftest import screenshots
from tests.factories import rank_at_random
from training import services
from training.models import ModelArtifact, TrainingJob

pytestmark = [pytest.mark.usefixtures("transactional_db"), pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from training.ml.tiny import build_tiny_models

    folder = tmp_path_factory.mktemp("catalog") / "tiny"
    build_tiny_models(folder)
    return folder


@pytest.fixture
def demo(settings, tmp_path, tiny_folder, django_user_model):
    """The demo as `make run` leaves it, ranked by alice and bob and exported once."""
    settings.VAR_DIR = tmp_path / "var"
    shutil.copytree(tiny_folder, settings.VAR_DIR / "models" / "tiny")
    settings.MODEL_ROOTS = [settings.VAR_DIR / "models"]
    demo_load()
    project = Project.objects.get(slug=DEMO_SLUG)
    rank_at_random(project, [django_user_model.objects.get(username=name)
                             for name in ("alice", "bob")])
    annotate_services.export_create(
        project=project, created_by=None, run_now=True,
        params=annotate_services.ExportParams(min_votes=1, min_agreement=0.5,
                                              test_fraction=0.25, formats=("trl-jsonl",)))
    return project


def start(page, live_server, project, kind: str, choices: dict[str, str],
          settings: dict[str, str] | None = None) -> TrainingJob:
    """Open the training page, pick from the kind's pickers, start; run the job here (the
    worker's part) and come back to its page."""
    page.goto(f"{live_server.url}/projects/{project.slug}/training/")
    section = page.locator(f"#start-{kind}")
    for name, value in choices.items():
        section.locator(f"select[name={name}]").select_option(value)
    for name, value in (settings or {}).items():
        section.locator(f"input[name={name}]").fill(value)
    # The request checks the model in a child process that loads torch: seconds on a
    # loaded 2-core machine, so its navigation gets more than the default 10 s.
    section.locator("button[type=submit]").click(no_wait_after=True)
    page.wait_for_url(re.compile(r"/training/jobs/\d+/$"), timeout=60_000)
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    services.job_run_and_rounds_advance(job_id)
    page.reload()
    expect(page.locator("#job-status")).to_have_text("succeeded")
    return TrainingJob.objects.get(id=job_id)


def test_the_demo_admin_trains_a_reward_model_a_policy_and_generates(page, live_server, demo):
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{demo.slug}/training/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/training/$"))
    screenshots(page, "training-page")
    assert page.locator("input[type=text][name=base]").count() == 0  # no page asks for a path
    reward_section = page.locator("#start-reward")
    # The catalog's reward model and the only export come preselected.
    expect(reward_section.locator("select[name=base]")).to_have_value("tiny/reward")
    assert reward_section.locator("select[name=export] option").count() == 1

    reward = start(page, live_server, demo, "reward", {"base": "tiny/reward"})
    rm = ModelArtifact.objects.get(job=reward)
    assert rm.kind == "reward" and rm.base_model == "tiny/reward"

    page.goto(f"{live_server.url}/projects/{demo.slug}/training/")
    policy_section = page.locator("#start-policy")
    expect(policy_section.locator("select[name=reward]")).to_have_value(f"model:{rm.id}")
    expect(policy_section.locator("select[name=base]")).to_have_value("tiny/policy")
    assert page.locator("#start-reward select[name=base] option",
                        has_text="tiny/policy").count() == 1  # a causal LM may be a base
    assert policy_section.locator("select[name=base] option",
                                  has_text="tiny/reward").count() == 0  # not a generator
    policy_job = start(page, live_server, demo, "policy",
                       {"base": "tiny/policy", "reward": f"model:{rm.id}"},
                       {"total_episodes": "32", "response_length": "16"})
    policy = ModelArtifact.objects.get(job=policy_job)
    assert policy.kind == "policy" and policy_job.reward_artifact == rm

    page.goto(f"{live_server.url}/projects/{demo.slug}/training/")
    generate_section = page.locator("#start-generate")
    expect(generate_section.locator("select[name=base]")).to_have_value(f"model:{policy.id}")
    generation = start(page, live_server, demo, "generate", {"base": f"model:{policy.id}"})
    written = generation.result["written"]
    assert written > 0 and demo.prompts.count() == 16 + written
    assert demo.rounds.get().prompt_import_id == generation.result["prompt_import_id"]
    page.goto(f"{live_server.url}/projects/{demo.slug}/rounds/")
    expect(page.get_by_text(f"{written} generated prompts")).to_be_visible()
    screenshots(page, "rounds-page")
    page.goto(f"{live_server.url}/training/jobs/{generation.id}/")
    screenshots(page, "generation-job")

