"""REST endpoints: one class per operation, parse -> one service or selector -> render."""

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import Conflict, QuotaExceeded
from config.schema import raises

from . import selectors, services
from .api_fields import CompletionIdsField, FlagsField, MessagesField, ScoresField, TiersField
from .importers import FORMATS, RowError
from .models import PROJECT_SETTINGS, Export, Project, PromptImport
from .ratings import aspects_of
from .uploads import UploadTooLarge


class ProjectOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    prompt_count = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", *PROJECT_SETTINGS, "is_frozen", "role", "prompt_count", "created_at"]

    def get_role(self, project: Project) -> str | None:
        return selectors.project_role(self.context["request"].user, project)

    def get_prompt_count(self, project: Project) -> int:
        # Lists annotate it in their one query; one project counts its own.
        if hasattr(project, "prompt_count"):
            return project.prompt_count
        return project.prompts.count()


def project_for_admin(request, project_id: int) -> Project:
    """The project if `request.user` administers it; 404 if they cannot see it, else 403."""
    return selectors.project_get_administered(request.user, id=project_id)


class ProjectCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100)
    criterion = serializers.CharField(max_length=200)
    instructions = serializers.CharField(required=False, allow_blank=True, default="")
    completions_per_prompt = serializers.IntegerField(min_value=2, max_value=9, default=4)
    labelers_per_prompt = serializers.IntegerField(min_value=1, default=3)
    allow_ties = serializers.BooleanField(default=False)
    auto_place_last = serializers.BooleanField(default=True)
    annotation_mode = serializers.ChoiceField(choices=Project.Mode.choices,
                                              default=Project.Mode.RANK)
    rating_scale_min = serializers.IntegerField(default=1, help_text="Rate mode: the worst score.")
    rating_scale_max = serializers.IntegerField(
        default=5, help_text="Rate mode: the best score; at most 10 points, from 0 to 10.")
    rating_aspects = serializers.ListField(
        child=serializers.CharField(max_length=40), default=list, max_length=6,
        help_text="Rate mode: aspects scored separately; none: one overall score.")

    def validate_slug(self, slug: str) -> str:
        if Project.objects.filter(slug=slug).exists():
            raise serializers.ValidationError("A project with this slug exists.")
        return slug


class ProjectPagination(LimitOffsetPagination):
    """`limit` and `offset` as the schema documents them: anything but one whole number at
    least the minimum answers 400 naming the parameter (DRF's own falls back to the defaults
    silently)."""

    max_limit = 1000  # a larger ?limit= is this; an unbounded one overflowed the SQL LIMIT

    def get_limit(self, request) -> int:
        limit = self._whole_number(request, self.limit_query_param, 1, self.default_limit)
        return min(limit, self.max_limit)

    def get_offset(self, request) -> int:
        return self._whole_number(request, self.offset_query_param, 0, 0)

    def _whole_number(self, request, name: str, minimum: int, default: int) -> int:
        values = request.query_params.getlist(name)
        if not values:
            return default
        text = values[0]
        # 18 digits: past that, int() refuses long strings and SQL's bigint overflows.
        if (len(values) > 1 or not (text.isascii() and text.isdigit()) or len(text) > 18
                or int(text) < minimum):
            raise ValidationError({name: f"must be one whole number, at least {minimum}."})
        return int(text)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1 if parameter["name"] == self.limit_query_param else 0
        return parameters


class ProjectListCreateApi(APIView):
    pagination_class = ProjectPagination  # also makes the schema say so

    @extend_schema(responses=ProjectOutput(many=True))
    def get(self, request):
        paginator = self.pagination_class()
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


class ProjectUpdateInput(serializers.ModelSerializer):
    """The settings to change; any left out stay as they are."""

    class Meta:
        model = Project
        fields = PROJECT_SETTINGS
        extra_kwargs = {name: {"required": False} for name in PROJECT_SETTINGS}


