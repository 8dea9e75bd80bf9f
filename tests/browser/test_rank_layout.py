"""The ranking page's layout for long answers (issue 18, item 1), in chromium at 1280x720 and
1920x1080: completions side by side where they fit, the prompt in view, long answers collapsed,
the last completion placed for the labeler, and the key help over the page."""

import os
from pathlib import Path

import pytest

from tests.browser.conftest import screenshots
from tests.browser.test_rank_page import (
    PASSWORD,
    card_ids,
    expect_ranking,
    join,
    log_in_and_rank,
    make_project,
    press,
    rank_data,
    ranking_of,
    wait_for_rank_page,
    wait_until_left,
)

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")

SMALL = {"width": 1280, "height": 720}
LARGE = {"width": 1920, "height": 1080}
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

CODE_40_LINES = "Here is the function:\n\n```python\n" + "\n".join(
    f"    total_{n} = compute(step={n})  # line {n}" for n in range(1, 41)
) + "\n```\n"


def table_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


WIDE_TABLE = "\n".join(
    [table_row(f"column {n}" for n in range(1, 13)), table_row("---" for _ in range(12))]
    + [table_row(f"value {row}.{n}" for n in range(1, 13)) for row in range(12)]
)
LONG_PROSE = "\n\n".join(
    f"Paragraph {n}: a careful answer explains each step, says why it is safe, and gives an "
    "example the reader can try." for n in range(1, 16)
)


def long_prompts(tag: str, k: int, *, prompt_lines: int = 1) -> list[dict]:
    """One prompt with long answers first (a 40-line code block, a wide table, long prose)."""
    answers = [CODE_40_LINES, WIDE_TABLE, LONG_PROSE, "Short answer: call `compute` in a loop."]
    prompt = "\n\n".join(f"Line {n} of the question: how do I sum the steps?"
                         for n in range(1, prompt_lines + 1))
    return [{"id": f"{tag}-1", "prompt": prompt, "completions": answers[:k]}]


@pytest.fixture
def lena(django_user_model):
    return django_user_model.objects.create_user("lena", password=PASSWORD)


def card_with(page, text: str):
    return page.locator("article.completion", has_text=text)


def boxes(page) -> list[dict]:
    return [page.locator(f"#completion-{cid}").bounding_box() for cid in card_ids(page)]


def side_by_side(page) -> bool:
    """Every card on one row, each to the right of the one before."""
    cards = boxes(page)
    return all(abs(right["y"] - left["y"]) < 2 and right["x"] >= left["x"] + left["width"] - 1
               for left, right in zip(cards, cards[1:], strict=False))


def stacked(page) -> bool:
    """Every card below the one before, in one column."""
    cards = boxes(page)
    return all(abs(lower["x"] - upper["x"]) < 2 and lower["y"] >= upper["y"] + upper["height"] - 1
               for upper, lower in zip(cards, cards[1:], strict=False))


# --- columns --------------------------------------------------------------------------------


def test_two_completions_are_side_by_side_at_both_sizes(page, live_server, lena):
    project = make_project("pair", completions_per_prompt=2, prompts=long_prompts("pair", 2))
    join(project, lena)
    page.set_viewport_size(SMALL)
    log_in_and_rank(page, live_server, lena, project)
    for size in (SMALL, LARGE):
        page.set_viewport_size(size)
        assert side_by_side(page), (size, boxes(page))
    expect(page.locator("[data-layout-choice=columns]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#layout-note")).to_be_hidden()
    screenshots(page, "rank-columns-k2")


def test_four_completions_are_side_by_side_when_wide_and_stacked_at_1280(page, live_server, lena):
    project = make_project("four", prompts=long_prompts("four", 4))
    join(project, lena)
    page.set_viewport_size(LARGE)
    log_in_and_rank(page, live_server, lena, project)
    assert side_by_side(page), boxes(page)
    assert all(box["width"] >= 280 for box in boxes(page))
    page.set_viewport_size(SMALL)
    assert stacked(page), boxes(page)
    expect(page.locator("#layout-note")).to_be_visible()  # says why they are not in columns
    press(page, "3", "1")  # two ranked, for the pictures
    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)
    if os.environ.get("RLHF_SCREENSHOTS") == "1":  # the README's pictures, kept small
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_SCREENSHOTS / "rank-stacked-1280.png"))
        page.set_viewport_size({"width": 1600, "height": 900})
        assert side_by_side(page), boxes(page)
        page.screenshot(path=str(README_SCREENSHOTS / "rank-columns-1600.png"))
    screenshots(page, "rank-k4")


def test_the_layout_switch_is_remembered_across_reloads(page, live_server, lena):
    project = make_project("switch", completions_per_prompt=2, prompts=long_prompts("switch", 2))
    join(project, lena)
    page.set_viewport_size(SMALL)
    log_in_and_rank(page, live_server, lena, project)
    assert side_by_side(page)

    page.get_by_role("button", name="Stacked").click()
    expect(page.locator("[data-layout-choice=stacked]")).to_have_attribute("aria-pressed", "true")
    assert stacked(page), boxes(page)
    page.reload()
    wait_for_rank_page(page)
    expect(page.locator("#rank-app")).to_have_attribute("data-layout", "stacked")
    assert stacked(page), boxes(page)
    key = rank_data(page)["layoutKey"]
    assert str(lena.id) in key  # per labeler
    assert page.evaluate("key => localStorage.getItem(key)", key) == "stacked"

    press(page, "c")  # the key switches back
    assert side_by_side(page), boxes(page)
    page.reload()
    wait_for_rank_page(page)
    expect(page.locator("[data-layout-choice=columns]")).to_have_attribute("aria-pressed", "true")
    assert side_by_side(page), boxes(page)


