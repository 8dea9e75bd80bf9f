"""REST endpoints for training jobs and the model registry. Project admins only."""

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis import project_for_admin
from annotate.models import Export

from . import selectors, services
from .models import ModelArtifact, TrainingJob

JOB_KINDS = TrainingJob.Kind.choices


class ArtifactOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = ModelArtifact
        fields = ["id", "project", "name", "version", "kind", "base_model", "path",
                  "merged_path", "is_adapter", "metrics", "job", "export", "created_at", "url"]

    def get_url(self, artifact: ModelArtifact) -> str:
        return reverse("api_model", args=[artifact.id])


class JobOutput(serializers.ModelSerializer):
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)
    output_model = serializers.SerializerMethodField()

    class Meta:
        model = TrainingJob
        fields = ["id", "project", "kind", "status", "params", "export", "dataset_path",
                  "base_model", "base_artifact", "reward_artifact", "step", "total_steps",
                  "eta_seconds",
                  "metrics", "log_tail", "result", "error", "cancel_requested", "attempts",
                  "celery_task_id", "worker", "created_at", "dispatched_at", "started_at",
                  "heartbeat_at", "finished_at", "output_model"]

    def get_output_model(self, job: TrainingJob) -> dict | None:
        artifact = selectors.job_output_artifact(job)
        return ArtifactOutput(artifact).data if artifact else None


class JobListOutput(serializers.ModelSerializer):
    class Meta:
        model = TrainingJob
        fields = ["id", "project", "kind", "status", "base_model", "export", "step",
                  "total_steps", "created_at", "finished_at"]


class JobCreateInput(serializers.Serializer):
    project = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=JOB_KINDS, default="reward")
    export = serializers.IntegerField(required=False, help_text="Reward: the dataset snapshot")
    base_model = serializers.CharField(required=False, allow_blank=True, default="",
                                       max_length=500, help_text="A Hugging Face name or path")
    base_artifact = serializers.IntegerField(required=False, help_text=(
        "Reward / ppo: start from this registered model; score: the reward model to use"))
    reward_artifact = serializers.IntegerField(required=False,
                                               help_text="ppo: the reward model to optimise")
    params = serializers.DictField(required=False, default=dict, help_text=(
        "Reward: RewardTrainingConfig fields (method, lora, lora_r, lora_alpha, epochs, "
        "batch_size, learning_rate, max_length, ...) and model_name; ppo: "
        "PolicyTrainingConfig fields (algorithm ppo|rloo|grpo, total_episodes, batch_size, "
        "mini_batch_size, ppo_epochs, kl_coef, clip_range, ...) and model_name; generate: "
        "max_new_tokens, temperature, top_p, seed, batch_size; score: alpha"))


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
    def get(self, request):
        jobs = selectors.jobs_for_admin(request.user, _filtered_project(request))[:200]
        return Response(JobListOutput(jobs, many=True).data)

    @extend_schema(request=JobCreateInput, responses={201: JobOutput, 200: JobOutput})
    def post(self, request):
        data = _valid(JobCreateInput, request.data)
        project = project_for_admin(request, data["project"])
        artifact = None
        if data.get("base_artifact") is not None:
            artifact = get_object_or_404(ModelArtifact, id=data["base_artifact"], project=project)
        try:
            if data["kind"] == TrainingJob.Kind.PPO:
                if data.get("reward_artifact") is None:
                    return _refused("reward_artifact: a ppo job needs the reward model")
                reward = get_object_or_404(ModelArtifact, id=data["reward_artifact"],
                                           project=project)
                job, created = services.policy_job_create(
                    project=project, params=data["params"], reward_artifact=reward,
                    base_model=data["base_model"], base_artifact=artifact,
                    created_by=request.user)
            elif data["kind"] == TrainingJob.Kind.GENERATE:
                job, created = services.generate_job_create(
                    project=project, params=data["params"], base_model=data["base_model"],
                    base_artifact=artifact, created_by=request.user)
            elif data["kind"] == TrainingJob.Kind.SCORE:
                if artifact is None:
                    return _refused("base_artifact: a score job needs the reward model to use")
                job, created = services.score_job_create(
                    artifact=artifact, created_by=request.user,
                    alpha=float(data["params"].get("alpha", 1.0)))
            else:
                export = None
                if data.get("export") is not None:
                    export = get_object_or_404(Export, id=data["export"], project=project)
                job, created = services.reward_job_create(
                    project=project, params=data["params"], base_model=data["base_model"],
                    created_by=request.user, export=export, base_artifact=artifact)
        except services.JobRefused as refused:
            return _refused(str(refused), refused.status)
        return Response(JobOutput(job).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TrainingJobDetailApi(APIView):
    @extend_schema(responses=JobOutput)
    def get(self, request, job_id: int):
        return Response(JobOutput(selectors.job_get_for_admin(request.user, job_id)).data)


class TrainingJobCancelApi(APIView):
    @extend_schema(request=None, responses={202: JobOutput})
    def post(self, request, job_id: int):
        job = services.job_cancel(selectors.job_get_for_admin(request.user, job_id))
        return Response(JobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class ModelsApi(APIView):
    @extend_schema(parameters=[ProjectFilter], responses=ArtifactOutput(many=True))
    def get(self, request):
        artifacts = selectors.artifacts_for_admin(request.user, _filtered_project(request))[:200]
        return Response(ArtifactOutput(artifacts, many=True).data)


class ModelDetailApi(APIView):
    @extend_schema(responses=ArtifactOutput)
    def get(self, request, artifact_id: int):
        artifact = selectors.artifact_get_for_admin(request.user, artifact_id)
        return Response(ArtifactOutput(artifact).data)


class ScoreInput(serializers.Serializer):
    class Item(serializers.Serializer):
        prompt = serializers.JSONField(help_text="Text, or chat messages [{role, content}]")
        response = serializers.JSONField(help_text="Text, or [{role: assistant, content}]")

    items = Item(many=True, allow_empty=False)
    alpha = serializers.FloatField(default=1.0, help_text="Scale applied to every reward")


class ModelScoreApi(APIView):
    @extend_schema(request=ScoreInput, responses=inline_serializer(
        "ScoreOutput", {"rewards": serializers.ListField(child=serializers.FloatField())}))
    def post(self, request, artifact_id: int):
        artifact = selectors.artifact_get_for_admin(request.user, artifact_id)
        data = _valid(ScoreInput, request.data)
        items = [(item["prompt"], item["response"]) for item in data["items"]]
        for index, (prompt, response) in enumerate(items):
            if not _is_text(prompt) or not _is_text(response):
                return _refused(f"items[{index}]: prompt and response must be text or "
                                "message lists [{role, content}]")
        try:
            rewards = services.model_score(artifact, items, alpha=data["alpha"])
        except services.JobRefused as refused:
            return _refused(str(refused), refused.status)
        return Response({"rewards": rewards})


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
        count = services.prompts_request_more_rankings(
            project=project, prompt_ids=data["prompt_ids"], extra=data["extra"])
        return Response({"prompts": count})


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _refused(message: str, code: int = 400) -> Response:
    return Response({"detail": message}, status=code)
