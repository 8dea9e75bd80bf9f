"""Production serving, run as the Docker entrypoint runs it: DJANGO_ENV=production, static
files collected into the manifest storage, gunicorn, whitenoise. The login page, the
ranking page, the API's documentation pages and every static file they name load (issue 15,
item 11; issue 18, item 6: Swagger UI and Redoc from our own files, no CDN)."""

import http.client
import re
import subprocess
import sys
import time
from http.cookies import SimpleCookie

import pytest

from tests.processes import BIN, ROOT, app_env, free_port, port_open, start_logged, stop

pytestmark = pytest.mark.slow
STATIC_URL = re.compile(r'(?:href|src)="(/static/[^"]+)"')


class Browser:
    """Just enough of one: cookies kept by hand (they are Secure, and this is plain HTTP
    behind no proxy, as a health check or a test sees the app)."""

    def __init__(self, port: int):
        self.port, self.cookies = port, {}

    def request(self, method: str, path: str, body: str = "", headers: dict | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers = {"Cookie": cookie, **(headers or {})}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        content = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response, content


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_gunicorn_in_production_mode_serves_the_pages_and_their_static_files(tmp_path):
    port = free_port()
    env = app_env(DJANGO_ENV="production", SECRET_KEY="p" * 60, ALLOWED_HOSTS="127.0.0.1",
                  SECURE_SSL_REDIRECT="false", VAR_DIR=str(tmp_path / "var"),
                  STATIC_ROOT=str(tmp_path / "static"))
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    assert (tmp_path / "static" / "staticfiles.json").is_file()  # the manifest
    manage(env, "create_project", "prod", "--name", "Prod", "--criterion", "helpfulness",
           "--completions-per-prompt", "2", "--labelers-per-prompt", "1")
    manage(env, "add_labeler", "prod", "lena", "--password", "lena-prod-pw")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "q1", "prompt": "Hello?", "completions": ["Hi.", "Hey."]}\n')
    manage(env, "import_prompts", "prod", str(prompts))
    server = start_logged([str(BIN / "gunicorn"), "config.wsgi:application", "--bind",
                           f"127.0.0.1:{port}", "--workers", "2"], env, tmp_path / "web.log")
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()[-3000:]
            time.sleep(0.2)
        browser = Browser(port)
        login, page = browser.request("GET", "/accounts/login/")
        assert login.status == 200, page[:2000]
        statics = set(STATIC_URL.findall(page.decode()))
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        answer, _ = browser.request(
            "POST", "/accounts/login/?next=/projects/prod/rank/",
            body=f"csrfmiddlewaretoken={token.decode()}&username=lena&password=lena-prod-pw",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status == 302, answer.status
        path = answer.getheader("Location")
        for _ in range(3):  # login -> the project's next prompt -> its ranking page
            answer, page = browser.request("GET", path)
            if answer.status != 302:
                break
            path = answer.getheader("Location")
        assert answer.status == 200 and re.search(r"/rank/\d+/$", path), (answer.status, path)
        assert b"Hello?" in page and b'id="rank-app"' in page
        statics |= set(STATIC_URL.findall(page.decode()))
        for docs in ("/api/docs/", "/api/redoc/"):  # public, as the schema is
            answer, page = Browser(port).request("GET", docs)
            assert answer.status == 200, (docs, page[:2000])
            assert b"https://" not in page, docs  # nothing from a CDN
            docs_statics = set(STATIC_URL.findall(page.decode()))
            assert any("drf_spectacular_sidecar" in url for url in docs_statics), docs
            statics |= docs_statics
        answer, script = Browser(port).request("GET", "/api/docs/?script")
        assert answer.status == 200 and b"SwaggerUIBundle" in script
        assert any(url.endswith(".js") for url in statics)
        for url in sorted(statics):
            # Manifest names: a content hash in each (app.3f2a9c1b.css), cached for ever.
            assert re.search(r"\.[0-9a-f]{12}\.\w+$", url), url
            response, content = browser.request("GET", url)
            assert response.status == 200 and content, url
            assert "max-age" in (response.getheader("Cache-Control") or ""), url
    finally:
        stop(server)


WARMED = (
    "import config.wsgi; from django.urls import get_resolver; from config.celery import app;"
    "print(get_resolver()._populated, app.finalized)"
)


def test_a_worker_loads_its_urls_and_task_registry_as_it_starts_even_with_the_broker_down(
        tmp_path):
    """What a worker's first request would otherwise wait for is loaded at import of the WSGI
    module; that opens no broker connection, so a web server starts while Redis is down."""
    env = app_env(VAR_DIR=str(tmp_path), CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = subprocess.run([sys.executable, "-c", WARMED], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "True"]
