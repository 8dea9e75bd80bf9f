"""The labeler's rating page (rate mode), in a real browser against the live server.

Lena rates by keyboard alone: digits score the focused completion and move on, j/k move the
focus, Enter submits. Every test checks what reached the database, not only what the page shows.
"""

import json
import re

import pytest

from annotate.models import Assignment, Ranking
from tests.browser.conftest import screenshots
from tests.browser.test_rank_page import (
    PASSWORD,
    join,
    make_project,
    press,
    rankings_api,
    wait_until_left,
)

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture
def lena(django_user_model):
    return django_user_model.objects.create_user("lena", password=PASSWORD)


def rating_project(slug: str = "rated", **fields):
    return make_project(slug, annotation_mode="rate", **fields)


def log_in_and_rate(page, live_server, user, project) -> int:
    """Log in, land on the project's next prompt (the rating page); return its id."""
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.slug}/rank/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return wait_for_rate_page(page)


def wait_for_rate_page(page) -> int:
    page.wait_for_url(re.compile(r"/rank/\d+/$"))
    expect(page.locator("#rate-app")).to_have_attribute("data-state", "ready")
    return rate_data(page)["promptId"]


def rate_data(page) -> dict:
    return json.loads(page.locator("#rate-data").text_content())


def card_ids(page) -> list[int]:
    return page.eval_on_selector_all(
        "article.completion", "cards => cards.map(c => Number(c.dataset.completionId))")


def focused_slot(page):
    """The score row with the focus, as (completion id, aspect)."""
    row = page.locator(".score-row.is-focused")
    expect(row).to_have_count(1)
    return int(row.get_attribute("data-completion-id")), row.get_attribute("data-aspect")


def status(page):
    return page.locator("#save-status")


def overall(ids, *values) -> dict:
    return {str(i): {"overall": value} for i, value in zip(ids, values, strict=True)}


def test_keyboard_only_rating_is_stored_with_the_tiers_it_implies(page, live_server, lena):
    project = rating_project()
    join(project, lena)
    prompt_id = log_in_and_rate(page, live_server, lena, project)
    a, b, c, d = card_ids(page)
    expect(page.locator("#scale-meaning")).to_have_text("1 = worst, 5 = best")
    expect(page.locator("#criterion .criterion-name")).to_have_text("helpfulness")
    assert focused_slot(page) == (a, "overall")  # the first completion has the focus at once

    press(page, "3")  # a: 3, focus moves on to b
    assert focused_slot(page) == (b, "overall")
    press(page, "k", "5")  # back to a, now 5; on to b
    press(page, "2", "j")  # b: 2; c is left for later, d gets the focus
    assert focused_slot(page) == (d, "overall")
    press(page, "2")  # d: 2; the last one, so the focus goes back to c, still unscored
    assert focused_slot(page) == (c, "overall")
    expect(page.locator("#submit-rating")).to_be_disabled()
    press(page, "Enter")  # not yet: c has no score
    expect(status(page)).to_have_text("Give every score first (1 missing).")
    assert not Ranking.objects.exists()

    press(page, "9")  # not on the scale: nothing changes
    expect(status(page)).to_have_text("Scores go from 1 to 5.")
    press(page, "4")
    expect(page.locator("#rating-hint")).to_have_text("All scored. Press Enter to submit.")
    expect(page.locator(f"#completion-{a} [data-score-badge]")).to_have_text("Score 5")
    screenshots(page, "rate-page")
    press(page, "Enter")
    expect(status(page)).to_have_text(re.compile(r"^Saved"))
    wait_until_left(page, prompt_id)

    ranking = Ranking.objects.get(prompt_id=prompt_id, labeler=lena)
    assert ranking.scores == overall([a, b, c, d], 5, 2, 4, 2)
    assert ranking.tiers == [[a], [c], sorted([b, d])]
    assert ranking.displayed_order == [a, b, c, d]
    assert ranking.time_spent_ms > 0
    assert Assignment.objects.get(prompt_id=prompt_id, labeler=lena).status == "ranked"


def test_aspects_are_scored_one_after_the_other(page, live_server, lena):
    """Two aspects on a 1..10 scale: 0 is 10; the focus goes through a completion's aspects,
    then on to the next completion."""
    project = rating_project(rating_scale_min=1, rating_scale_max=10,
                             rating_aspects=["helpfulness", "honesty"])
    join(project, lena)
    prompt_id = log_in_and_rate(page, live_server, lena, project)
    a, b, c, d = card_ids(page)
    expect(page.locator("#scale-meaning")).to_have_text("1 = worst, 10 = best")
    press(page, "0")
    assert focused_slot(page) == (a, "honesty")
    press(page, "6", "7", "7", "3", "1", "5", "5")
    screenshots(page, "rate-page-aspects")
    press(page, "Enter")
    expect(status(page)).to_have_text(re.compile(r"^Saved"))
    wait_until_left(page, prompt_id)
    ranking = Ranking.objects.get(prompt_id=prompt_id, labeler=lena)
    assert ranking.scores == {
        str(a): {"helpfulness": 10, "honesty": 6}, str(b): {"helpfulness": 7, "honesty": 7},
        str(c): {"helpfulness": 3, "honesty": 1}, str(d): {"helpfulness": 5, "honesty": 5}}
    assert ranking.tiers == [[a], [b], [d], [c]]  # means 8, 7, 5, 2