class ProjectDetailApi(APIView):
    @extend_schema(responses=ProjectOutput)
    def get(self, request, project_id: int):
        project = selectors.project_get_visible(request.user, id=project_id)
        return Response(ProjectOutput(project, context={"request": request}).data)

    @extend_schema(request=ProjectUpdateInput, responses=ProjectOutput)
    @raises(Conflict)
    def patch(self, request, project_id: int):
        """Change the project's settings (its admins). Completions per prompt cannot change
        once the project has prompts, nor the annotation mode, rating scale and aspects once it
        has rankings (409, saying why)."""
        project = project_for_admin(request, project_id)
        serializer = ProjectUpdateInput(project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        project = services.project_update(project=project, **serializer.validated_data)
        return Response(ProjectOutput(project, context={"request": request}).data)


class ImportOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Poll this for the import's status.")
    skipped = serializers.ListField(child=serializers.DictField(),
                                    help_text="Lines left out with skip_invalid: line, field, "
                                              "message.")
    errors = serializers.ListField(child=serializers.DictField(),
                                   help_text="Why a failed import wrote nothing: line, field, "
                                             "message.")

    class Meta:
        model = PromptImport
        fields = ["id", "url", "project", "status", "filename", "file_format", "skip_invalid",
                  "lines_read", "prompt_count", "completion_count", "ranking_count", "skipped",
                  "error", "errors", "created_at", "started_at", "finished_at"]

    def get_url(self, record: PromptImport) -> str:
        return reverse("api_project_import", args=[record.project_id, record.id])


class PromptImportInput(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)  # refused by the import, as all files
    format = serializers.ChoiceField(choices=("auto", *FORMATS), default="auto")
    skip_invalid = serializers.BooleanField(default=False)


class PromptImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(request=PromptImportInput, responses={202: ImportOutput})
    @raises(QuotaExceeded)
    def post(self, request, project_id: int):
        """Store the file and queue its import on a worker: poll `url` for its end."""
        project = project_for_admin(request, project_id)
        try:
            serializer = PromptImportInput(data=request.data)
        except UploadTooLarge as exc:  # refused before the body was read (annotate.uploads)
            error = RowError(0, "file", exc.reason, fatal=True)
            raise services.ImportRejected(exc.filename or "upload", [error]) from None
        serializer.is_valid(raise_exception=True)
        record = services.prompts_import_upload(
            project=project,
            upload=serializer.validated_data["file"],
            file_format=serializer.validated_data["format"],
            skip_invalid=serializer.validated_data["skip_invalid"],
            imported_by=request.user,
        )
        return Response(ImportOutput(record).data, status=status.HTTP_202_ACCEPTED)


class PromptImportDetailApi(APIView):
    @extend_schema(responses=ImportOutput)
    def get(self, request, project_id: int, import_id: int):
        project = project_for_admin(request, project_id)
        return Response(ImportOutput(selectors.prompt_import_get(project, import_id)).data)


# --- labeling -----------------------------------------------------------------------------


class CompletionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()


class PromptOutput(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField()
    messages = MessagesField()


class AnnotationOutput(serializers.Serializer):
    """What the labeler does with the completions, so a client knows what to send."""

    annotation_mode = serializers.ChoiceField(
        choices=Project.Mode.choices, help_text="rank: send `tiers`; rate: send `scores`.")
    criterion = serializers.CharField()
    rating_scale_min = serializers.IntegerField(help_text="Rate mode: the worst score.")
    rating_scale_max = serializers.IntegerField(help_text="Rate mode: the best score.")
    rating_aspects = serializers.ListField(
        child=serializers.CharField(),
        help_text="Rate mode: the aspects each completion gets a score for ('overall' when "
                  "the project names none).")


def annotation_of(project: Project) -> dict:
    return {"annotation_mode": project.annotation_mode, "criterion": project.criterion,
            "rating_scale_min": project.rating_scale_min,
            "rating_scale_max": project.rating_scale_max,
            "rating_aspects": aspects_of(project.rating_aspects)}


class NextPromptOutput(serializers.Serializer):
    annotation = AnnotationOutput()
    prompt = PromptOutput()
    completions = CompletionOutput(many=True, help_text="In the order to show them.")
    expires_at = serializers.DateTimeField(help_text="When the lease ends unless renewed.")


DATE_TIME = serializers.DateTimeField()


def next_prompt_body(project: Project, labeler) -> dict | None:
    """The labeler's open lease or a new one, in NextPromptOutput's shape; None when nothing
    is left for them. Built directly: the serializer cost more than the query."""
    assignment = services.assignment_next(project=project, labeler=labeler)
    if assignment is None:
        return None
    page = selectors.rank_page_for_lease(assignment)
    prompt = page.prompt
    return {"annotation": annotation_of(project),
            "prompt": {"id": prompt.id, "external_id": prompt.external_id,
                       "text": prompt.text, "messages": prompt.messages},
            "completions": [{"id": c.id, "text": c.text} for c in page.completions],
            "expires_at": DATE_TIME.to_representation(assignment.expires_at)}


NEXT_PARAMETER = OpenApiParameter(
    "next", bool, required=False,
    description="true: the answer also carries your next prompt in `next` (as next-prompt/ "
                "gives it, null when nothing is left), so one request per ranking does.")


def wants_next(request) -> bool:
    """?next=true|1 (or false|0); anything else answers 400 naming the parameter."""
    values = request.query_params.getlist("next")
    if not values:
        return False
    if len(values) > 1 or values[0].lower() not in ("true", "1", "false", "0"):
        raise ValidationError({"next": "must be true or false (or 1 or 0), given once."})
    return values[0].lower() in ("true", "1")


class NextPromptApi(APIView):
    @extend_schema(responses={200: NextPromptOutput, 204: None})
    def get(self, request, project_id: int):
        project = selectors.project_get_visible(request.user, id=project_id)
        body = next_prompt_body(project, request.user)
        if body is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(body)


class RankingInput(serializers.Serializer):
    prompt = serializers.IntegerField()
    tiers = TiersField(required=False, default=None,
                       help_text="Rank mode: [[completion id, ...], ...], best tier first.")
    scores = ScoresField(required=False, default=None,
                         help_text="Rate mode, instead of tiers (which are derived from them): "
                                   "a score for every completion and aspect.")
    idempotency_key = serializers.CharField(max_length=100)
    flags = FlagsField(required=False, default=dict)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, default=None)
    displayed_order = CompletionIdsField(required=False, default=list)
    base_revision = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0,
        help_text="The revision of your ranking this one replaces (0: none). If yours has "
                  "moved on since, 409 with the current version in `current`.")


