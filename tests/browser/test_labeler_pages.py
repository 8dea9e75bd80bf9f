"""A labeler's way round their project (issue 18, item 2): the project page offers to start or
resume, and "my rankings" shows each ranking as ordered tiers of short plain-text previews,
then the prompts skipped with their reasons. In chromium against the live server."""

import pytest

from annotate.models import Assignment, Project, Ranking
from annotate.rendering import plain_preview
from tests.browser.conftest import screenshots
from tests.browser.test_rank_page import (
    card_ids,
    join,
    make_project,
    press,
    wait_for_rank_page,
    wait_until_left,
)

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")

PASSWORD = "mira-password-5127"


def markdown_prompts(tag: str) -> list[dict]:
    """Completions in Markdown, as models write them: code, bold, a code block, a long one."""
    return [
        {
            "id": f"{tag}-{n}",
            "prompt": f"Question {n}: how do I print in **Python**?",
            "completions": [
                f"Use `print()` on prompt {n}: **simple**.",
                f"Call it in a script:\n\n```python\nprint('hi {n}')\n```\n",
                f"_Maybe_ write to `sys.stdout` for prompt {n}.",
                f"A long answer for prompt {n}: " + "word " * 60,
            ],
        }
        for n in (1, 2, 3)
    ]


@pytest.fixture
def mira(django_user_model):
    return django_user_model.objects.create_user("mira", password=PASSWORD)


def log_in(page, live_server, user, next_path: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}{next_path}")


def test_the_project_page_starts_then_resumes_and_my_rankings_shows_tiers_and_skips(
        page, live_server, mira):
    project = make_project("code-help", prompts=markdown_prompts("code-help"))
    join(project, mira)
    log_in(page, live_server, mira, f"/projects/{project.slug}/")

    # Nothing ranked, nothing held: start; "my rankings" is there from the first visit.
    nav = page.locator("#your-work")
    expect(nav.locator("#start-ranking")).to_have_text("Start ranking")
    expect(nav.locator("#my-rankings")).to_have_text("My rankings")
    screenshots(page, "labeler-project-start")
    nav.locator("#start-ranking").click()
    prompt_id = wait_for_rank_page(page)
    ids = card_ids(page)

    # Leaving with the prompt held: the project page offers to resume it.
    page.goto(f"{live_server.url}/projects/{project.slug}/")
    expect(page.locator("#start-ranking")).to_have_text("Resume")
    page.locator("#start-ranking").click()
    assert wait_for_rank_page(page) == prompt_id

    press(page, "2", "1", "4", "3", "Enter")  # cards 2, 1, 4, 3 best first
    wait_until_left(page, prompt_id)
    skipped_id = wait_for_rank_page(page)
    page.fill("#skip-reason", "needs someone who knows `asyncio`")
    page.locator("#skip button").click()
    wait_until_left(page, skipped_id)
    assert Assignment.objects.get(labeler=mira, prompt_id=skipped_id).status == "skipped"

    page.goto(f"{live_server.url}/projects/{project.slug}/")
    expect(page.locator("#your-work")).to_contain_text("You have ranked 1 prompt here and "
                                                       "skipped 1.")
    expect(page.locator("#start-ranking")).to_have_text("Resume")  # the third prompt is held
    page.locator("#my-rankings").click()
    page.wait_for_url(f"{live_server.url}/projects/{project.slug}/my-rankings/")

    ranking = Ranking.objects.get(labeler=mira, prompt_id=prompt_id)
    assert ranking.tiers == [[ids[1]], [ids[0]], [ids[3]], [ids[2]]]
    texts = dict(ranking.prompt.completions.values_list("id", "text"))
    item = page.locator("ol.rankings > li")
    expect(item).to_have_count(1)
    expect(item.locator(".prompt-preview")).to_have_text(
        f"Question {ranking.prompt.external_id[-1]}: how do I print in Python?")  # no **
    tiers = item.locator("ol.tiers > li")
    expect(tiers).to_have_count(4)
    expect(tiers.locator(".place")).to_have_text(["1", "2", "3", "4"])
    expect(tiers.locator(".key")).to_have_text(["2", "1", "4", "3"])  # the cards as shown
    previews = tiers.locator(".preview-text").all_text_contents()
    assert previews == [plain_preview(texts[tier[0]]) for tier in ranking.tiers]
    n = ranking.prompt.external_id[-1]
    assert f"Use print() on prompt {n}: simple." in previews  # not `print()` nor **simple**
    assert f"Call it in a script: print('hi {n}')" in previews  # a code block, on one line
    assert not any(mark in p for p in previews for mark in ("`", "**", "_Maybe_"))
    assert all(len(p) <= 120 for p in previews)
    assert any(p.endswith("…") for p in previews)  # the long answer is cut
    expect(page.locator("table.skips tbody tr")).to_have_count(1)
    expect(page.locator("table.skips .reason")).to_have_text(
        "needs someone who knows `asyncio`")  # the reason as typed: plain text, not Markdown
    screenshots(page, "my-rankings")
    expect(item.get_by_role("link", name="Revise")).to_have_attribute(
        "href", f"/projects/{project.slug}/rank/{prompt_id}/")


def test_a_frozen_project_offers_my_rankings_but_no_ranking(page, live_server, mira):
    project = make_project("frozen-help", prompts=markdown_prompts("frozen-help"))
    join(project, mira)
    Project.objects.filter(id=project.id).update(is_frozen=True)
    log_in(page, live_server, mira, f"/projects/{project.slug}/")
    expect(page.locator("#start-ranking")).to_have_count(0)
    expect(page.locator("#my-rankings")).to_be_visible()
