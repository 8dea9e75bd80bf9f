"""REST endpoints for training jobs and the model registry. Project admins only."""

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate import services as annotate_services
from annotate.api_fields import TextOrMessagesField
from annotate.apis import project_for_admin
from config.errors import Conflict, Invalid, NotFound, QuotaExceeded, Unavailable
from config.schema import raises

from . import selectors, services
from .catalog import catalog_models
from .kinds import KINDS, JobRequest
from .kinds.base import var_absolute
from .models import ModelArtifact, TrainingJob
from .services.requests import ARTIFACT_PREFIX

# Keys of a job's result that hold server paths: never sent; the model's files are links.
PATH_KEYS = ("model_dir", "merged_dir", "policy_dir", "output_file", "out_file",
             "skipped_file")


def model_files(artifact: ModelArtifact) -> list[dict]:
    """The model folder's files, each with its size and a download link."""
    folder = var_absolute(artifact.path)
    if not folder.is_dir():
        return []
    url = reverse("api_model_download", args=[artifact.id])
    return [{"name": p.name, "bytes": p.stat().st_size, "url": f"{url}?file={p.name}"}
            for p in sorted(folder.iterdir()) if p.is_file()]


class ArtifactOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta:
        model = ModelArtifact
        fields = ["id", "project", "name", "version", "kind", "base_model", "is_adapter",
                  "metrics", "job", "export", "created_at", "url", "files"]

    def get_url(self, artifact: ModelArtifact) -> str:
        return reverse("api_model", args=[artifact.id])

    def get_files(self, artifact: ModelArtifact) -> list[dict]:
        return model_files(artifact)


class JobOutput(serializers.ModelSerializer):
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)
    output_model = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    log_tail = serializers.SerializerMethodField(
        help_text="The training process's log: superusers only (it holds server paths)")
    models = serializers.SerializerMethodField(
        help_text="The kind's optional models that were chosen, by slot: what was chosen")

    class Meta:
        model = TrainingJob
        fields = ["id", "project", "kind", "status", "params", "export", "base_model",
                  "base_artifact", "reward_artifact", "models", "step", "total_steps",
                  "eta_seconds", "metrics", "log_tail", "result", "error", "cancel_requested",
                  "attempts", "created_at", "dispatched_at", "started_at", "heartbeat_at",
                  "finished_at", "output_model"]

    def get_models(self, job: TrainingJob) -> dict[str, str]:
        return {slot: chosen["shown"] for slot, chosen in job.other_models.items()}

    def get_output_model(self, job: TrainingJob) -> dict | None:
        artifact = selectors.job_output_artifact(job)
        return ArtifactOutput(artifact).data if artifact else None

    def get_result(self, job: TrainingJob) -> dict:
        return {k: v for k, v in job.result.items() if k not in PATH_KEYS}

    def get_log_tail(self, job: TrainingJob) -> str | None:
        request = self.context.get("request")
        return job.log_tail if request is not None and request.user.is_superuser else None


class JobListOutput(serializers.ModelSerializer):
    class Meta:
        model = TrainingJob
        fields = ["id", "project", "kind", "status", "base_model", "export", "step",
                  "total_steps", "created_at", "finished_at"]


def _params_help() -> str:
    return "The kind's settings. " + "; ".join(
        f"{kind.name}: {', '.join(p.name for p in kind.params)}"
        + (", model_name" if kind.registers else "") for kind in KINDS.values())