class RankingOutput(serializers.Serializer):
    id = serializers.SerializerMethodField()
    prompt = serializers.SerializerMethodField()
    revision = serializers.IntegerField()
    tiers = TiersField()
    scores = ScoresField(allow_null=True, help_text="Rate mode: the scores; null in rank mode.")
    flags = FlagsField()
    comment = serializers.CharField()
    time_spent_ms = serializers.IntegerField(allow_null=True)
    idempotency_key = serializers.CharField()
    next = NextPromptOutput(
        allow_null=True, required=False,
        help_text="With ?next=true only: your next prompt, null when nothing is left.")

    def get_id(self, version) -> int:
        return version.id

    def get_prompt(self, version) -> int:
        return version.prompt_id


_JSON_INPUTS = {"tiers": None, "scores": None, "flags": dict, "displayed_order": list}


def _plain_text(value: object, max_length: int, blank: bool) -> bool:
    """A string RankingInput's CharField keeps as it is: no surrounding whitespace to trim, no
    characters it refuses, within its length."""
    return (type(value) is str and len(value) <= max_length and (blank or value != "")
            and value.isprintable() and value == value.strip())


def plain_ranking_input(body: object) -> dict | None:
    """RankingInput's validated_data for the body every client sends (plain types, nothing to
    coerce or refuse), without the serializer's cost; None for anything else, which the
    serializer then checks and words as ever."""
    if type(body) is not dict or type(body.get("prompt")) is not int:
        return None
    if not _plain_text(body.get("idempotency_key"), 100, blank=False):
        return None
    if "comment" in body and not _plain_text(body["comment"], 5000, blank=True):
        return None
    for name, minimum in (("time_spent_ms", None), ("base_revision", 0)):
        value = body.get(name)
        if value is not None and (type(value) is not int
                                  or (minimum is not None and value < minimum)):
            return None
    data = {"prompt": body["prompt"], "idempotency_key": body["idempotency_key"],
            "comment": body.get("comment", ""), "time_spent_ms": body.get("time_spent_ms"),
            "base_revision": body.get("base_revision")}
    for name, default in _JSON_INPUTS.items():
        if name not in body:
            data[name] = default() if default else None
        elif body[name] is None:  # refused by the serializer (not nullable): let it say so
            return None
        else:
            data[name] = body[name]
    return data


