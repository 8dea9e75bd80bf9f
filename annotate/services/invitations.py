"""Invitation links: a signed, expiring, single-use token that lets its holder set the
password of one account.

The token is django.core.signing's TimestampSigner over the user's id and a fingerprint of
their current password hash. It expires after INVITATION_MAX_AGE_SECONDS (the signer's
max_age), and it works once: setting the password changes the hash, so the fingerprint no
longer matches. A new invitation to an account that has no password yet gives it a new
unusable hash, so the older link stops working too. Nothing is stored.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import AbstractUser
from django.core import signing
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from rest_framework.authtoken.models import Token

from config.errors import Conflict

User = get_user_model()
SALT = "annotate.invitation"


@dataclass(frozen=True)
class Invitation:
    user: AbstractUser
    token: str
    expires_at: datetime


class InvitationRefused(Conflict):
    """The link expired, was used already, was replaced by a newer one, or is not ours."""


def _fingerprint(user: AbstractUser) -> str:
    return salted_hmac(SALT, f"{user.pk}:{user.password}:{user.is_active}").hexdigest()[:20]


def invitation_create(*, user: AbstractUser) -> Invitation:
    """Return a link token for `user` to set their password. The caller checked the right
    to; an account with no password yet gets a new unusable one, ending its older links."""
    if not user.password or not user.has_usable_password():
        user.set_unusable_password()
        user.save(update_fields=["password"])
    token = signing.TimestampSigner(salt=SALT).sign_object({"u": user.pk, "f": _fingerprint(user)})
    expires_at = timezone.now() + timedelta(seconds=settings.INVITATION_MAX_AGE_SECONDS)
    return Invitation(user=user, token=token, expires_at=expires_at)


def invitation_user(token: str) -> AbstractUser:
    """Return the account a token may set the password of, or raise InvitationRefused."""
    try:
        payload = signing.TimestampSigner(salt=SALT).unsign_object(
            token, max_age=settings.INVITATION_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise InvitationRefused("This invitation link has expired; ask a project admin "
                                "for a new one.") from None
    except (signing.BadSignature, ValueError, TypeError):
        raise InvitationRefused("This invitation link is not valid.") from None
    user = User.objects.filter(pk=payload.get("u"), is_active=True).first() if isinstance(
        payload, dict) else None
    if user is None or not constant_time_compare(_fingerprint(user), str(payload.get("f"))):
        raise InvitationRefused("This invitation link was used already or replaced by a "
                                "newer one; ask a project admin for a new one.")
    return user


def invitation_accept(*, token: str, password: str) -> AbstractUser:
    """Set the password of the token's account; the token works only this once."""
    with transaction.atomic():
        user = invitation_user(token)
        user = User.objects.select_for_update().get(pk=user.pk)
        user = invitation_user(token)  # again, under the lock: two tabs set it once
        password_validation.validate_password(password, user)
        user.set_password(password)
        user.save(update_fields=["password"])
        Token.objects.filter(user=user).delete()  # a reset ends API access with the old one
    return user
