"""The labeler's ranking page, in a real browser against the live server.

Every test checks what reached the database, not only what the page shows.
"""

import io
import json
import os
import re
from pathlib import Path

import pytest

from annotate import services
from annotate.demo import DEMO_FILE, DEMO_INSTRUCTIONS
from annotate.models import (
    Assignment,
    Completion,
    Membership,
    Project,
    Ranking,
    RankingRevision,
)
from tests.browser.conftest import screenshots

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")

PASSWORD = "lena-password-8431"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def plain_prompts(tag: str) -> list[dict]:
    """A text prompt, then a chat one."""
    return [
        {
            "id": f"{tag}-1",
            "prompt": f"Prompt 1 of {tag}: say **hello** in a helpful way.",
            "completions": [f"Answer {letter} to prompt 1: hello." for letter in "ABCD"],
        },
        {
            "id": f"{tag}-2",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi! Can you say *hello*?"},
                {"role": "assistant", "content": "Of course."},
                {"role": "user", "content": "Then say it twice."},
            ],
            "completions": [f"Answer {letter} to prompt 2: hello hello." for letter in "ABCD"],
        },
    ]


def make_project(slug: str = "helpful", *, prompts: list[dict] | None = None, **fields) -> Project:
    settings = {
        "name": slug.replace("-", " ").title(),
        "criterion": "helpfulness",
        "completions_per_prompt": 4,
        "labelers_per_prompt": 2,
        "allow_ties": False,
    } | fields
    project = services.project_create(created_by=None, slug=slug, **settings)
    lines = "\n".join(json.dumps(row) for row in prompts or plain_prompts(slug)).encode()
    services.prompts_import(project=project, binary=io.BytesIO(lines), filename="p.jsonl")
    return project


@pytest.fixture
def lena(django_user_model):
    return django_user_model.objects.create_user("lena", password=PASSWORD)


def join(project: Project, user) -> None:
    services.membership_set(project=project, user=user, role=Membership.Role.LABELER)


# --- page helpers ---------------------------------------------------------------------------


def log_in_and_rank(page, live_server, user, project: Project) -> int:
    """Log in through the login page, land on the project's next prompt; return its id."""
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.slug}/rank/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return wait_for_rank_page(page)


def wait_for_rank_page(page) -> int:
    page.wait_for_url(re.compile(r"/rank/\d+/$"))
    expect(page.locator("#rank-app")).to_have_attribute("data-state", "ready")
    return rank_data(page)["promptId"]


def rank_data(page) -> dict:
    return json.loads(page.locator("#rank-data").text_content())


def card_ids(page) -> list[int]:
    """Completion ids in the order the cards are shown (keys 1..K)."""
    return page.eval_on_selector_all(
        "article.completion", "cards => cards.map(c => Number(c.dataset.completionId))"
    )


def ranked_ids(page) -> list[int]:
    return page.eval_on_selector_all(
        "#ranking-list li.rank-item", "items => items.map(i => Number(i.dataset.completionId))"
    )


def rank_numbers(page) -> list[str]:
    return page.locator("#ranking-list .rank-num").all_text_contents()


def expect_ranking(page, ids: list[int]) -> None:
    """Wait until the ranking list shows `ids` in this order."""
    try:
        page.wait_for_function(
            """expected => JSON.stringify(
                 [...document.querySelectorAll('#ranking-list li.rank-item')]
                   .map(item => Number(item.dataset.completionId))) === JSON.stringify(expected)""",
            arg=ids,
            timeout=5000,
        )
    except Exception:  # show the difference rather than a timeout
        assert ranked_ids(page) == ids
        raise


