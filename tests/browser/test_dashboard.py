"""The admin's dashboard (issue 18, item 5): charts that count every voted pair and can be
read at 1400 px, throughput over time, and a page per labeler from the table. In chromium."""

import pytest

from annotate import services
from annotate.models import Membership
from tests.browser.conftest import screenshots
from tests.browser.test_rank_page import make_project

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")

PASSWORD = "tess-password-9310"

# Each text's size as drawn: its CSS font size times the scale of the chart's viewBox.
DRAWN_FONT_SIZES = """() => [...document.querySelectorAll('svg.chart text')].map(text => {
    const svg = text.ownerSVGElement;
    const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    return [text.textContent, parseFloat(getComputedStyle(text).fontSize) * scale];
})"""

# Pairs of things in one chart whose boxes overlap: two texts, or a text and a bar.
OVERLAPS = """() => {
    const hits = [];
    const meets = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5
                         && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
    for (const svg of document.querySelectorAll('svg.chart')) {
        const box = element => element.getBoundingClientRect();
        const texts = [...svg.querySelectorAll('text')].map(t => [t.textContent, box(t)]);
        const bars = [...svg.querySelectorAll('rect.bar')].map(r => ['bar', box(r)]);
        texts.forEach(([name, box], i) => {
            for (const [other, otherBox] of [...texts.slice(i + 1), ...bars]) {
                if (meets(box, otherBox)) hits.push(`${name} / ${other}`);
            }
        });
    }
    return hits;
}"""


def rank(project, labeler, prompt, order: list[int], *, shown_reversed: bool = False) -> None:
    """`labeler` ranks the completions of `prompt` in this order of their import positions."""
    services.assignment_next(project=project, labeler=labeler)
    ids = list(prompt.completions.order_by("position").values_list("id", flat=True))
    shown = ids[::-1] if shown_reversed else ids
    services.ranking_submit(project=project, labeler=labeler, prompt_id=prompt.id,
                            tiers=[[ids[i]] for i in order], displayed_order=shown,
                            idempotency_key=f"{labeler.username}-{prompt.id}", time_spent_ms=9000)


@pytest.fixture
def split_project(django_user_model):
    """ann and ben rank both prompts; on the second they swap the top two: one split pair.
    ann was shown the completions last to first, so the last position shown is ranked first
    half the time: its bar stands above the "no bias" line, where that label used to be."""
    project = make_project("split-votes", labelers_per_prompt=2)
    tess = django_user_model.objects.create_user("tess", password=PASSWORD)
    services.membership_set(project=project, user=tess, role=Membership.Role.ADMIN)
    for name in ("ann", "ben"):
        labeler = django_user_model.objects.create_user(name, password=PASSWORD)
        services.membership_set(project=project, user=labeler, role=Membership.Role.LABELER)
    first, second = project.prompts.order_by("id")
    ann, ben = django_user_model.objects.filter(username__in=["ann", "ben"]).order_by("username")
    rank(project, ann, first, [0, 1, 2, 3], shown_reversed=True)
    rank(project, ben, first, [0, 1, 2, 3])
    rank(project, ann, second, [0, 1, 2, 3], shown_reversed=True)
    rank(project, ben, second, [1, 0, 2, 3])
    return project, tess


def log_in(page, live_server, user, next_path: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}{next_path}")


def test_the_dashboard_counts_split_pairs_and_its_charts_read_at_1400_px(page, live_server,
                                                                         split_project):
    project, tess = split_project
    page.set_viewport_size({"width": 1400, "height": 1000})
    log_in(page, live_server, tess, f"/projects/{project.slug}/dashboard/")

    # 12 pairs with two votes: 1 split 1-1, 11 unanimous; none is left out.
    agreement = page.locator("svg.chart").nth(0)
    expect(agreement.locator("text.tick")).to_have_text(
        ["split", "0.5-0.6", "0.6-0.7", "0.7-0.8", "0.8-0.9", "0.9-1"])
    expect(agreement.locator("text.value")).to_have_text(["1", "11"])
    expect(page.locator(".stat", has_text="pairs with 2+ votes")).to_contain_text("12")

    sizes = page.evaluate(DRAWN_FONT_SIZES)
    small = [(text, round(size, 1)) for text, size in sizes if size < 12]
    assert len(sizes) > 20 and small == []
    assert page.evaluate(OVERLAPS) == []
    for chart in page.locator("svg.chart").all():  # both axes are named
        expect(chart.locator("text.axis-label")).to_have_count(2)
    expect(page.locator("svg.chart text.legend", has_text="no bias")).to_have_count(1)
    throughput = page.locator("svg.chart", has=page.locator("polyline"))
    expect(throughput).to_have_attribute("aria-label", "Rankings per hour, last 48 hours")
    screenshots(page, "dashboard")

    page.get_by_role("link", name="ben", exact=True).click()
    page.wait_for_url(f"{live_server.url}/projects/{project.slug}/dashboard/labelers/ben/")
    expect(page.locator("h1")).to_have_text("ben in Split Votes")
    expect(page.locator("#labeler-rankings")).to_have_text("2")
    expect(page.locator("#labeler-agreement")).to_have_text("0.92")  # 11 of the 12 pairs
    expect(page.locator("#labeler-gold")).to_have_text("–")  # no gold prompts here
    expect(page.locator("ol.rankings > li")).to_have_count(2)
    expect(page.get_by_role("link", name="Revise")).to_have_count(0)  # an admin reads only
    screenshots(page, "labeler-page")


def test_only_the_projects_admins_see_a_labelers_page(page, live_server, split_project,
                                                      django_user_model):
    project, _ = split_project
    ann = django_user_model.objects.get(username="ann")
    log_in(page, live_server, ann, f"/projects/{project.slug}/")
    response = page.goto(f"{live_server.url}/projects/{project.slug}/dashboard/labelers/ben/")
    assert response.status == 403
