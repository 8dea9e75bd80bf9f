"""Browser tests: Playwright (sync API) drives Debian's chromium against pytest-django's
live_server. Tests here need `transactional_db` (the live server reads what they write)."""

import os
import shutil
import subprocess

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The chromium binary, installed with apt-get when missing and we are allowed to."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        pytest.skip(f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt_get, "install", "-y", "chromium"], env=env, check=False)
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"`apt-get install -y chromium` did not provide {CHROMIUM}")
    return CHROMIUM


# Module scope: while Playwright runs, the test thread has a running event loop, which trips
# Django's async-safety check on every ORM call a test makes; DJANGO_ALLOW_ASYNC_UNSAFE lifts
# it for as long as the loop runs, and neither outlives the browser tests.
@pytest.fixture(scope="module")
def playwright_api():
    sync_api = pytest.importorskip("playwright.sync_api")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            yield playwright
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser(playwright_api, chromium_executable):
    browser = playwright_api.chromium.launch(
        executable_path=chromium_executable, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context):
    """A page that fails its test on an uncaught JavaScript error or a CSP violation."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message):
        if message.type == "error" and "Content Security Policy" in message.text:
            errors.append(message.text)

    page.on("console", on_console)
    yield page
    assert not errors, f"errors on the page: {errors}"


def screenshots(page, name: str) -> None:
    """With SCREENSHOT_DIR set, keep the page at 1280x720 and at full HD, to look at."""
    folder = os.environ.get("SCREENSHOT_DIR")
    if not folder:
        return
    size = page.viewport_size
    for width, height in ((1280, 720), (1920, 1080)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=f"{folder}/{name}-{width}x{height}.png")
    page.set_viewport_size(size)