def test_a_reload_keeps_the_draft_and_its_key(page, live_server, lena):
    project = rating_project()
    join(project, lena)
    prompt_id = log_in_and_rate(page, live_server, lena, project)
    a, b, c, d = card_ids(page)
    press(page, "4", "1")
    page.fill("#comment", "b misses the point")
    draft_key = rate_data(page)["draftKey"]
    draft = page.evaluate("key => JSON.parse(localStorage.getItem(key))", draft_key)
    assert draft["scores"] == overall([a, b], 4, 1)

    page.reload()
    wait_for_rate_page(page)
    expect(page.locator("#draft-notice")).to_be_visible()
    expect(page.locator("#comment")).to_have_value("b misses the point")
    chosen = page.locator(f'.score-row[data-completion-id="{b}"] [aria-checked="true"]')
    expect(chosen).to_have_text("1")
    assert focused_slot(page) == (c, "overall")  # on at the first completion left unscored
    press(page, "3", "3", "Enter")
    expect(status(page)).to_have_text(re.compile(r"^Saved"))
    wait_until_left(page, prompt_id)
    ranking = Ranking.objects.get(prompt_id=prompt_id, labeler=lena)
    assert ranking.scores == overall([a, b, c, d], 4, 1, 3, 3)
    assert ranking.comment == "b misses the point"
    assert ranking.idempotency_key == draft["idempotencyKey"]


def test_a_failed_submit_is_retried_with_the_same_key_and_stored_once(page, live_server, lena):
    project = rating_project()
    join(project, lena)
    prompt_id = log_in_and_rate(page, live_server, lena, project)
    aborted: list[dict] = []

    def abort(route):
        aborted.append(json.loads(route.request.post_data))
        route.abort()

    page.route(rankings_api(live_server, project), abort)
    press(page, "5", "4", "3", "2", "Enter")
    expect(status(page)).to_have_text(re.compile(r"Not saved: server unreachable — retrying"))
    assert not Ranking.objects.exists()
    page.unroute(rankings_api(live_server, project))
    page.locator("#retry-now").click()
    expect(status(page)).to_have_text(re.compile(r"^Saved"), timeout=15_000)
    wait_until_left(page, prompt_id)
    ranking = Ranking.objects.get(prompt_id=prompt_id, labeler=lena)
    assert {attempt["idempotency_key"] for attempt in aborted} == {ranking.idempotency_key}
    assert ranking.revision == 1


def test_flags_and_a_skip_with_a_reason(page, live_server, lena):
    project = rating_project()
    join(project, lena)
    first = log_in_and_rate(page, live_server, lena, project)
    page.fill("#skip-reason", "")
    page.locator("#skip-button").click()
    expect(page.locator("#skip-status")).to_have_text("Say why you skip this prompt.")
    page.fill("#skip-reason", "I cannot judge cooking")
    page.locator("#skip-button").click()
    wait_until_left(page, first)
    assert Assignment.objects.get(prompt_id=first, labeler=lena).skip_reason == (
        "I cannot judge cooking")

    second = wait_for_rate_page(page)
    a = card_ids(page)[0]
    page.locator(f'input[data-flag="unsafe"][data-completion-id="{a}"]').check()
    page.locator(".score-row").first.focus()
    press(page, "1", "2", "3", "4", "Enter")
    wait_until_left(page, second)
    assert Ranking.objects.get(prompt_id=second, labeler=lena).flags == {str(a): ["unsafe"]}


def test_the_key_help_lists_the_rating_keys(page, live_server, lena):
    project = rating_project()
    join(project, lena)
    log_in_and_rate(page, live_server, lena, project)
    press(page, "?")
    expect(page.locator("#key-help")).to_be_visible()
    expect(page.locator("#key-help")).to_contain_text("score the focused completion")
    press(page, "5")  # the help is modal: no score
    press(page, "Escape")
    expect(page.locator("#key-help")).to_be_hidden()
    expect(page.locator(".score-point.is-on")).to_have_count(0)


def test_revising_a_rating_starts_from_the_saved_scores(page, live_server, lena):
    project = rating_project()
    join(project, lena)
    prompt_id = log_in_and_rate(page, live_server, lena, project)
    a, b, c, d = card_ids(page)
    press(page, "5", "4", "3", "2", "Enter")
    wait_until_left(page, prompt_id)

    page.goto(f"{live_server.url}/projects/{project.slug}/rank/{prompt_id}/")
    wait_for_rate_page(page)
    expect(page.locator("#revising-notice")).to_contain_text("revision 1")
    expect(page.locator(f"#completion-{d} [data-score-badge]")).to_have_text("Score 2")
    assert focused_slot(page) == (a, "overall")  # every score is set: from the top
    press(page, "j", "j", "j", "5", "Enter")  # d was the worst; now it ties with a
    expect(status(page)).to_have_text(re.compile(r"^Saved \(revision 2\)"))
    wait_until_left(page, prompt_id)
    ranking = Ranking.objects.get(prompt_id=prompt_id, labeler=lena)
    assert ranking.revision == 2 and ranking.scores == overall([a, b, c, d], 5, 4, 3, 5)
    assert ranking.tiers == [sorted([a, d]), [b], [c]]
    assert ranking.revisions.get().scores == overall([a, b, c, d], 5, 4, 3, 2)