def ranking_body(version) -> dict:
    """RankingOutput's shape, built directly (the serializer cost more than the query)."""
    return {"id": version.id, "prompt": version.prompt_id, "revision": version.revision,
            "tiers": version.tiers, "scores": version.scores, "flags": version.flags,
            "comment": version.comment, "time_spent_ms": version.time_spent_ms,
            "idempotency_key": version.idempotency_key}


class RankingCreateApi(APIView):
    @extend_schema(request=RankingInput, parameters=[NEXT_PARAMETER],
                   responses={201: RankingOutput, 200: RankingOutput})
    @raises(Conflict)
    def post(self, request, project_id: int):
        project = selectors.project_get_visible(request.user, id=project_id)
        with_next = wants_next(request)
        data = plain_ranking_input(request.data)
        if data is None:
            serializer = RankingInput(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
        version, _ = services.ranking_submit(
            project=project, labeler=request.user, prompt_id=data["prompt"],
            tiers=data["tiers"], idempotency_key=data["idempotency_key"],
            flags=data["flags"], comment=data["comment"],
            time_spent_ms=data["time_spent_ms"], displayed_order=data["displayed_order"],
            base_revision=data["base_revision"], scores=data["scores"],
        )
        # A first ranking answers 201, a revision 200; a retried key answers as it did first.
        code = status.HTTP_201_CREATED if version.revision == 1 else status.HTTP_200_OK
        body = ranking_body(version)
        feedback = selectors.gold_feedback(project, request.user, version.ranking)
        if feedback is not None:
            body["gold_feedback"] = feedback
        if with_next:
            # After the ranking's own transaction: a failure here loses no ranking.
            body["next"] = next_prompt_body(project, request.user)
        return Response(body, status=code)


class DemonstrationInput(serializers.Serializer):
    prompt = serializers.IntegerField()
    text = serializers.CharField(max_length=20_000,
                                 help_text="The response; surrounding whitespace is dropped.")
    source_completion = serializers.IntegerField(
        required=False, allow_null=True, default=None,
        help_text="The completion this text was edited from (null: written from scratch).")
    idempotency_key = serializers.CharField(max_length=100)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, default=None)
    base_revision = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0,
        help_text="The revision of your demonstration this one replaces (0: none). If yours "
                  "has moved on since, 409 with the current version in `current`.")


class DemonstrationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    prompt = serializers.IntegerField(source="prompt_id")
    revision = serializers.IntegerField()
    text = serializers.CharField()
    source_completion = serializers.IntegerField(source="source_completion_id", allow_null=True)
    comment = serializers.CharField()
    time_spent_ms = serializers.IntegerField(allow_null=True)
    idempotency_key = serializers.CharField()