def press(page, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def wait_until_left(page, prompt_id: int) -> None:
    """Wait until the page has moved on from `prompt_id`'s ranking page."""
    page.wait_for_url(lambda url: f"/rank/{prompt_id}/" not in url)


def read_draft(page) -> dict | None:
    key = rank_data(page)["draftKey"]
    return page.evaluate("key => JSON.parse(localStorage.getItem(key))", key)


def status(page):
    return page.locator("#save-status")


def ranking_of(user, prompt_id: int) -> Ranking:
    return Ranking.objects.get(prompt_id=prompt_id, labeler=user)


# --- a. keyboard ----------------------------------------------------------------------------


def test_keyboard_only_ranking_is_stored_and_moves_to_the_next_prompt(page, live_server, lena):
    project = make_project()
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)
    keys = page.eval_on_selector_all("article.completion", "cs => cs.map(c => c.dataset.key)")
    assert keys == ["1", "2", "3", "4"]
    expect(page.locator("#submit-ranking")).to_be_disabled()

    # 3, 1, 2, undo the 2, then 4, 2: completion 3 is best, 2 worst.
    press(page, "3", "1", "2", "Backspace", "4", "2")
    expect_ranking(page, [ids[2], ids[0], ids[3], ids[1]])
    # The last one pressed is selected; ArrowUp moves it above completion 4.
    expect(page.locator(f"#rank-item-{ids[1]}")).to_have_attribute("aria-selected", "true")
    press(page, "ArrowUp")
    expected = [ids[2], ids[0], ids[1], ids[3]]
    expect_ranking(page, expected)
    assert rank_numbers(page) == ["1", "2", "3", "4"]
    press(page, "t")  # ties are off in this project: nothing changes
    expect_ranking(page, expected)
    expect(page.locator(f"#completion-{ids[2]} [data-rank-badge]")).to_have_text("Rank 1")
    expect(page.locator(f"#completion-{ids[3]} [data-rank-badge]")).to_have_text("Rank 4")
    expect(page.locator("#submit-ranking")).to_be_enabled()

    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    press(page, "Enter", "Enter", "Enter")  # impatient: still one request
    expect(status(page)).to_have_text(re.compile(r"^Saved"))
    wait_until_left(page, prompt_id)
    next_prompt_id = wait_for_rank_page(page)
    assert [url for url in posts if url.endswith("/rankings/")] == [
        f"{live_server.url}/api/projects/{project.id}/rankings/"
    ]
    assert next_prompt_id != prompt_id
    # The next prompt is a chat: shown as its transcript, turn by turn.
    expect(page.locator("#prompt .transcript .turn")).to_have_count(4)
    expect(page.locator("#prompt .turn-user em")).to_have_text("hello")
    expect(page.locator("#progress-done")).to_have_text("1")

    ranking = ranking_of(lena, prompt_id)
    assert ranking.tiers == [[completion_id] for completion_id in expected]
    assert ranking.displayed_order == ids
    assert ranking.time_spent_ms > 0
    assert ranking.revision == 1
    assert Assignment.objects.get(prompt_id=prompt_id, labeler=lena).status == "ranked"


# --- b. drag and drop -------------------------------------------------------------------------


def test_drag_and_drop_with_the_mouse_only(page, live_server, lena):
    # Every card placed by hand, the last one too: the project does not place it.
    project = make_project(auto_place_last=False)
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)

    # Cards into the ranking: 2 onto the empty list, then 4 and 1 below it.
    expect(page.locator("#drop-end")).to_be_hidden()
    page.drag_and_drop(f"#completion-{ids[1]} .completion-head h3", "#ranking-list")
    expect_ranking(page, [ids[1]])
    for index in (3, 0):
        page.drag_and_drop(f"#completion-{ids[index]} .completion-head h3", "#drop-end")
    expect_ranking(page, [ids[1], ids[3], ids[0]])
    # 1 back out onto the unranked ones; then from there onto the middle of 4, taking its place.
    page.drag_and_drop(f"#rank-item-{ids[0]}", "#unranked")
    expect_ranking(page, [ids[1], ids[3]])
    page.drag_and_drop(f"#unranked-list li[data-completion-id='{ids[0]}']", f"#rank-item-{ids[3]}")
    expect_ranking(page, [ids[1], ids[0], ids[3]])
    page.drag_and_drop(f"#completion-{ids[2]} .completion-head h3", "#drop-end")
    expect_ranking(page, [ids[1], ids[0], ids[3], ids[2]])
    expect(page.locator("#drop-end")).to_be_hidden()

    # Reorder the list: the last item up onto the second, then the first down onto the last.
    page.drag_and_drop(f"#rank-item-{ids[2]}", f"#rank-item-{ids[0]}")
    expect_ranking(page, [ids[1], ids[2], ids[0], ids[3]])
    page.drag_and_drop(f"#rank-item-{ids[1]}", f"#rank-item-{ids[3]}")
    expected = [ids[2], ids[0], ids[3], ids[1]]
    expect_ranking(page, expected)
    expect(page.locator(f"#completion-{ids[1]} [data-rank-badge]")).to_have_text("Rank 4")

    page.click("#submit-ranking")
    wait_until_left(page, prompt_id)
    assert ranking_of(lena, prompt_id).tiers == [[completion_id] for completion_id in expected]


