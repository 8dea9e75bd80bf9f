"""Logging in: the login page and the API's token endpoint, both throttled.

Django's LoginView and DRF's ObtainAuthToken, each with the throttle's three calls around
the password check (annotate/services/auth.py). A blocked attempt answers 429 without
checking the password; a wrong password and an unknown username answer alike.
"""

from django.conf import settings
from django.contrib.auth import views as auth_views
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response

from .services import auth

THROTTLED = "Too many failed logins. Try again later."


def _retry_after() -> dict[str, str]:
    return {"Retry-After": str(settings.LOGIN_FAILURE_WINDOW_SECONDS)}


class LoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        if auth.login_blocked(username=request.POST.get("username"), ip=auth.request_ip(request)):
            # An unbound form: a bound one would check the password when rendered.
            form = self.get_form_class()(request=request)
            context = self.get_context_data(form=form, throttled=THROTTLED)
            return self.render_to_response(context, status=429, headers=_retry_after())
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        auth.login_failure_record(username=self.request.POST.get("username"),
                                  ip=auth.request_ip(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        auth.login_success_record(username=self.request.POST.get("username"))
        return super().form_valid(form)  # logs in, which gives the session a new key


class TokenObtainApi(ObtainAuthToken):
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
        ip = auth.request_ip(request)
        if auth.login_blocked(username=data.get("username"), ip=ip):
            return Response({"detail": THROTTLED}, status=status.HTTP_429_TOO_MANY_REQUESTS,
                            headers=_retry_after())
        serializer = self.get_serializer(data=data)
        if not serializer.is_valid():
            auth.login_failure_record(username=data.get("username"), ip=ip)
            return Response(serializer.errors, status=status.HTTP_400_BAD_REQUEST)
        auth.login_success_record(username=data.get("username"))
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})