class DemonstrationCreateApi(APIView):
    @extend_schema(request=DemonstrationInput,
                   responses={201: DemonstrationOutput, 200: DemonstrationOutput})
    @raises(Conflict)
    def post(self, request, project_id: int):
        """Write the response a leased prompt should get (demonstrate projects), from scratch
        or by editing one of its completions; again with a new key to revise it."""
        project = selectors.project_get_visible(request.user, id=project_id)
        serializer = DemonstrationInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        version, _ = services.demonstration_submit(
            project=project, labeler=request.user, prompt_id=data["prompt"], text=data["text"],
            source_completion_id=data["source_completion"],
            idempotency_key=data["idempotency_key"], comment=data["comment"],
            time_spent_ms=data["time_spent_ms"], base_revision=data["base_revision"])
        # A first demonstration answers 201, a revision 200; a retried key as it did first.
        code = status.HTTP_201_CREATED if version.revision == 1 else status.HTTP_200_OK
        return Response(DemonstrationOutput(version).data, status=code)


class SkipInput(serializers.Serializer):
    prompt = serializers.IntegerField()
    reason = serializers.CharField(max_length=500)


class SkipNextOutput(serializers.Serializer):
    next = NextPromptOutput(allow_null=True,
                            help_text="Your next prompt, null when nothing is left.")


class SkipCreateApi(APIView):
    @extend_schema(request=SkipInput, parameters=[NEXT_PARAMETER],
                   responses={201: SkipNextOutput},
                   description="201 with no body, or with `next` when ?next=true.")
    def post(self, request, project_id: int):
        project = selectors.project_get_visible(request.user, id=project_id)
        with_next = wants_next(request)
        serializer = SkipInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.prompt_skip(project=project, labeler=request.user,
                             prompt_id=serializer.validated_data["prompt"],
                             reason=serializer.validated_data["reason"])
        if not with_next:
            return Response(status=status.HTTP_201_CREATED)
        return Response({"next": next_prompt_body(project, request.user)},
                        status=status.HTTP_201_CREATED)


class LeaseOutput(serializers.Serializer):
    expires_at = serializers.DateTimeField()


class LeaseRenewApi(APIView):
    @extend_schema(request=None, responses={200: LeaseOutput})
    @raises(Conflict)
    def post(self, request, project_id: int, prompt_id: int):
        project = selectors.project_get_visible(request.user, id=project_id)
        assignment = services.lease_renew(project=project, labeler=request.user,
                                          prompt_id=prompt_id)
        return Response(LeaseOutput(assignment).data)


class GoldInput(serializers.Serializer):
    tiers = TiersField(help_text="The reference ranking: [[completion id, ...], ...]")
    mode = serializers.ChoiceField(choices=("ranking", "best"), default="ranking")


