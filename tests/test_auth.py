"""Logging in and staying logged in: the throttle, sessions, cookies, deactivation, next=.

alice and bob label "helpful"; mallory guesses passwords.
"""

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotate.auth_views import THROTTLED
from annotate.models import LoginFailure
from annotate.services import auth
from tests.processes import BIN, ROOT, app_env, free_port, port_open, start_logged, stop

pytestmark = pytest.mark.django_db

LIMIT = 20  # the default of LOGIN_FAILURES_PER_USERNAME


@pytest.fixture(autouse=True)
def default_limits(settings):
    settings.LOGIN_FAILURES_PER_USERNAME = LIMIT
    settings.LOGIN_FAILURES_PER_IP = 100
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 900
    settings.LOGIN_CLIENT_IP_FROM_X_FORWARDED_FOR = False


@pytest.fixture
def bob(make_user):
    return make_user("bob")


def page_login(client: Client, username: str, password: str, **extra):
    return client.post("/accounts/login/", {"username": username, "password": password},
                       **extra)


def api_login(client: Client, username: str, password: str, **extra):
    return client.post("/api/auth/token/", {"username": username, "password": password},
                       content_type="application/json", **extra)


def without_csrf_token(html: bytes) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html.decode())


# --- the throttle -------------------------------------------------------------------------