class JobCreateInput(serializers.Serializer):
    project = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=list(KINDS), default="reward",
                                   help_text="; ".join(f"{k.name}: {k.help}"
                                                       for k in KINDS.values()))
    export = serializers.IntegerField(required=False, help_text="reward: the dataset snapshot")
    base_model = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=500,
        help_text="A base model of the deployment's catalog, by name (GET /api/models/catalog/)")
    base_artifact = serializers.IntegerField(required=False, help_text=(
        "Instead of base_model, a registered model of the project: reward: a reward model to "
        "continue; policy, generate: a policy"))
    reward_artifact = serializers.IntegerField(
        required=False, help_text="policy, score: a registered reward model of the project")
    models = serializers.DictField(
        child=serializers.CharField(max_length=500), required=False, default=dict,
        help_text="A kind's optional models by slot, each a catalog name or \"model:<id>\": "
        + "; ".join(f"{k.name}: {', '.join(s.slot for s in k.models if not s.required)}"
                    for k in KINDS.values() if any(not s.required for s in k.models)))
    params = serializers.DictField(required=False, default=dict, help_text=_params_help())

    def validate(self, attrs: dict) -> dict:
        if attrs.get("base_model") and attrs.get("base_artifact") is not None:
            raise serializers.ValidationError(
                {"base_artifact": ["Give base_model or base_artifact, not both."]})
        return attrs

    def to_request(self) -> JobRequest:
        data = self.validated_data
        models = dict(data["models"])
        for slot in ("base", "reward"):
            if slot in models:
                raise Invalid(f"models.{slot}: give it in its own field (base_model, "
                              "base_artifact, reward_artifact)")
        if data.get("base_artifact") is not None:
            models["base"] = f"{ARTIFACT_PREFIX}{data['base_artifact']}"
        elif data.get("base_model"):
            models["base"] = data["base_model"]
        if data.get("reward_artifact") is not None:
            models["reward"] = f"{ARTIFACT_PREFIX}{data['reward_artifact']}"
        return JobRequest(kind=data["kind"], params=data["params"], models=models,
                          export_id=data.get("export"))


class ProjectFilter(serializers.Serializer):
    project = serializers.IntegerField(required=False, help_text="Only this project's")

    def validate(self, attrs: dict) -> dict:
        # A query string's blank value counts as no value in DRF: `?project=` listed every
        # project's rows instead of saying that it names none.
        if "project" in self.initial_data and "project" not in attrs:
            raise serializers.ValidationError({"project": ["A valid integer is required."]})
        return attrs


def _filtered_project(request):
    """The ?project= of a list request, checked like any admin access; None for all."""
    project_id = _valid(ProjectFilter, request.query_params).get("project")
    return None if project_id is None else project_for_admin(request, project_id)


