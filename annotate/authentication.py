"""API authentication: DRF's tokens, expiring API_TOKEN_TTL_SECONDS after they were issued.

Kept apart from the views: DRF imports its authentication classes while importing its views.
"""

from datetime import timedelta
from functools import cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from .compiled import CompiledQuery


def token_expired(token) -> bool:
    ttl = settings.API_TOKEN_TTL_SECONDS
    return bool(ttl) and token.created < timezone.now() - timedelta(seconds=ttl)


@cache
def _user_fields() -> list[str]:
    return [field.attname for field in get_user_model()._meta.concrete_fields]


# The token and its user in one query the ORM writes once (every API request runs it).
TOKEN_AND_USER = CompiledQuery(
    lambda key: Token.objects.filter(key=key).values_list(
        "user_id", "created", *(f"user__{name}" for name in _user_fields())),
    key=str)


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        # DRF's own, as one prepared query: select_related("user").get(key=key).
        row = TOKEN_AND_USER.first(key=key)
        if row is None:
            raise AuthenticationFailed(_("Invalid token."))
        user = get_user_model().from_db(connection.alias, _user_fields(), row[2:])
        token = Token.from_db(connection.alias, ["key", "user_id", "created"], [key, *row[:2]])
        token.user = user
        if not user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        if token_expired(token):
            raise AuthenticationFailed("Token expired: get a new one from POST /api/auth/token/.")
        return user, token