def test_twenty_failures_for_a_username_and_then_429_on_the_page_and_the_api(alice, client):
    for attempt in range(LIMIT // 2):
        assert page_login(client, "alice", f"guess-{attempt}").status_code == 200
        assert api_login(client, "alice", f"guess-{attempt}").status_code == 400
    page = page_login(client, "alice", "alice-pw")  # even the right password, now
    assert page.status_code == 429 and page["Retry-After"] == "900"
    assert THROTTLED in page.content.decode() and "_auth_user_id" not in client.session
    token = api_login(client, "alice", "alice-pw")
    assert token.status_code == 429 and token.json() == {"detail": THROTTLED}
    assert not Token.objects.filter(user=alice).exists()


def test_an_unknown_user_and_a_wrong_password_get_the_same_answers(alice, client):
    wrong, unknown = ("alice", "not-her-password"), ("nobody", "not-her-password")
    for username, password in (wrong, unknown):
        for _ in range(LIMIT):
            page_login(client, username, password)
    pages = [page_login(client, *pair) for pair in (wrong, unknown)]
    assert [p.status_code for p in pages] == [429, 429]
    assert without_csrf_token(pages[0].content) == without_csrf_token(pages[1].content)
    tokens = [api_login(client, *pair) for pair in (wrong, unknown)]
    assert [t.status_code for t in tokens] == [429, 429]
    assert tokens[0].content == tokens[1].content


def test_before_the_limit_too_an_unknown_user_and_a_wrong_password_answer_alike(alice, client):
    pages = [page_login(client, "alice", "wrong"), page_login(client, "nobody", "wrong")]
    assert [p.status_code for p in pages] == [200, 200]
    assert without_csrf_token(pages[0].content) == without_csrf_token(pages[1].content)
    assert "didn't match" in pages[0].content.decode()
    tokens = [api_login(client, "alice", "wrong"), api_login(client, "nobody", "wrong")]
    assert [t.status_code for t in tokens] == [400, 400]
    assert tokens[0].content == tokens[1].content
    alice.is_active = False  # a deactivated user's right password: the same answer
    alice.save()
    assert api_login(client, "alice", "alice-pw").content == tokens[0].content
    page = page_login(client, "alice", "alice-pw")
    assert without_csrf_token(page.content) == without_csrf_token(pages[0].content)


def test_bob_logs_in_while_alices_username_is_throttled(alice, bob, client):
    for attempt in range(LIMIT):
        page_login(client, "alice", f"guess-{attempt}")
    assert page_login(client, "alice", "alice-pw").status_code == 429
    assert api_login(Client(), "bob", "bob-pw").status_code == 200
    response = page_login(Client(), "bob", "bob-pw")
    assert response.status_code == 302 and response["Location"] == "/"


def test_a_username_is_throttled_however_it_is_typed(alice, client):
    for attempt in range(LIMIT):
        page_login(client, ["alice", "ALICE", " Alice "][attempt % 3], f"guess-{attempt}")
    assert page_login(client, "alice", "alice-pw").status_code == 429


def test_failures_from_one_address_are_limited_across_usernames(alice, settings):
    """mallory sprays one guess at many usernames from one address."""
    settings.LOGIN_FAILURES_PER_IP = 5
    mallory = Client(REMOTE_ADDR="203.0.113.66")
    for index in range(5):
        assert page_login(mallory, f"user{index}", "123456").status_code == 200
    assert page_login(mallory, "alice", "alice-pw").status_code == 429
    assert api_login(mallory, "someone-else", "123456").status_code == 429
    elsewhere = Client(REMOTE_ADDR="198.51.100.7")
    assert page_login(elsewhere, "alice", "alice-pw").status_code == 302


def test_behind_the_proxy_the_address_is_the_last_forwarded_one(alice, settings):
    settings.LOGIN_FAILURES_PER_IP = 3
    settings.LOGIN_CLIENT_IP_FROM_X_FORWARDED_FOR = True
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    for index in range(3):  # mallory forges a first entry each time; the proxy appends hers
        page_login(proxy, f"u{index}", "x", HTTP_X_FORWARDED_FOR=f"1.2.3.{index}, 203.0.113.66")
    assert set(LoginFailure.objects.values_list("ip", flat=True)) == {"203.0.113.66"}
    assert page_login(proxy, "alice", "alice-pw",
                      HTTP_X_FORWARDED_FOR="203.0.113.66").status_code == 429
    assert page_login(proxy, "alice", "alice-pw",
                      HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 302


def test_a_right_password_clears_its_usernames_failures(alice, client):
    for attempt in range(LIMIT - 1):
        page_login(client, "alice", f"guess-{attempt}")
    assert page_login(client, "alice", "alice-pw").status_code == 302
    for attempt in range(LIMIT - 1):
        assert page_login(Client(), "alice", f"again-{attempt}").status_code == 200


def test_failures_older_than_the_window_no_longer_count_and_are_purged(db):
    now = timezone.now()
    long_ago = now - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS + 1)
    for _ in range(LIMIT):
        auth.login_failure_record(username="alice", ip="203.0.113.66", now=long_ago)
    assert not auth.login_blocked(username="alice", ip="203.0.113.66", now=now)
    assert auth.login_blocked(username="alice", ip=None, now=long_ago)
    auth.login_failure_record(username="bob", ip=None, now=now)
    assert list(LoginFailure.objects.values_list("username", flat=True)) == ["bob"]


def test_a_blocked_attempt_checks_no_password_and_is_not_counted(alice, client):
    for attempt in range(LIMIT):
        page_login(client, "alice", f"guess-{attempt}")
    checked = []
    on_check = lambda **kwargs: checked.append(kwargs)  # noqa: E731
    user_login_failed.connect(on_check)
    user_logged_in.connect(on_check)
    try:
        for password in ("alice-pw", "wrong"):
            assert page_login(client, "alice", password).status_code == 429
            assert api_login(client, "alice", password).status_code == 429
    finally:
        user_login_failed.disconnect(on_check)
        user_logged_in.disconnect(on_check)
    assert checked == [] and LoginFailure.objects.count() == LIMIT
    alice.refresh_from_db()
    assert alice.last_login is None


@pytest.mark.parametrize("body", ['["alice", "pw"]', '{"username": ["alice"], "password": 1}',
                                  '{"username": {"a": 1}}', '"alice"', "null"])
def test_the_token_endpoint_answers_400_to_any_json(alice, client, body):
    response = client.post("/api/auth/token/", body, content_type="application/json")
    assert response.status_code == 400


def test_the_doctests_of_the_throttle_pass():
    import doctest

    failed, attempted = doctest.testmod(auth)
    assert attempted >= 5 and failed == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_throttle_is_shared_by_separate_web_processes(make_user, tmp_path):
    """Two gunicorn servers on one database, with a limit of 4: two failures on each, and
    both answer 429. (A lower limit than the default: each failure costs a server about a
    second of password hashing.)"""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (CI runs it there): the test database of SQLite is in "
                    "memory, so no second process can share it")
    make_user("alice")
    db = connection.settings_dict
    env = app_env(DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
                  VAR_DIR=str(tmp_path / "var"), LOGIN_FAILURES_PER_USERNAME="4")
    servers, bases = [], []
    try:
        for name in ("one", "two"):
            port = free_port()
            servers.append(start_logged(
                [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
                 "--workers", "1"], env, tmp_path / f"{name}.log"))
            bases.append(f"http://127.0.0.1:{port}")
        for base, server, name in zip(bases, servers, ("one", "two"), strict=True):
            port = int(base.rsplit(":", 1)[1])
            deadline = time.monotonic() + 60
            while not port_open("127.0.0.1", port) and server.poll() is None:
                assert time.monotonic() < deadline, "gunicorn did not listen in 60 s"
                time.sleep(0.1)
            assert port_open("127.0.0.1", port), (tmp_path / f"{name}.log").read_text()

        def token(base: str, password: str) -> int:
            body = json.dumps({"username": "alice", "password": password}).encode()
            request = urllib.request.Request(f"{base}/api/auth/token/", body,
                                             {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=60) as got:
                    return got.status
            except urllib.error.HTTPError as error:
                return error.code

        for attempt in range(2):
            assert [token(base, f"guess-{attempt}") for base in bases] == [400, 400]
        assert [token(base, "alice-pw") for base in bases] == [429, 429]
    finally:
        for server in servers:
            stop(server)


# --- sessions and cookies -----------------------------------------------------------------


def test_logging_in_gives_the_session_a_new_key(alice, client):
    session = client.session
    session["planted"] = "by someone who knew this key"
    session.save()
    planted = session.session_key
    client.cookies[settings.SESSION_COOKIE_NAME] = planted
    response = page_login(client, "alice", "alice-pw")
    assert response.status_code == 302
    fresh = response.cookies[settings.SESSION_COOKIE_NAME].value
    assert fresh and fresh != planted
    assert not Session.objects.filter(session_key=planted).exists()
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = planted
    assert replay.get("/").status_code == 302  # the planted key logs no one in


def test_logging_out_ends_the_session(alice, client):
    page_login(client, "alice", "alice-pw")
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert not Session.objects.filter(session_key=key).exists()
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("secure", [False, True])
def test_the_session_cookie_is_httponly_and_samesite_and_secure_when_set(alice, settings,
                                                                         secure):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = secure
    client = Client()
    client.get("/accounts/login/")
    response = page_login(client, "alice", "alice-pw")
    session_cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session_cookie["httponly"] is True and session_cookie["samesite"] == "Lax"
    assert bool(session_cookie["secure"]) is secure
    csrf_cookie = client.cookies[settings.CSRF_COOKIE_NAME]
    assert csrf_cookie["samesite"] == "Lax" and bool(csrf_cookie["secure"]) is secure


def test_production_sets_secure_httponly_samesite_cookies(tmp_path):
    show = ("import django, json; django.setup(); from django.conf import settings as s;"
            "print(json.dumps({n: getattr(s, n) for n in ('SESSION_COOKIE_SECURE',"
            " 'SESSION_COOKIE_HTTPONLY', 'SESSION_COOKIE_SAMESITE', 'CSRF_COOKIE_SECURE',"
            " 'CSRF_COOKIE_SAMESITE', 'LOGIN_CLIENT_IP_FROM_X_FORWARDED_FOR')}))")
    result = subprocess.run(
        [sys.executable, "-c", show], cwd=ROOT, capture_output=True, text=True,
        env=app_env(DJANGO_SETTINGS_MODULE="config.settings", DJANGO_ENV="production",
                    SECRET_KEY="k" * 60, ALLOWED_HOSTS="rlhf.example.org",
                    VAR_DIR=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax", "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_SAMESITE": "Lax", "LOGIN_CLIENT_IP_FROM_X_FORWARDED_FOR": True}


# --- deactivation -------------------------------------------------------------------------


def test_a_deactivated_users_session_and_token_stop_at_the_next_request(project, alice):
    browser, script = Client(), Client()
    assert page_login(browser, "alice", "alice-pw").status_code == 302
    token = api_login(Client(), "alice", "alice-pw").json()["token"]
    by_token = {"HTTP_AUTHORIZATION": f"Token {token}"}
    project_page = f"/projects/{project.slug}/"
    assert browser.get(project_page).status_code == 200
    assert browser.get("/api/projects/").status_code == 200
    assert script.get("/api/projects/", **by_token).status_code == 200
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    page = browser.get(project_page)
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    assert browser.get("/api/projects/").status_code == 401
    assert browser.post(f"/api/projects/{project.id}/skips/", {"prompt": 1}).status_code == 401
    response = script.get("/api/projects/", **by_token)
    assert response.status_code == 401 and response.json() == {
        "detail": "User inactive or deleted."}


def test_a_password_change_ends_the_other_sessions(project, alice):
    browser = Client()
    page_login(browser, "alice", "alice-pw")
    alice.set_password("a-new-password-9")
    alice.save()
    assert browser.get(f"/projects/{project.slug}/").status_code == 302


# --- next= stays on this site -------------------------------------------------------------

OFF_SITE = [
    "https://evil.example/", "http://evil.example", "//evil.example", "///evil.example",
    "/\\evil.example", "\\\\/evil.example", "\\/\\/evil.example", " //evil.example",
    "\t//evil.example", "\n//evil.example", "https:evil.example", "https:/evil.example",
    "//evil.example@testserver", "http://testserver@evil.example/", "HTTPS://EVIL.EXAMPLE",
    "javascript:alert(1)", " javascript:alert(1)", "data:text/html,<script>1</script>",
    "//testserver.evil.example/", "\x00//evil.example",
]


def is_local(location: str) -> bool:
    """Whether a browser following `location` stays on this site (it reads a backslash as
    a slash and drops tabs, newlines and leading spaces)."""
    seen = re.sub(r"[\t\n\r]", "", location).lstrip().replace("\\", "/")
    parts = urllib.parse.urlsplit(seen)
    return (not parts.scheme and not parts.netloc and seen.startswith("/")
            and not seen.startswith("//"))


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_site(alice, target):
    client = Client()
    form = client.get("/accounts/login/", {"next": target}).content.decode()
    assert "evil.example" not in form and "javascript" not in form
    response = client.post("/accounts/login/",
                           {"username": "alice", "password": "alice-pw", "next": target})
    assert response.status_code == 302 and response["Location"] == "/"
    query = urllib.parse.urlencode({"next": target})
    response = Client().post(f"/accounts/login/?{query}",
                             {"username": "alice", "password": "alice-pw"})
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.parametrize("target", OFF_SITE)
def test_logout_never_redirects_off_site(alice, target):
    client = Client()
    client.force_login(alice)
    response = client.post("/accounts/logout/", {"next": target})
    assert response.status_code == 302 and is_local(response["Location"])
    assert response["Location"] == "/accounts/login/"


def test_a_local_next_is_followed_and_the_admin_login_goes_through_the_login_page(alice, root):
    response = Client().post("/accounts/login/?next=/projects/helpful/",
                             {"username": "alice", "password": "alice-pw"})
    assert response["Location"] == "/projects/helpful/"
    client = Client()
    hop = client.get("/admin/")
    assert hop.status_code == 302 and hop["Location"] == "/admin/login/?next=/admin/"
    hop = client.get(hop["Location"])
    assert hop.status_code == 302 and hop["Location"] == "/accounts/login/?next=/admin/"
    response = client.post(hop["Location"], {"username": "root", "password": "root-pw"})
    assert response["Location"] == "/admin/" and client.get("/admin/").status_code == 200
    hop = Client().get("/admin/login/", {"next": "//evil.example"})
    response = Client().post(hop["Location"], {"username": "root", "password": "root-pw"})
    assert response["Location"] == "/"


def test_is_local_tells_off_site_from_local():
    assert is_local("/projects/x/") and is_local("/")
    assert not any(is_local(target) for target in OFF_SITE if "evil" in target)


@pytest.mark.django_db(transaction=True)
def test_concurrent_guesses_cannot_pass_the_limit(settings):
    """Twelve guesses at once for one username with a limit of 4: exactly 4 get to check a
    password, whatever the timing (the count and the record are one step)."""
    import threading

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (CI runs it there): SQLite's test database is one "
                    "connection in memory, so threads cannot race on it")
    settings.LOGIN_FAILURES_PER_USERNAME = 4
    start, results, errors = threading.Barrier(12), [], []

    def guess(index: int) -> None:
        try:
            start.wait(10)
            results.append(auth.login_attempt_begin(username="alice",
                                                    ip=f"198.51.100.{index}"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sum(result is not None for result in results) == 4
    assert LoginFailure.objects.filter(username="alice").count() == 4


def test_api_tokens_expire_and_can_be_revoked(alice, api_client_for_token, settings):
    """A token works for API_TOKEN_TTL_SECONDS after it was issued, then answers 401 saying
    so and a new one is issued; DELETE /api/auth/token/ revokes it at once (issue 15, item 8)."""
    settings.API_TOKEN_TTL_SECONDS = 3600
    issued = api_client_for_token().post("/api/auth/token/",
                                         {"username": "alice", "password": "alice-pw"})
    key = issued.json()["token"]
    client = api_client_for_token(key)
    assert client.get("/api/projects/").status_code == 200
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=2))
    expired = client.get("/api/projects/")
    assert expired.status_code == 401
    assert expired.json()["detail"] == "Token expired: get a new one from POST /api/auth/token/."
    renewed = client.post("/api/auth/token/", {"username": "alice", "password": "alice-pw"})
    assert renewed.status_code == 200 and renewed.json()["token"] != key
    fresh = api_client_for_token(renewed.json()["token"])
    assert fresh.get("/api/projects/").status_code == 200
    assert fresh.delete("/api/auth/token/").status_code == 204
    assert fresh.get("/api/projects/").status_code == 401
    assert not Token.objects.filter(user=alice).exists()
    assert api_client_for_token().delete("/api/auth/token/").status_code == 401


@pytest.fixture
def api_client_for_token():
    from rest_framework.test import APIClient

    def client(key: str | None = None) -> APIClient:
        made = APIClient()
        if key:
            made.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return made

    return client
