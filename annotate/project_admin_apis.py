"""REST endpoints for a project's members, for its admins: one class per operation,
parse -> one service -> render. (Apart from apis.py to keep each module short.)"""

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import Conflict, Forbidden
from config.schema import raises

from . import services
from .apis import project_for_admin
from .models import Membership


class MemberOutput(serializers.Serializer):
    user_id = serializers.IntegerField(source="user.id")
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    created_at = serializers.DateTimeField()


class MemberAddInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default="labeler")
    password = serializers.CharField(
        required=False, write_only=True, min_length=8,
        help_text="Only for a new account; without one the answer carries an invitation link. "
                  "An existing account keeps its own password.")


class InvitationOutput(serializers.Serializer):
    url = serializers.CharField(help_text="Shown once: the link lets its holder set the "
                                          "account's password, once.")
    expires_at = serializers.DateTimeField()


class MemberAddOutput(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    created = serializers.BooleanField(help_text="Whether a new account was made.")
    outcome = serializers.ChoiceField(choices=("created", "added", "promoted", "unchanged"))
    message = serializers.CharField()
    invitation = InvitationOutput(allow_null=True)


def invitation_body(request, invitation) -> dict:
    url = request.build_absolute_uri(reverse("invitation_accept", args=[invitation.token]))
    return {"url": url, "expires_at": invitation.expires_at}


class MembersApi(APIView):
    @extend_schema(responses=MemberOutput(many=True))
    def get(self, request, project_id: int):
        project = project_for_admin(request, project_id)
        memberships = project.memberships.select_related("user").order_by("role", "user__username")
        return Response(MemberOutput(memberships, many=True).data)

    @extend_schema(request=MemberAddInput, responses={201: MemberAddOutput, 200: MemberAddOutput})
    def post(self, request, project_id: int):
        """Add a member: 201 when the account joins the project, 200 when it was a member."""
        project = project_for_admin(request, project_id)
        serializer = MemberAddInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        added = services.member_add(project=project, username=data["username"],
                                    role=data["role"], password=data.get("password"))
        body = {"user_id": added.user.id, "username": added.user.username, "role": added.role,
                "created": added.created, "outcome": added.outcome, "message": added.message(),
                "invitation": added.invitation and invitation_body(request, added.invitation)}
        joined = added.outcome in ("created", "added")
        return Response(MemberAddOutput(body).data,
                        status=status.HTTP_201_CREATED if joined else status.HTTP_200_OK)


class MemberRoleInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberApi(APIView):
    @extend_schema(request=MemberRoleInput, responses=MemberOutput)
    @raises(Conflict)
    def patch(self, request, project_id: int, user_id: int):
        """Change a member's role (the last admin stays admin: 409)."""
        project = project_for_admin(request, project_id)
        serializer = MemberRoleInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.member_role_set(project=project, user_id=user_id,
                                              role=serializer.validated_data["role"])
        return Response(MemberOutput(membership).data)

    @extend_schema(responses={204: None})
    @raises(Conflict)
    def delete(self, request, project_id: int, user_id: int):
        """Remove a member: their rankings stay, their open leases are released."""
        project = project_for_admin(request, project_id)
        services.member_remove(project=project, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberPasswordInput(serializers.Serializer):
    password = serializers.CharField(min_length=8, write_only=True)


class MemberPasswordApi(APIView):
    @extend_schema(request=MemberPasswordInput, responses={204: None})
    @raises(Forbidden)
    def post(self, request, project_id: int, user_id: int):
        """Set a member's password: only of an account that is not staff and belongs to no
        project you do not administer (403 otherwise)."""
        project = project_for_admin(request, project_id)
        serializer = MemberPasswordInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.member_password_set(project=project, actor=request.user, user_id=user_id,
                                     password=serializer.validated_data["password"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberInvitationApi(APIView):
    @extend_schema(request=None, responses={201: InvitationOutput})
    @raises(Forbidden)
    def post(self, request, project_id: int, user_id: int):
        """A link that lets the member set their password (once, until it expires), under
        the same rule as setting it."""
        project = project_for_admin(request, project_id)
        invitation = services.member_invitation_create(project=project, actor=request.user,
                                                       user_id=user_id)
        return Response(InvitationOutput(invitation_body(request, invitation)).data,
                        status=status.HTTP_201_CREATED)
