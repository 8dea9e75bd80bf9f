"""Logging in: the login page and the API's token endpoint, both throttled.

Django's LoginView and DRF's ObtainAuthToken, each with the throttle's three calls around
the password check (annotate/services/auth.py). A blocked attempt answers 429 without
checking the password; a wrong password and an unknown username answer alike.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import SetPasswordForm
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from . import services
from .authentication import ExpiringTokenAuthentication, token_expired
from .services import auth

THROTTLED = "Too many failed logins. Try again later."


def _retry_after() -> dict[str, str]:
    return {"Retry-After": str(settings.LOGIN_FAILURE_WINDOW_SECONDS)}


class LoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        # Counted as a failure now; a right password takes it back (form_valid).
        self.attempt_id = auth.login_attempt_begin(username=request.POST.get("username"),
                                                   ip=auth.request_ip(request))
        if self.attempt_id is None:
            # An unbound form: a bound one would check the password when rendered.
            form = self.get_form_class()(request=request)
            context = self.get_context_data(form=form, throttled=THROTTLED)
            return self.render_to_response(context, status=429, headers=_retry_after())
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        auth.login_success_record(username=self.request.POST.get("username"),
                                  attempt_id=self.attempt_id)
        return super().form_valid(form)  # logs in, which gives the session a new key


class TokenObtainApi(ObtainAuthToken):
    """POST: a token for a username and password (a new one once the old has expired);
    DELETE: revoke the token of the request."""

    parser_classes = [JSONParser]  # as the whole API: ObtainAuthToken also takes forms

    def _deleting(self) -> bool:
        return getattr(getattr(self, "request", None), "method", None) == "DELETE"

    def get_permissions(self):
        return [IsAuthenticated()] if self._deleting() else []

    def get_authenticators(self):
        # A POST carries credentials in its body: an expired token in its header must not
        # stand in the way of getting a new one (a browser session still gets its CSRF check).
        if self._deleting():
            return [ExpiringTokenAuthentication(), SessionAuthentication()]
        return [SessionAuthentication()]

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, *args, **kwargs):
        """Revoke the token the request came with (from a browser session: the user's)."""
        tokens = Token.objects.filter(user=request.user)
        if isinstance(request.auth, Token):
            tokens = tokens.filter(key=request.auth.key)
        tokens.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=AuthTokenSerializer,
        responses={
            200: inline_serializer("TokenOutput", {"token": serializers.CharField()}),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="The credentials' errors"),
            429: inline_serializer("LoginThrottled", {"detail": serializers.CharField()}),
        },
    )
    def post(self, request, *args, **kwargs):
        data = request.data if hasattr(request.data, "get") else {}
        attempt_id = auth.login_attempt_begin(username=data.get("username"),
                                              ip=auth.request_ip(request))
        if attempt_id is None:
            return Response({"detail": THROTTLED}, status=status.HTTP_429_TOO_MANY_REQUESTS,
                            headers=_retry_after())
        serializer = self.get_serializer(data=data)
        if not serializer.is_valid():  # the attempt stays counted as a failure
            return Response(serializer.errors, status=status.HTTP_400_BAD_REQUEST)
        auth.login_success_record(username=data.get("username"), attempt_id=attempt_id)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        if token_expired(token):
            token.delete()
            token = Token.objects.create(user=serializer.validated_data["user"])
        return Response({"token": token.key})


@never_cache
@sensitive_post_parameters("new_password1", "new_password2")
@require_http_methods(["GET", "POST"])
def invitation_accept(request, token: str):
    """An invitation link: its holder sets the account's password once, then logs in."""
    try:
        user = services.invitation_user(token)
    except services.InvitationRefused as refused:
        return render(request, "registration/invitation.html", {"refused": str(refused)},
                      status=410)
    form = SetPasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.invitation_accept(token=token, password=form.cleaned_data["new_password1"])
        except services.InvitationRefused as refused:
            return render(request, "registration/invitation.html", {"refused": str(refused)},
                          status=410)
        messages.success(request, f"Your password is set, {user.username}: log in with it.")
        return redirect("login")
    return render(request, "registration/invitation.html", {"form": form, "invitee": user})