# --- the prompt in view, long completions collapsed --------------------------------------------


def test_the_prompt_stays_in_view_while_the_completions_scroll(page, live_server, lena):
    project = make_project("dock", prompts=long_prompts("dock", 4, prompt_lines=30))
    join(project, lena)
    page.set_viewport_size(SMALL)
    log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)

    page.locator(f"#completion-{ids[-1]}").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    assert page.evaluate("window.scrollY") > 300
    last = page.locator(f"#completion-{ids[-1]}").bounding_box()
    assert last["y"] < SMALL["height"]
    prompt = page.locator("#prompt").bounding_box()
    assert prompt["y"] >= 0 and prompt["y"] + prompt["height"] <= SMALL["height"], prompt
    assert prompt["height"] <= SMALL["height"] * 0.4  # capped ...
    body = page.locator("#prompt-body")
    assert body.evaluate("b => b.scrollHeight > b.clientHeight")  # ... and scrolls inside
    body.evaluate("b => { b.scrollTop = b.scrollHeight; }")
    expect(page.locator("#prompt-body").get_by_text("Line 30 of the question")).to_be_in_viewport()
    screenshots(page, "rank-prompt-docked")


def test_a_long_completion_is_collapsed_and_expands_with_the_key_and_the_button(
        page, live_server, lena):
    project = make_project("long", prompts=long_prompts("long", 4))
    join(project, lena)
    page.set_viewport_size(SMALL)
    log_in_and_rank(page, live_server, lena, project)
    code_card = card_with(page, "Here is the function")
    button = code_card.locator("[data-expand]")
    short_card = card_with(page, "Short answer")

    collapsed = code_card.bounding_box()["height"]
    assert collapsed < 0.7 * SMALL["height"], collapsed  # 40 lines of code are about 800 px
    expect(button).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(short_card.locator("[data-expand]")).to_be_hidden()
    # Three long answers no longer make a page of thousands of pixels.
    assert page.evaluate("document.documentElement.scrollHeight") < 2200

    code_card.locator(".rank-key").focus()
    press(page, "e")  # the one with focus (nothing is selected yet)
    expect(button).to_have_attribute("aria-expanded", "true")
    assert code_card.bounding_box()["height"] > 750
    expect(code_card.get_by_text("line 40")).to_be_attached()
    press(page, "e")
    expect(button).to_have_attribute("aria-expanded", "false")
    assert code_card.bounding_box()["height"] == pytest.approx(collapsed, abs=2)

    button.click()
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(button).to_contain_text("Show less")
    assert code_card.bounding_box()["height"] > 750
    button.click()
    assert code_card.bounding_box()["height"] == pytest.approx(collapsed, abs=2)

    # `e` acts on the selected completion: the wide table, once ranked.
    table_card = card_with(page, "column 12")
    press(page, table_card.get_attribute("data-key"), "e")
    expect(table_card.locator("[data-expand]")).to_have_attribute("aria-expanded", "true")
    expect(button).to_have_attribute("aria-expanded", "false")


# --- the last completion placed --------------------------------------------------------------


def test_with_all_but_one_ranked_the_last_is_placed_and_submit_is_enabled(
        page, live_server, lena):
    project = make_project("auto")
    join(project, lena)
    page.set_viewport_size(SMALL)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)

    press(page, "3", "1", "2")
    expect_ranking(page, [ids[2], ids[0], ids[1], ids[3]])
    expect(page.locator("#submit-ranking")).to_be_enabled()
    expect(page.locator("#save-status")).to_contain_text("placed last")
    press(page, "Backspace")  # takes back the 2 and the 4 placed with it
    expect_ranking(page, [ids[2], ids[0]])
    expect(page.locator("#submit-ranking")).to_be_disabled()
    press(page, "4")
    expect_ranking(page, [ids[2], ids[0], ids[3], ids[1]])
    press(page, "Enter")
    wait_until_left(page, prompt_id)
    assert ranking_of(lena, prompt_id).tiers == [[ids[2]], [ids[0]], [ids[3]], [ids[1]]]


def test_with_the_setting_off_the_last_is_placed_by_hand(page, live_server, lena):
    project = make_project("by-hand", auto_place_last=False)
    join(project, lena)
    page.set_viewport_size(SMALL)
    log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)

    press(page, "3", "1", "2")
    expect_ranking(page, [ids[2], ids[0], ids[1]])
    expect(page.locator("#submit-ranking")).to_be_disabled()
    expect(page.locator("#unranked-list li")).to_have_count(1)


# --- key help ------------------------------------------------------------------------------------


def test_the_key_help_is_an_overlay_in_view_at_1280x720(page, live_server, lena):
    project = make_project("help", prompts=long_prompts("help", 4))
    join(project, lena)
    page.set_viewport_size(SMALL)
    log_in_and_rank(page, live_server, lena, project)
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")

    press(page, "?")
    dialog = page.get_by_role("dialog", name="Keys")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= SMALL["width"] and box["y"] + box["height"] <= SMALL["height"]
    expect(dialog.get_by_text("reset the ranking")).to_be_in_viewport()
    screenshots(page, "rank-key-help")
    press(page, "Tab")  # modal: focus stays in the dialog
    assert page.evaluate("document.activeElement.id") == "key-help-close"
    press(page, "1")  # keys wait until the help is closed
    expect(page.locator("#ranking-list li")).to_have_count(0)
    press(page, "Escape")
    expect(dialog).to_be_hidden()

    page.get_by_role("button", name="all keys").click()
    expect(dialog).to_be_visible()
    page.get_by_role("button", name="close").click()
    expect(dialog).to_be_hidden()
    press(page, "?", "?")
    expect(dialog).to_be_hidden()