class PromptGoldApi(APIView):
    @extend_schema(request=GoldInput, responses={200: PromptOutput})
    def put(self, request, project_id: int, prompt_id: int):
        project = project_for_admin(request, project_id)
        serializer = GoldInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        prompt = services.prompt_gold_set(project=project, prompt_id=prompt_id,
                                          **serializer.validated_data)
        return Response(PromptOutput(prompt).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project_id: int, prompt_id: int):
        project = project_for_admin(request, project_id)
        services.prompt_gold_clear(project=project, prompt_id=prompt_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProgressOutput(serializers.Serializer):
    done = serializers.IntegerField()
    skipped = serializers.IntegerField()
    assigned = serializers.IntegerField()
    project_ranked = serializers.IntegerField()
    project_needed = serializers.IntegerField()
    left = serializers.IntegerField()


class ProgressApi(APIView):
    @extend_schema(responses=ProgressOutput)
    def get(self, request, project_id: int):
        project = selectors.project_get_visible(request.user, id=project_id)
        return Response(ProgressOutput(selectors.labeler_progress(project, request.user)).data)


# --- exports ------------------------------------------------------------------------------


class ExportInput(serializers.Serializer):
    min_votes = serializers.IntegerField(min_value=1, default=2)
    min_agreement = serializers.FloatField(min_value=0.5, max_value=1.0, default=2 / 3)
    tie_policy = serializers.ChoiceField(choices=("half", "abstain"), default="half")
    test_fraction = serializers.FloatField(min_value=0.0, max_value=0.99, default=0.1)
    seed = serializers.IntegerField(default=0)
    include_imported = serializers.BooleanField(default=False)
    exclude_flagged = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="Leave out labelers below the gold threshold (default: the project's setting)",
    )
    weight_by_reliability = serializers.BooleanField(default=False)
    max_spread = serializers.FloatField(
        min_value=0.0, required=False, allow_null=True, default=None,
        help_text="Rate projects: keep a completion's score only when its labelers' scores "
                  "differ by at most this, highest minus lowest (default: the project's "
                  "consensus_max_spread)",
    )
    formats = serializers.ListField(
        child=serializers.ChoiceField(choices=services.exports.FORMATS),
        default=list(services.exports.FORMATS),
    )


class ExportOutput(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = ["id", "project", "version", "status", "params", "prompts_total",
                  "prompts_done", "counts", "content_hash", "error", "created_at",
                  "started_at", "finished_at", "download_url"]

    def get_download_url(self, export: Export) -> str | None:
        if export.status != Export.Status.SUCCEEDED:
            return None
        return reverse("api_export_download", args=[export.id])


class ProjectExportsApi(APIView):
    @extend_schema(responses=ExportOutput(many=True))
    def get(self, request, project_id: int):
        project = project_for_admin(request, project_id)
        return Response(ExportOutput(project.exports.all()[:100], many=True).data)

    @extend_schema(request=ExportInput, responses={202: ExportOutput})
    @raises(QuotaExceeded)
    def post(self, request, project_id: int):
        project = project_for_admin(request, project_id)
        serializer = ExportInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = {**serializer.validated_data, "formats": tuple(serializer.validated_data["formats"])}
        export = services.export_create(
            project=project, params=services.ExportParams(**data), created_by=request.user
        )
        # The same parameters as an export still queued or building answer that export.
        return Response(ExportOutput(export).data, status=status.HTTP_202_ACCEPTED)


def export_for_admin(request, export_id: int) -> Export:
    return selectors.export_get_administered(request.user, export_id)


class ExportDetailApi(APIView):
    @extend_schema(responses=ExportOutput)
    def get(self, request, export_id: int):
        return Response(ExportOutput(export_for_admin(request, export_id)).data)


class ExportDownloadApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("file", str, description="One file (default: the zip)")],
        responses={(200, media_type): OpenApiTypes.BINARY
                   # Bytes first: a generated client reads the first type it knows.
                   for media_type in ("application/octet-stream", "application/zip",
                                      "application/x-ndjson", "application/json",
                                      "text/markdown")},
    )
    def get(self, request, export_id: int):
        export = export_for_admin(request, export_id)
        path = services.export_file_path(export, request.query_params.get("file"))
        filename = _download_name(export, path)
        # Always a download, never a page of the app's origin, whatever a file holds.
        content_type = DOWNLOAD_TYPES.get(path.suffix, "application/octet-stream")
        return FileResponse(path.open("rb"), as_attachment=True, filename=filename,
                            content_type=content_type)


def _download_name(export: Export, path) -> str:
    """Name a download after its project and version: helpful-v3.zip, helpful-v3-train.jsonl."""
    stem = f"{export.project.slug}-v{export.version}"
    return f"{stem}.zip" if path.name == f"v{export.version}.zip" else f"{stem}-{path.name}"


DOWNLOAD_TYPES = {
    ".zip": "application/zip",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
}
