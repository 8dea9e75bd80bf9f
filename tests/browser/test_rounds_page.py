"""The loop for a newcomer (issue 16): on the demo as `make run` leaves it, the admin starts
round 1 from the rounds page with the preselected tiny models; the round runs its steps
(here, the worker's part runs in the test) and reaches "Ready to rank"; two labelers rank
the generated prompts; the rounds page then shows the labelers' verdict on round 1's policy
against the reference, with its interval."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotate.services import export_run
from tests.browser.conftest import screenshots
from tests.factories import rank_at_random
from training import services
from training.models import Round

from .test_training_pages import demo, tiny_folder  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.usefixtures("transactional_db"), pytest.mark.slow]


def run_round(round_: Round) -> Round:
    """What the workers do: build the export, then each job; each end moves the round on."""
    export_run(round_.export_id)
    for field in ("reward_job", "policy_job", "generation_job"):
        round_.refresh_from_db()
        assert round_.status not in ("failed", "cancelled"), round_.error
        services.job_run_and_rounds_advance(getattr(round_, f"{field}_id"))
    round_.refresh_from_db()
    return round_


def test_round_one_on_the_demo_shows_the_labelers_verdict(page, live_server, demo):  # noqa: F811
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{demo.slug}/rounds/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/rounds/$"))
    expect(page.locator("select[name=reward_model]")).to_have_value("tiny/reward")
    expect(page.locator("select[name=policy_model]")).to_have_value("tiny/policy")
    # Starting a round checks both models, each in a child process that loads torch and
    # transformers: on a loaded 2-core CI machine that passed the default 10 s.
    page.get_by_role("button", name="Start round 1").click(timeout=90_000)
    expect(page.get_by_text("Round 1 started")).to_be_visible()
    # The page reloads every 5 s while a round runs. Leave it while this thread plays the
    # workers: on the test's in-memory SQLite (shared cache) a reload's read of the jobs
    # table refuses the job's own writes at once ("database table is locked"), which the
    # server's SQLite file in WAL mode never does.
    page.goto("about:blank")

    round_ = run_round(Round.objects.get(project=demo, number=1))
    assert round_.status == "ranking", round_.error
    sources = {s["slot"]: s for s in round_.generation_job.result["sources"]}
    assert sources["base"]["count"] == 2 and sources["reference"] == {
        "slot": "reference", "model": "tiny/policy", "count": 2}
    generated = round_.prompt_import.prompts.all()
    assert generated.exists()
    assert set(generated[0].completions.values_list("model_name", flat=True)) == {
        sources["base"]["model"], "tiny/policy"}

    users = get_user_model().objects
    rank_at_random(demo, [users.get(username="alice"), users.get(username="bob")], seed=1)
    page.goto(f"{live_server.url}/projects/{demo.slug}/rounds/")
    verdict = page.locator("#human-judgment table.judged tbody tr").first
    expect(verdict).to_contain_text(re.compile(
        rf"{re.escape(sources['base']['model'])} beats tiny/policy \d+% \(95% CI \d+-\d+%, "
        r"\d+ comparisons\)"))
    # One judged round: the table, and no chart yet (a line across rounds needs two).
    expect(page.locator("#human-judgment svg")).to_have_count(0)
    expect(page.locator("tr.step-generate .status")).to_have_text("succeeded")
    page.locator("#human-judgment").scroll_into_view_if_needed()
    screenshots(page, "rounds-verdict")
    page.locator("table.steps").first.scroll_into_view_if_needed()
    screenshots(page, "rounds-steps")
