"""The writing page of a demonstrate project, in a real browser against the live server.

Every test checks what reached the database, not only what the page shows.
"""

import json
import re

import pytest

from annotate import services
from annotate.models import Demonstration, Membership, Project, Prompt
from tests.browser.conftest import screenshots

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")

PASSWORD = "wren-password-5521"


def writing_project() -> Project:
    """A text prompt, then a chat, each with 3 completions."""
    project = services.project_create(
        created_by=None, slug="writing", name="Writing", criterion="helpfulness",
        completions_per_prompt=3, labelers_per_prompt=1, annotation_mode="demonstrate",
        instructions="Write what a **helpful** assistant would say.")
    text = Prompt.objects.create(project=project, text="Say **hello** kindly.")
    chat = Prompt.objects.create(project=project, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi! Say *hello*?"}])
    for prompt in (text, chat):
        for position in range(3):
            prompt.completions.create(position=position,
                                      text=f"Draft {position} for prompt {prompt.id}: hello.")
    return project


@pytest.fixture
def wren(django_user_model):
    user = django_user_model.objects.create_user("wren", password=PASSWORD)
    return user


def log_in_and_write(page, live_server, user, project) -> int:
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.slug}/rank/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return wait_for_write_page(page)


def wait_for_write_page(page) -> int:
    page.wait_for_url(re.compile(r"/rank/\d+/$"))
    expect(page.locator("#write-app")).to_have_attribute("data-state", "ready")
    return write_data(page)["promptId"]


def write_data(page) -> dict:
    return json.loads(page.locator("#write-data").text_content())


def card_ids(page) -> list[int]:
    return page.eval_on_selector_all(
        "article.completion", "cards => cards.map(c => Number(c.dataset.completionId))")


def test_press_2_edit_and_ctrl_enter_stores_the_edit_of_completion_2(page, live_server, wren):
    project = writing_project()
    services.membership_set(project=project, user=wren, role=Membership.Role.LABELER)
    prompt_id = log_in_and_write(page, live_server, wren, project)
    second = card_ids(page)[1]
    second_text = Prompt.objects.get(id=prompt_id).completions.get(id=second).text
    expect(page.locator("#submit-demonstration")).to_be_disabled()
    expect(page.locator("#source-line")).to_have_text("writing from scratch")

    page.keyboard.press("2")
    editor = page.locator("#editor")
    expect(editor).to_have_value(second_text)
    expect(editor).to_be_focused()
    expect(page.locator("#source-line")).to_have_text("editing completion 2")
    page.keyboard.type(" And have a nice day!")
    screenshots(page, "demonstrate-editing")

    # Escape leaves the editor; the keys work again: ? opens the key help, Escape closes it.
    page.keyboard.press("Escape")
    expect(editor).not_to_be_focused()
    page.keyboard.press("?")
    expect(page.locator("#key-help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#key-help")).to_be_hidden()

    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    editor.focus()
    page.keyboard.press("Control+Enter")
    expect(page.locator("#save-status")).to_have_text(re.compile(r"^Saved"))
    page.wait_for_url(lambda url: f"/rank/{prompt_id}/" not in url)
    wait_for_write_page(page)
    # The next prompt is a chat: its turns are shown as turns.
    expect(page.locator("#prompt .transcript .turn")).to_have_count(2)
    expect(page.locator("#prompt .turn-user em")).to_have_text("hello")

    stored = Demonstration.objects.get(prompt_id=prompt_id, labeler=wren)
    assert stored.text == f"{second_text} And have a nice day!"
    assert stored.source_completion_id == second
    assert stored.time_spent_ms > 0
    assert [url for url in posts if url.endswith("/demonstrations/")] == [
        f"{live_server.url}/api/projects/{project.id}/demonstrations/"]


def test_a_reload_keeps_the_draft_text_and_source(page, live_server, wren):
    project = writing_project()
    services.membership_set(project=project, user=wren, role=Membership.Role.LABELER)
    prompt_id = log_in_and_write(page, live_server, wren, project)
    third = card_ids(page)[2]
    page.keyboard.press("3")
    page.keyboard.press("Control+a")
    page.keyboard.type("My own words, started from three.")
    page.keyboard.press("Escape")
    page.locator("#comment").fill("rewrote it")
    page.reload()
    wait_for_write_page(page)
    expect(page.locator("#draft-notice")).to_be_visible()
    expect(page.locator("#editor")).to_have_value("My own words, started from three.")
    expect(page.locator("#source-line")).to_have_text("editing completion 3")
    expect(page.locator("#comment")).to_have_value("rewrote it")
    expect(page.locator(f"#completion-{third}")).to_have_class(re.compile(r"\bis-source\b"))
    screenshots(page, "demonstrate-draft")

    # Start from scratch forgets the source (after asking, as there is text).
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("0")
    expect(page.locator("#source-line")).to_have_text("writing from scratch")
    page.keyboard.type("Fresh.")
    page.locator("#submit-demonstration").click()
    page.wait_for_url(lambda url: f"/rank/{prompt_id}/" not in url)
    stored = Demonstration.objects.get(prompt_id=prompt_id, labeler=wren)
    assert (stored.text, stored.source_completion_id, stored.comment) == (
        "Fresh.", None, "rewrote it")


def test_an_unanswered_submit_is_retried_with_the_same_key(page, live_server, wren):
    project = writing_project()
    services.membership_set(project=project, user=wren, role=Membership.Role.LABELER)
    prompt_id = log_in_and_write(page, live_server, wren, project)
    api = f"{live_server.url}/api/projects/{project.id}/demonstrations/"
    keys: list[str] = []

    def store_then_drop_answer(route):
        keys.append(json.loads(route.request.post_data)["idempotency_key"])
        if len(keys) == 1:
            route.fetch()  # reaches the server, which stores it
            route.abort()  # ... but the browser never hears back
        else:
            route.continue_()

    page.route(api, store_then_drop_answer)
    page.keyboard.press("i")
    page.keyboard.type("Hello there, kindly.")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#retry-now")).to_be_visible()
    page.locator("#retry-now").click()
    expect(page.locator("#save-status")).to_have_text(re.compile(r"^Saved"))
    assert len(keys) == 2 and keys[0] == keys[1]
    stored = Demonstration.objects.get(prompt_id=prompt_id, labeler=wren)
    assert (stored.text, stored.idempotency_key, stored.revision) == (
        "Hello there, kindly.", keys[0], 1)


def test_skip_with_a_reason_and_the_project_page_says_start_writing(page, live_server, wren):
    project = writing_project()
    services.membership_set(project=project, user=wren, role=Membership.Role.LABELER)
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.slug}/")
    page.fill("#id_username", wren.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#start-ranking")).to_have_text("Start writing")
    page.locator("#start-ranking").click()
    prompt_id = wait_for_write_page(page)
    page.locator("#skip-reason").fill("not sure what is asked")
    page.locator("#skip-button").click()
    page.wait_for_url(lambda url: f"/rank/{prompt_id}/" not in url)
    assignment = wren.assignments.get(prompt_id=prompt_id)
    assert (assignment.status, assignment.skip_reason) == ("skipped", "not sure what is asked")