class TrainingJobsApi(APIView):
    @extend_schema(parameters=[ProjectFilter], responses=JobListOutput(many=True))
    @raises(NotFound)  # ?project= of none the user may see
    def get(self, request):
        jobs = selectors.jobs_for_admin(request.user, _filtered_project(request))[:200]
        return Response(JobListOutput(jobs, many=True).data)

    @extend_schema(request=JobCreateInput, responses={201: JobOutput, 200: JobOutput})
    @raises(NotFound, QuotaExceeded)  # its project, export or models may name none
    def post(self, request):
        serializer = _validator(JobCreateInput, request.data)
        project = project_for_admin(request, serializer.validated_data["project"])
        job, created = services.job_request(project=project, request=serializer.to_request(),
                                            created_by=request.user)
        return Response(JobOutput(job, context={"request": request}).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TrainingJobDetailApi(APIView):
    @extend_schema(responses=JobOutput)
    def get(self, request, job_id: int):
        job = selectors.job_get_for_admin(request.user, job_id)
        return Response(JobOutput(job, context={"request": request}).data)


class TrainingJobCancelApi(APIView):
    @extend_schema(request=None, responses={202: JobOutput})
    def post(self, request, job_id: int):
        job = services.job_cancel(selectors.job_get_for_admin(request.user, job_id))
        return Response(JobOutput(job, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class ModelsApi(APIView):
    @extend_schema(parameters=[ProjectFilter], responses=ArtifactOutput(many=True))
    @raises(NotFound)
    def get(self, request):
        artifacts = selectors.artifacts_for_admin(request.user, _filtered_project(request))[:200]
        return Response(ArtifactOutput(artifacts, many=True).data)


class ModelDetailApi(APIView):
    @extend_schema(responses=ArtifactOutput)
    def get(self, request, artifact_id: int):
        artifact = selectors.artifact_get_for_admin(request.user, artifact_id)
        return Response(ArtifactOutput(artifact).data)


class ScoreInput(serializers.Serializer):
    class ScoreItem(serializers.Serializer):
        prompt = TextOrMessagesField(help_text="Text, or chat messages [{role, content}]")
        response = TextOrMessagesField(help_text="Text, or [{role: assistant, content}]")

    items = ScoreItem(many=True, allow_empty=False)
    alpha = serializers.FloatField(default=1.0, help_text="Scale applied to every reward")


class ModelScoreApi(APIView):
    @extend_schema(request=ScoreInput, responses=inline_serializer("ScoreOutput", {
        "rewards": serializers.ListField(child=serializers.FloatField()),
        "truncated": serializers.ListField(
            child=serializers.IntegerField(),
            help_text="Indexes of the items longer than the model's max length: their "
                      "response was kept and their prompt cut from the left")}))
    @raises(Conflict, Unavailable)  # its files are missing or broken; it is loading
    def post(self, request, artifact_id: int):
        artifact = selectors.artifact_get_for_admin(request.user, artifact_id)
        data = _valid(ScoreInput, request.data)
        items = [(item["prompt"], item["response"]) for item in data["items"]]
        for index, (prompt, response) in enumerate(items):
            if not _is_text(prompt) or not _is_text(response):
                raise Invalid(f"items[{index}]: prompt and response must be text or "
                              "message lists [{role, content}]")
        scores = services.model_score(artifact, items, alpha=data["alpha"])
        return Response({"rewards": scores.rewards, "truncated": scores.truncated})


def _is_text(value) -> bool:
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and set(m) == {"role", "content"}
        and isinstance(m["role"], str) and isinstance(m["content"], str) for m in value)


class RequestMoreInput(serializers.Serializer):
    prompt_ids = serializers.ListField(child=serializers.IntegerField(), allow_empty=False,
                                       max_length=10_000)
    extra = serializers.IntegerField(min_value=1, max_value=10, default=1)


class RequestMoreRankingsApi(APIView):
    @extend_schema(request=RequestMoreInput, responses=inline_serializer(
        "RequestMoreOutput", {"prompts": serializers.IntegerField()}))
    def post(self, request, project_id: int):
        project = project_for_admin(request, project_id)
        data = _valid(RequestMoreInput, request.data)
        count = annotate_services.prompts_request_more_rankings(
            project=project, prompt_ids=data["prompt_ids"], extra=data["extra"])
        return Response({"prompts": count})


def _validator(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer


def _valid(serializer_class, data) -> dict:
    return _validator(serializer_class, data).validated_data


class CatalogOutput(serializers.Serializer):
    name = serializers.CharField(help_text="What base_model takes")
    on_hub = serializers.BooleanField()
    size_bytes = serializers.IntegerField(allow_null=True)
    architectures = serializers.ListField(child=serializers.CharField())


class ModelCatalogApi(APIView):
    """The deployment's base models, for admins of any project."""

    @extend_schema(responses=CatalogOutput(many=True))
    def get(self, request):
        if not annotate_selectors.projects_administered_by(request.user).exists():
            raise PermissionDenied("Only project admins see the model catalog.")
        return Response(CatalogOutput(catalog_models(), many=True).data)


class ModelDownloadApi(APIView):
    @extend_schema(parameters=[OpenApiParameter("file", str, required=True)],
                   responses={(200, "application/octet-stream"): bytes})
    def get(self, request, artifact_id: int):
        artifact = selectors.artifact_get_for_admin(request.user, artifact_id)
        name = request.query_params.get("file", "")
        found = {f["name"] for f in model_files(artifact)}
        if name not in found:
            raise NotFound(f"no file {name[:100]!r} in this model; files: "
                           f"{', '.join(sorted(found))}")
        return FileResponse((var_absolute(artifact.path) / name).open("rb"), as_attachment=True,
                            filename=f"{artifact.name}-v{artifact.version}-{name}",
                            content_type="application/octet-stream")