# --- c. ties ----------------------------------------------------------------------------------


def test_ties_by_keyboard(page, live_server, lena):
    project = make_project("tied", allow_ties=True)
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)

    press(page, "1", "2", "t")  # 2 ties with 1
    expect_ranking(page, [ids[0], ids[1]])
    assert rank_numbers(page) == ["1", "1"]
    press(page, "3", "4", "t")  # 4 ties with 3 ...
    expect(page.locator(f"#rank-item-{ids[3]}")).to_have_class(re.compile(r"\bis-tied\b"))
    assert rank_numbers(page) == ["1", "1", "2", "2"]
    press(page, "t")  # ... and unties again
    expect(page.locator(f"#rank-item-{ids[3]}")).not_to_have_class(re.compile(r"\bis-tied\b"))
    assert rank_numbers(page) == ["1", "1", "2", "3"]
    expect(page.locator(f"#completion-{ids[1]} [data-rank-badge]")).to_have_text("Rank 1 (tie)")

    press(page, "Enter")
    wait_until_left(page, prompt_id)
    assert ranking_of(lena, prompt_id).tiers == [[ids[0], ids[1]], [ids[2]], [ids[3]]]


# --- d. drafts ------------------------------------------------------------------------------------


def test_a_reload_restores_the_draft_and_reuses_its_idempotency_key(page, live_server, lena):
    project = make_project()
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)
    draft_key = rank_data(page)["draftKey"]

    press(page, "2", "4")
    expect_ranking(page, [ids[1], ids[3]])
    draft = read_draft(page)
    assert draft["tiers"] == [[ids[1]], [ids[3]]]
    assert draft["idempotencyKey"]

    page.reload()
    wait_for_rank_page(page)
    expect_ranking(page, [ids[1], ids[3]])
    expect(page.locator("#draft-notice")).to_be_visible()
    expect(page.locator("#draft-notice")).to_contain_text("Draft restored")

    press(page, "1", "3", "Enter")
    wait_until_left(page, prompt_id)
    ranking = ranking_of(lena, prompt_id)
    assert ranking.tiers == [[ids[1]], [ids[3]], [ids[0]], [ids[2]]]
    assert ranking.idempotency_key == draft["idempotencyKey"]
    assert page.evaluate("key => localStorage.getItem(key)", draft_key) is None


# --- e. hostile content ---------------------------------------------------------------------------


XSS_COMPLETIONS = [
    "Here you go: <script>window.__xss=1</script> (that was a script tag).",
    '<img src=x onerror="window.__xss=1"> and <svg onload="window.__xss=1"></svg>',
    '<iframe srcdoc="<script>parent.__xss=1</script>"></iframe> then </script><script>'
    "window.__xss=1</script>",
    "[click](javascript:window.__xss=1) and [c2](  JaVaScRiPt:window.__xss=1)",
]


