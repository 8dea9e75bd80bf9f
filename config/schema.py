"""The OpenAPI schema's error answers, derived in one place.

Every operation documents the 4xx (and 503) answers it can give, from its shape and from the
application errors its method declares with `@raises(...)`:

- 400 where it reads a body or query parameters (a serializer's field errors, or `Invalid`),
  and 415 where a body of another media type than its own is refused;
- 401 and 403 unless anyone may call it (no or an expired token; not the project's admin,
  not staff, or a browser session's write without its CSRF token);
- 404 where its path names an object;
- the status of each declared error (`config.errors.STATUS_OF`), 503 with its Retry-After.

An answer the operation documents itself (`extend_schema(responses=...)`) is kept as it is.
"""

import re

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from .errors import ApplicationError, Invalid, NotFound, status_of


class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField(help_text="What was refused, in one line")


class InvalidOutput(serializers.Serializer):
    detail = serializers.CharField(
        required=False,
        help_text="What is wrong, in one line; a field's errors come instead as a list "
                  "of messages under the field's name")


def raises(*errors: type[ApplicationError]):
    """Declare the application errors an API method answers beyond those of its shape
    (an id in its body that may name nothing: NotFound; a state that refuses it: Conflict)."""

    def mark(method):
        method.raises = errors
        return method

    return mark


AUTH_ANSWERS = {
    401: "No credentials, or a token that expired: get one from POST /api/auth/token/.",
    403: "Not allowed: the operation is for the project's admins (or staff), or a browser "
         "session's write came without its CSRF token.",
}
UNSUPPORTED = "The body is not of the media type this operation takes."


class ErrorDocumentingSchema(AutoSchema):
    def error_answers(self) -> dict[int, str]:
        """The error statuses this operation can answer, each with why."""
        answers: dict[int, str] = {}
        takes_body = self.method in ("POST", "PUT", "PATCH") and (
            self.get_request_serializer() is not None)
        if takes_body or any(p.get("in") == "query" for p in self._get_parameters()):
            answers[400] = _first_line(Invalid)
        if takes_body:
            answers[415] = UNSUPPORTED
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            answers.update(AUTH_ANSWERS)
        if re.search(r"{\w+}", self.path):
            answers[404] = _first_line(NotFound)
        method = getattr(self.view, self.method.lower(), None)
        for error in getattr(method, "raises", ()):
            answers[status_of(error(""))] = _first_line(error)
        return dict(sorted(answers.items()))

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status, description in self.error_answers().items():
            if str(status) not in responses:
                body = InvalidOutput if status == 400 else ErrorOutput
                responses[str(status)] = self._get_response_for_code(
                    OpenApiResponse(body, description=description), str(status),
                    ["application/json"], direction)
        return responses

    def _get_response_headers_for_code(self, status_code, direction="response"):
        headers = super()._get_response_headers_for_code(status_code, direction)
        if str(status_code) == "503":
            headers["Retry-After"] = {
                "schema": {"type": "integer"},
                "description": "Seconds to wait before trying again"}
        return headers


def _first_line(error: type[ApplicationError]) -> str:
    return (error.__doc__ or error.__name__).strip().splitlines()[0]
