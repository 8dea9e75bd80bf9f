"""The API's documentation pages render from our own static files, under our policy, with
no request leaving the server (no CDN, no web fonts)."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.usefixtures("transactional_db"), pytest.mark.slow]


def requests_elsewhere(page, live_server) -> list[str]:
    """Record every request the page makes to another origin (none should)."""
    elsewhere: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(live_server.url)
            or request.url.startswith(("data:", "blob:")) else elsewhere.append(request.url))
    return elsewhere


def test_swagger_ui_shows_every_operation_offline(page, live_server):
    elsewhere = requests_elsewhere(page, live_server)
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .title").first).to_contain_text("rlhf-studio API")
    ranking = page.locator(".opblock-summary-path", has_text="/api/projects/{project_id}/rankings/")
    expect(ranking.first).to_be_visible()
    ranking.first.click()
    expect(page.locator(".responses-table").first).to_contain_text("409")
    assert elsewhere == []


REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def test_redoc_shows_the_schema_offline(context, live_server):
    """Redoc's footer names its logo on its CDN: the page's policy blocks that one image,
    and nothing else is asked of anywhere but the server."""
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("pageerror", lambda error: blocked.append(str(error)))
    elsewhere = requests_elsewhere(page, live_server)
    page.goto(f"{live_server.url}/api/redoc/")
    expect(page.locator("h1").first).to_contain_text("rlhf-studio API")
    expect(page.get_by_text("/api/projects/{project_id}/rankings/").first).to_be_attached()
    assert set(elsewhere) <= {REDOC_LOGO}
    assert all(REDOC_LOGO in text for text in blocked), blocked
