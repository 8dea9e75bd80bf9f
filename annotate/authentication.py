"""API authentication: DRF's tokens, expiring API_TOKEN_TTL_SECONDS after they were issued.

Kept apart from the views: DRF imports its authentication classes while importing its views.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed


def token_expired(token) -> bool:
    ttl = settings.API_TOKEN_TTL_SECONDS
    return bool(ttl) and token.created < timezone.now() - timedelta(seconds=ttl)


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            raise AuthenticationFailed("Token expired: get a new one from POST /api/auth/token/.")
        return user, token