def test_hostile_markup_in_completions_stays_inert_text(page, live_server, lena):
    prompts = [{
        "id": "xss",
        "prompt": "Which is safest? </script><script>window.__xss=1</script>",
        "completions": XSS_COMPLETIONS,
    }]
    project = make_project("hostile", prompts=prompts)
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)
    texts = dict(Completion.objects.filter(prompt_id=prompt_id).values_list("id", "text"))
    card_of = {texts[completion_id]: completion_id for completion_id in ids}

    script_card = page.locator(f"#completion-{card_of[XSS_COMPLETIONS[0]]}")
    expect(script_card).to_contain_text("<script>window.__xss=1</script>")
    expect(page.locator(f"#completion-{card_of[XSS_COMPLETIONS[1]]}")).to_contain_text(
        '<img src=x onerror="window.__xss=1">'
    )
    link_card = page.locator(f"#completion-{card_of[XSS_COMPLETIONS[3]]}")
    link_card.get_by_text("[click]", exact=False).click()
    link_card.get_by_text("[c2]", exact=False).click()
    assert page.locator("#completions script, #completions img, #completions svg, "
                        "#completions iframe, #completions a[href]").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert f"/rank/{prompt_id}/" in page.url

    # The ranking list shows the text too, as text.
    press(page, str(ids.index(card_of[XSS_COMPLETIONS[0]]) + 1))
    expect(page.locator("#ranking-list .snippet").first).to_contain_text("<script>")
    # The page still works: rank the rest and submit.
    for key in "1234":
        if ranked_ids(page).count(ids[int(key) - 1]) == 0:
            press(page, key)
    press(page, "Enter")
    wait_until_left(page, prompt_id)
    assert len(ranking_of(lena, prompt_id).tiers) == 4
    assert page.evaluate("typeof window.__xss") == "undefined"


