"""REST endpoints: one class per operation, parse -> one service or selector -> render."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .importers import FORMATS
from .models import PROJECT_SETTINGS, Membership, Project


class ProjectOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    prompt_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Project
        fields = ["id", *PROJECT_SETTINGS, "is_frozen", "role", "prompt_count", "created_at"]

    def get_role(self, project: Project) -> str | None:
        return selectors.project_role(self.context["request"].user, project)


def project_for_admin(request, project_id: int) -> Project:
    """The project if `request.user` administers it; 404 if they cannot see it, else 403."""
    project = selectors.project_get_visible(request.user, id=project_id)
    if selectors.project_role(request.user, project) != Membership.Role.ADMIN:
        raise PermissionDenied("Only the project's admins may do this.")
    return project


class ProjectCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100)
    criterion = serializers.CharField(max_length=200)
    instructions = serializers.CharField(required=False, allow_blank=True, default="")
    completions_per_prompt = serializers.IntegerField(min_value=2, max_value=9, default=4)
    labelers_per_prompt = serializers.IntegerField(min_value=1, default=3)
    allow_ties = serializers.BooleanField(default=False)

    def validate_slug(self, slug: str) -> str:
        if Project.objects.filter(slug=slug).exists():
            raise serializers.ValidationError("A project with this slug exists.")
        return slug


class ProjectListCreateApi(APIView):
    @extend_schema(responses=ProjectOutput(many=True))
    def get(self, request):
        paginator = LimitOffsetPagination()
        projects = selectors.project_list_with_counts(request.user).order_by("name")
        page = paginator.paginate_queryset(projects, request, view=self)
        data = ProjectOutput(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)

    @extend_schema(request=ProjectCreateInput, responses={201: ProjectOutput})
    def post(self, request):
        if not selectors.user_can_create_projects(request.user):
            raise PermissionDenied("Only staff may create projects.")
        serializer = ProjectCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_create(created_by=request.user, **serializer.validated_data)
        output = ProjectOutput(project, context={"request": request})
        return Response(output.data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(responses=ProjectOutput)
    def get(self, request, project_id: int):
        project = selectors.project_get_visible(request.user, id=project_id)
        return Response(ProjectOutput(project, context={"request": request}).data)


class MemberAddInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default="labeler")
    password = serializers.CharField(required=False, write_only=True, min_length=8)


class ProjectMemberAddApi(APIView):
    @extend_schema(
        request=MemberAddInput,
        responses={
            201: inline_serializer(
                "MemberOutput",
                {
                    "username": serializers.CharField(),
                    "role": serializers.CharField(),
                    "created": serializers.BooleanField(),
                },
            )
        },
    )
    def post(self, request, project_id: int):
        project = project_for_admin(request, project_id)
        serializer = MemberAddInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user, created = services.labeler_add(
            project=project, username=data["username"], password=data.get("password")
        )
        if data["role"] == Membership.Role.ADMIN:
            services.membership_set(project=project, user=user, role=Membership.Role.ADMIN)
        role = selectors.project_role(user, project)
        body = {"username": user.username, "role": role, "created": created}
        return Response(body, status=status.HTTP_201_CREATED)


class ImportOutput(serializers.Serializer):
    id = serializers.IntegerField()
    filename = serializers.CharField()
    file_format = serializers.CharField()
    prompt_count = serializers.IntegerField()
    completion_count = serializers.IntegerField()
    ranking_count = serializers.IntegerField()
    skipped = serializers.ListField(child=serializers.DictField())


class PromptImportInput(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=("auto", *FORMATS), default="auto")
    skip_invalid = serializers.BooleanField(default=False)


class PromptImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(request=PromptImportInput, responses={201: ImportOutput})
    def post(self, request, project_id: int):
        project = project_for_admin(request, project_id)
        serializer = PromptImportInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        try:
            record = services.prompts_import_upload(
                project=project,
                upload=upload,
                file_format=serializer.validated_data["format"],
                skip_invalid=serializer.validated_data["skip_invalid"],
                imported_by=request.user,
            )
        except services.ImportRejected as exc:
            body = {
                "detail": f"{exc.filename}: nothing imported.",
                "errors": [error.as_dict() for error in exc.errors],
            }
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(ImportOutput(record).data, status=status.HTTP_201_CREATED)
