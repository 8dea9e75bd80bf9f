"""Application errors: what services raise when the rules refuse a request.

Services raise these and know nothing of HTTP. The one place that turns them into answers
is `api_exception_handler` (the API) and `STATUS_OF` (anything else that needs a status);
pages show `str(error)` beside the form or as a message.
"""

import re
from pathlib import Path

from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A request the rules refuse. The message is one line for the person who asked;
    `extra` holds structured details an API answer carries along (for example row errors)."""

    def __init__(self, message: str, *, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class Invalid(ApplicationError):
    """The request itself is wrong: a field, a file, a value out of range."""


class Forbidden(ApplicationError):
    """Not for this caller: the rules keep it from them whatever the state of things."""


class NotFound(ApplicationError):
    """It names something that does not exist (or that the caller may not know of)."""


class Conflict(ApplicationError):
    """Valid, but the state of things refuses it now (frozen, taken, still running)."""


class QuotaExceeded(ApplicationError):
    """Too many of these are queued or running; wait for one to finish."""


class Unavailable(ApplicationError):
    """Not now: try again after the seconds the Retry-After header says.

    `extra["retry_after"]` holds them, when known."""


# Every application error maps to one status, here and nowhere else.
STATUS_OF = {Invalid: 400, Forbidden: 403, NotFound: 404, Conflict: 409, QuotaExceeded: 429,
             Unavailable: 503}


def status_of(error: ApplicationError) -> int:
    for error_type in type(error).__mro__:
        if error_type in STATUS_OF:
            return STATUS_OF[error_type]
    return 400  # a bare ApplicationError: the request was refused


def api_exception_handler(exc, context):
    """DRF's handler, plus application errors as {"detail": message, **extra}."""
    if isinstance(exc, ApplicationError):
        extra = {k: v for k, v in exc.extra.items() if k != "retry_after"}
        response = Response({"detail": exc.message, **extra}, status=status_of(exc))
        if "retry_after" in exc.extra:
            response["Retry-After"] = str(int(exc.extra["retry_after"]))
        return response
    return exception_handler(exc, context)


ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])(?:/[^\s/'\"():,;]+)+/?")


def reason_line(error: object) -> str:
    """One line that says why something failed: the error's first line, with every absolute
    path shortened to its last part (project admins read it; paths are the server's).

    >>> reason_line("OSError: no file /srv/var/jobs/4/output/model/config.json\\nmore")
    'OSError: no file config.json'
    """
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, BaseException) and not text.startswith(type(error).__name__):
        text = f"{type(error).__name__}: {text}" if not isinstance(
            error, ApplicationError) else text
    return ABSOLUTE_PATH.sub(lambda m: Path(m.group(0)).name or "/", text)[:500]