@pytest.fixture
def pixel_server():
    """An HTTP server on another loopback port that counts the requests it gets."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def test_remote_images_in_markdown_are_never_fetched(page, live_server, lena, pixel_server):
    origin, hits = pixel_server
    prompts = [{
        "id": "images",
        "prompt": f"Describe ![pixel]({origin}/markdown.png) and <img src='{origin}/raw.png'>",
        "completions": [f"![a]({origin}/c1.png)", f"![b][ref]\n\n[ref]: {origin}/c2.png",
                        f'<img src="{origin}/c3.png">', f"<picture><source srcset="
                        f"'{origin}/c4.png'></picture> ok"],
    }]
    project = make_project("images", prompts=prompts,
                           instructions=f"Look at ![this]({origin}/instructions.png)")
    join(project, lena)
    log_in_and_rank(page, live_server, lena, project)
    page.wait_for_load_state("networkidle")
    assert page.locator("img, picture, source").count() == 0
    expect(page.locator("#completions")).to_contain_text(f"{origin}/c3.png")  # shown as text
    assert hits == []


# --- f. revisions ---------------------------------------------------------------------------------


def test_revising_keeps_the_earlier_version(page, live_server, lena):
    project = make_project()
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)
    press(page, "1", "2", "3", "4", "Enter")
    wait_until_left(page, prompt_id)
    first = ranking_of(lena, prompt_id)
    assert first.tiers == [[ids[0]], [ids[1]], [ids[2]], [ids[3]]]

    page.goto(f"{live_server.url}/projects/{project.slug}/my-rankings/")
    page.locator(f"a[href$='/rank/{prompt_id}/']", has_text="Revise").click()
    assert wait_for_rank_page(page) == prompt_id
    assert card_ids(page) == ids  # shown in the order it was ranked in
    expect(page.locator("#revising-notice")).to_be_visible()
    expect(page.locator("#skip")).to_have_count(0)
    expect_ranking(page, ids)

    press(page, "1")  # the best goes to the end
    expect_ranking(page, [ids[1], ids[2], ids[3], ids[0]])
    press(page, "Enter")
    expect(status(page)).to_have_text(re.compile(r"^Saved \(revision 2\)"))
    wait_until_left(page, prompt_id)

    ranking = ranking_of(lena, prompt_id)
    assert ranking.revision == 2
    assert ranking.tiers == [[ids[1]], [ids[2]], [ids[3]], [ids[0]]]
    history = list(RankingRevision.objects.filter(ranking=ranking))
    assert len(history) == 1
    assert history[0].revision == 1
    assert history[0].tiers == first.tiers


def test_a_stale_tab_shows_the_newer_version_and_asks_before_saving(page, context, live_server,
                                                                    lena):
    """Two tabs on one ranking: the older one is refused with the newer version shown, and
    saves over it only when the labeler says so (issue 15, item 6)."""
    project = make_project()
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    press(page, "1", "2", "3", "4", "Enter")
    wait_until_left(page, prompt_id)
    url = f"{live_server.url}/projects/{project.slug}/rank/{prompt_id}/"
    older = context.new_page()  # a second tab, opened on revision 1
    older.goto(url)
    assert wait_for_rank_page(older) == prompt_id
    ids = card_ids(older)
    page.goto(url)
    wait_for_rank_page(page)
    press(page, "1", "Enter")  # the first tab saves revision 2
    expect(status(page)).to_have_text(re.compile(r"^Saved \(revision 2\)"))
    newer = ranking_of(lena, prompt_id).tiers
    assert newer == [[ids[1]], [ids[2]], [ids[3]], [ids[0]]]

    older.bring_to_front()
    older.keyboard.press("2")  # the older tab, still on revision 1, changes its ranking
    expect_ranking(older, [ids[0], ids[2], ids[3], ids[1]])
    older.keyboard.press("Enter")
    expect(older.locator("#stale-notice")).to_be_visible()
    expect(older.locator("#stale-current")).to_have_text("2 > 3 > 4 > 1")
    expect(older.locator("#stale-text")).to_contain_text("saved as revision 2 elsewhere")
    screenshots(older, "stale-tab")
    ranking = ranking_of(lena, prompt_id)
    assert (ranking.revision, ranking.tiers) == (2, newer)  # nothing overwritten unseen

    older.locator("#stale-keep-mine").click()
    expect(status(older)).to_have_text(re.compile(r"^Saved \(revision 3\)"))
    ranking = ranking_of(lena, prompt_id)
    assert (ranking.revision, ranking.tiers) == (3, [[ids[0]], [ids[2]], [ids[3]], [ids[1]]])
    history = RankingRevision.objects.filter(ranking=ranking).order_by("revision")
    assert [(r.revision, r.tiers) for r in history] == [
        (1, [[ids[0]], [ids[1]], [ids[2]], [ids[3]]]), (2, newer)]
    older.close()


# --- g. the server is unreachable -----------------------------------------------------------------


def rankings_api(live_server, project: Project) -> str:
    return f"{live_server.url}/api/projects/{project.id}/rankings/"


def test_a_network_error_retries_and_stores_the_ranking_once(page, live_server, lena):
    project = make_project()
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)
    aborted: list[dict] = []

    def abort(route):
        aborted.append(json.loads(route.request.post_data))
        route.abort()

    page.route(rankings_api(live_server, project), abort)
    press(page, "4", "3", "2", "1", "Enter")
    expect(status(page)).to_have_text(re.compile(r"Not saved: server unreachable — retrying"))
    expect(status(page)).not_to_have_text(re.compile(r"^Saved"))
    expect(page.locator("#submit-ranking")).to_be_disabled()  # no double submit meanwhile
    assert not Ranking.objects.filter(prompt_id=prompt_id).exists()
    assert read_draft(page)["tiers"] == [[ids[3]], [ids[2]], [ids[1]], [ids[0]]]

    page.unroute(rankings_api(live_server, project))
    expect(status(page)).to_have_text(re.compile(r"^Saved"), timeout=15_000)
    wait_until_left(page, prompt_id)
    assert Ranking.objects.filter(prompt_id=prompt_id, labeler=lena).count() == 1
    ranking = ranking_of(lena, prompt_id)
    assert ranking.tiers == [[ids[3]], [ids[2]], [ids[1]], [ids[0]]]
    assert ranking.revision == 1
    assert not RankingRevision.objects.filter(ranking=ranking).exists()
    assert {attempt["idempotency_key"] for attempt in aborted} == {ranking.idempotency_key}


def test_a_lost_answer_is_retried_with_the_same_key_and_stored_once(page, live_server, lena):
    """The server stores the ranking but the answer never arrives: the retry must not add one."""
    project = make_project()
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    calls: list[str] = []

    def store_then_drop_answer(route):
        calls.append(route.request.post_data)
        if len(calls) == 1:
            route.fetch()  # reaches the server, which stores it
            route.abort()  # ... but the browser never hears back
        else:
            route.continue_()

    page.route(rankings_api(live_server, project), store_then_drop_answer)
    press(page, "2", "1", "4", "3", "Enter")
    expect(status(page)).to_have_text(re.compile(r"^Saved"), timeout=15_000)
    wait_until_left(page, prompt_id)
    assert len(calls) == 2 and calls[0] == calls[1]
    ranking = ranking_of(lena, prompt_id)
    assert ranking.revision == 1
    assert not RankingRevision.objects.filter(ranking=ranking).exists()


def test_a_refusal_shows_the_reason_and_keeps_the_draft(page, live_server, lena):
    project = make_project()
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)
    answers = [
        (400, {"tiers": ["tier 0 ties 2 completions; this project forbids ties"]}),
        (409, {"detail": "Your lease on this prompt expired and others took its slots."}),
    ]

    def refuse(route):
        code, body = answers.pop(0)
        route.fulfill(status=code, content_type="application/json", body=json.dumps(body))

    api = rankings_api(live_server, project)
    page.route(api, refuse)
    press(page, "1", "2", "3", "4", "Enter")
    expect(status(page)).to_have_text(
        "Not saved: tiers: tier 0 ties 2 completions; this project forbids ties Your draft is kept."
    )
    expect(page.locator("#submit-ranking")).to_be_enabled()
    key = read_draft(page)["idempotencyKey"]
    press(page, "Enter")
    expect(status(page)).to_contain_text("Not saved: Your lease on this prompt expired")
    assert read_draft(page)["tiers"] == [[ids[0]], [ids[1]], [ids[2]], [ids[3]]]
    assert not Ranking.objects.filter(prompt_id=prompt_id).exists()
    assert f"/rank/{prompt_id}/" in page.url

    page.unroute(api)
    press(page, "Enter")
    wait_until_left(page, prompt_id)
    assert ranking_of(lena, prompt_id).idempotency_key == key


# --- h. flags, comment, skip ----------------------------------------------------------------------


def test_flags_and_comment_are_stored(page, live_server, lena):
    project = make_project()
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)

    press(page, "2", "1", "3", "4")
    page.check(f"input[data-flag=unsafe][data-completion-id='{ids[1]}']")
    page.check(f"input[data-flag=factually_wrong][data-completion-id='{ids[1]}']")
    page.check(f"input[data-flag=off_topic][data-completion-id='{ids[3]}']")
    comment = "Answer 2 invents a source; keys 1 2 3 r t typed here must not rank anything."
    page.locator("#comment").click()
    page.keyboard.type(comment)
    expect_ranking(page, [ids[1], ids[0], ids[2], ids[3]])  # typing did not touch it
    page.keyboard.press("Control+Enter")
    wait_until_left(page, prompt_id)

    ranking = ranking_of(lena, prompt_id)
    assert ranking.tiers == [[ids[1]], [ids[0]], [ids[2]], [ids[3]]]
    assert ranking.comment == comment
    assert ranking.flags == {
        str(ids[1]): ["factually_wrong", "unsafe"],
        str(ids[3]): ["off_topic"],
    }


def test_skipping_needs_a_reason_and_is_stored(page, live_server, lena):
    project = make_project()
    join(project, lena)
    prompt_id = log_in_and_rank(page, live_server, lena, project)

    page.click("#skip-button")
    expect(page.locator("#skip-status")).to_have_text("Say why you skip this prompt.")
    assert Assignment.objects.get(prompt_id=prompt_id, labeler=lena).status == "leased"

    reason = "Needs a Rust expert: 1 2 3 r t are typed here, not ranked"
    page.locator("#skip-reason").click()
    page.keyboard.type(reason)
    expect_ranking(page, [])
    page.keyboard.press("Enter")
    wait_until_left(page, prompt_id)
    assignment = Assignment.objects.get(prompt_id=prompt_id, labeler=lena)
    assert assignment.status == "skipped"
    assert assignment.skip_reason == reason
    assert not Ranking.objects.filter(prompt_id=prompt_id).exists()


# --- lease and frozen projects --------------------------------------------------------------------


def test_the_lease_is_renewed_every_five_minutes_and_a_lost_one_is_shown(page, live_server, lena):
    project = make_project()
    join(project, lena)
    page.clock.install()
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    assignment = Assignment.objects.get(prompt_id=prompt_id, labeler=lena)
    leased_at = assignment.leased_at
    lease_url = rank_data(page)["urls"]["lease"]

    with page.expect_response(lambda r: r.url.endswith(lease_url)) as renewal:
        page.clock.run_for("05:00")
    assert renewal.value.status == 200
    assignment.refresh_from_db()
    assert assignment.leased_at > leased_at
    expect(page.locator("#lease-notice")).to_be_hidden()

    page.route(
        f"**{lease_url}",
        lambda route: route.fulfill(
            status=409,
            content_type="application/json",
            body=json.dumps({"detail": "Your lease expired and others took this prompt's slots."}),
        ),
    )
    page.clock.run_for("05:00")
    expect(page.locator("#lease-notice")).to_be_visible()
    expect(page.locator("#lease-notice")).to_contain_text("Your lease expired")


def test_a_frozen_project_shows_a_notice_and_takes_nothing(page, live_server, lena):
    project = make_project()
    join(project, lena)
    Project.objects.filter(id=project.id).update(is_frozen=True)
    prompt_id = log_in_and_rank(page, live_server, lena, project)

    expect(page.locator("#frozen-notice")).to_be_visible()
    press(page, "1", "2", "3", "4")
    expect(page.locator("#submit-ranking")).to_be_disabled()
    press(page, "Enter")
    expect(status(page)).to_contain_text("frozen")
    assert f"/rank/{prompt_id}/" in page.url
    assert not Ranking.objects.filter(prompt_id=prompt_id).exists()


STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
RECORD_CSP_VIOLATIONS = """
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation",
        (event) => window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`));
"""


def test_the_page_works_under_a_strict_content_security_policy(page, live_server, lena):
    """No inline script, style or handler: the page works with a CSP without 'unsafe-inline'."""
    project = make_project()
    join(project, lena)
    page.add_init_script(RECORD_CSP_VIOLATIONS)

    def with_csp(route):
        response = route.fetch()
        headers = {**response.headers, "content-security-policy": STRICT_CSP}
        route.fulfill(response=response, headers=headers)

    page.route(re.compile(r"/projects/[^/]+/rank/\d+/$"), with_csp)
    prompt_id = log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)
    press(page, "4", "2", "3", "1")
    expect_ranking(page, [ids[3], ids[1], ids[2], ids[0]])
    assert page.evaluate("window.__cspViolations") == []
    press(page, "Enter")
    wait_until_left(page, prompt_id)
    assert ranking_of(lena, prompt_id).tiers == [[ids[3]], [ids[1]], [ids[2]], [ids[0]]]


# --- layout and screenshots -----------------------------------------------------------------------


def demo_prompts(count: int = 2) -> list[dict]:
    with DEMO_FILE.open(encoding="utf-8") as lines:
        return [json.loads(next(lines)) for _ in range(count)]


def assert_no_horizontal_scroll(page) -> None:
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"page overflows sideways: {widths}"


def assert_in_viewport(page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    height = page.viewport_size["height"]
    assert box is not None and box["y"] >= 0 and box["y"] < height, (selector, box)


def test_layout_keeps_criterion_and_ranking_in_view(page, live_server, lena):
    """Also writes docs/screenshots/rank-page*.png when RLHF_SCREENSHOTS=1."""
    project = make_project(
        "demo-like", prompts=demo_prompts(), instructions=DEMO_INSTRUCTIONS,
        name="Demo: helpfulness",
    )
    join(project, lena)
    log_in_and_rank(page, live_server, lena, project)
    ids = card_ids(page)
    press(page, "3", "1")
    page.check(f"input[data-flag=factually_wrong][data-completion-id='{ids[3]}']")
    page.mouse.move(0, 0)
    write = os.environ.get("RLHF_SCREENSHOTS") == "1"
    if write:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    for width, height, name in ((1400, 1000, "rank-page.png"), (1000, 900, "rank-page-1000.png")):
        page.set_viewport_size({"width": width, "height": height})
        page.evaluate("window.scrollTo(0, 0)")
        assert_no_horizontal_scroll(page)
        if write:
            page.screenshot(path=str(SCREENSHOTS / name))
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        assert_in_viewport(page, "#rank-panel")  # sticky while the completions scroll
        assert_in_viewport(page, "#submit-ranking")
        if width >= 1200:
            assert_in_viewport(page, "#criterion")
        else:
            expect(page.locator(".panel-criterion")).to_be_visible()
