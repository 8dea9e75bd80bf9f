"""Login throttling: too many failed logins for one username, or from one address, answer 429.

Every failure is a LoginFailure row, so all gunicorn workers (and every host on one database)
count the same failures; no cache server is needed. Rows older than the window are deleted
as new failures come in. The limits are settings (LOGIN_FAILURE_WINDOW_SECONDS,
LOGIN_FAILURES_PER_USERNAME, LOGIN_FAILURES_PER_IP).

The login page and the token endpoint call the same two functions: `login_attempt_begin`
before checking a password, `login_success_record` after a right one. An attempt is counted
as a failure when it begins (its row stays if the password was wrong), and the count and the
new row are one serialized step, so concurrent guesses cannot pass the limit: of N at once,
only those that fit under it check a password. A blocked attempt checks no password, so it
tells nothing even when it is right.
"""

import ipaddress
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from ..models import LoginFailure

USERNAME_MAX_LENGTH = 150


def username_key(username: object) -> str:
    """Return the throttle's key for what was typed as a username.

    >>> username_key("  Alice ")
    'alice'
    >>> username_key(None)
    ''
    """
    if not isinstance(username, str):
        return ""
    return username.strip().casefold()[:USERNAME_MAX_LENGTH]


def client_ip(remote_addr: str | None, forwarded_for: str | None = None, *,
              trust_forwarded_for: bool = False) -> str | None:
    """Return the client's address: the last X-Forwarded-For entry behind a trusted proxy.

    The proxy appends the address it was connected from, so the last entry is the one a
    client cannot forge; earlier entries are whatever the client sent. None if not an address.

    >>> client_ip("10.0.0.2", "6.6.6.6, 203.0.113.9", trust_forwarded_for=True)
    '203.0.113.9'
    >>> client_ip("10.0.0.2", "203.0.113.9")
    '10.0.0.2'
    >>> client_ip("not an address") is None
    True
    """
    candidate = remote_addr
    if trust_forwarded_for and forwarded_for:
        candidate = forwarded_for.rsplit(",", 1)[-1]
    try:
        return str(ipaddress.ip_address((candidate or "").strip()))
    except ValueError:
        return None


def request_ip(request: HttpRequest) -> str | None:
    return client_ip(
        request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"),
        trust_forwarded_for=settings.LOGIN_CLIENT_IP_FROM_X_FORWARDED_FOR,
    )


def _window_start(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_blocked(*, username: object, ip: str | None, now: datetime | None = None) -> bool:
    """Whether `username` or `ip` has reached its limit of failures within the window.

    The same answer for a username that exists and one that does not.
    """
    recent = LoginFailure.objects.filter(at__gt=_window_start(now or timezone.now()))
    return _at_limit(recent, username, ip)


def _at_limit(failures, username: object, ip: str | None) -> bool:
    key = username_key(username)
    if key and failures.filter(username=key).count() >= settings.LOGIN_FAILURES_PER_USERNAME:
        return True
    return ip is not None and failures.filter(ip=ip).count() >= settings.LOGIN_FAILURES_PER_IP


LOGIN_LOCK = 7_401_215  # the PostgreSQL advisory lock that orders login attempts


def login_attempt_begin(*, username: object, ip: str | None,
                        now: datetime | None = None) -> int | None:
    """Count an attempt as a failure before its password is checked; return its id, or
    None when its username or address is at the limit (check no password then).

    Counting and recording are one step, taken one attempt at a time: on PostgreSQL under an
    advisory lock, on SQLite by writing first (the write takes the database's one write lock).
    """
    now = now or timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOGIN_LOCK])
        LoginFailure.objects.filter(at__lte=_window_start(now)).delete()
        attempt = LoginFailure.objects.create(username=username_key(username), ip=ip, at=now)
        earlier = LoginFailure.objects.filter(at__gt=_window_start(now)).exclude(id=attempt.id)
        if _at_limit(earlier, username, ip):
            attempt.delete()  # a blocked attempt is not counted: it checked nothing
            return None
    return attempt.id


def login_failure_record(*, username: object, ip: str | None,
                         now: datetime | None = None) -> None:
    """Count one failed login; forget failures older than the window."""
    now = now or timezone.now()
    LoginFailure.objects.filter(at__lte=_window_start(now)).delete()
    LoginFailure.objects.create(username=username_key(username), ip=ip, at=now)


def login_success_record(*, username: object, attempt_id: int | None = None) -> None:
    """A right password clears its username's failures and its own attempt (not its
    address's: an attacker could otherwise reset their address's count by logging in to an
    account of their own)."""
    if attempt_id is not None:
        LoginFailure.objects.filter(id=attempt_id).delete()
    key = username_key(username)
    if key:
        LoginFailure.objects.filter(username=key).delete()
