"""Training jobs, the model registry, and reward-model scores of completions.

A TrainingJob row is the source of truth for a job: Celery only carries its id. Progress,
metrics, the log tail, the error and the heartbeat live here, and the UI polls them.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotate.models import Completion, Export, Project

from .ml.progress import eta_seconds


class TrainingJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_jobs")
    # One of training.kinds.KINDS: declared there, so a new kind needs no migration.
    kind = models.CharField(max_length=20)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
    params = models.JSONField(help_text="The validated config, without paths.")
    export = models.ForeignKey(Export, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="training_jobs", help_text="The dataset snapshot.")
    dataset_path = models.CharField(
        max_length=1000, blank=True,
        help_text="A JSONL file given by an operator's command, when not an export.")
    eval_file = models.CharField(max_length=1000, blank=True,
                                 help_text="Held-out data given by an operator's command.")
    base_model = models.CharField(
        max_length=500, help_text="What the request chose: a catalog name or a registered model.")
    base_location = models.CharField(
        max_length=1000, blank=True,
        help_text="Where the worker loads a catalog model: a folder or hub:<name>. Internal.")
    base_artifact = models.ForeignKey(
        "ModelArtifact", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The registered model it starts from (reward, policy), or scores with.")
    reward_artifact = models.ForeignKey(
        "ModelArtifact", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="PPO and generation rounds: the reward model it optimises against.")
    other_models = models.JSONField(
        default=dict, blank=True, help_text="A kind's optional models beyond base and reward: "
        "{slot: {shown, location, artifact_id}}; location as base_location. Internal.")
    # Two identical requests share one active job: the key is a hash of dataset and config.
    dedupe_key = models.CharField(max_length=64)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=list, blank=True, help_text="[{step, time, ...}, ...]")
    log_tail = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    celery_task_id = models.CharField(max_length=100, blank=True)
    worker = models.CharField(max_length=300, blank=True, help_text="host:pid of the runner.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True,
                                         help_text="When the task last reached the broker.")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "dedupe_key"], condition=Q(status__in=["queued", "running"]),
                name="training_job_one_active_per_config",
            ),
            models.CheckConstraint(condition=Q(step__lte=models.F("total_steps"))
                                   | Q(total_steps=0), name="training_job_step_in_range"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def method(self) -> str:
        """The reward method or the policy algorithm, for labels."""
        return self.params.get("method") or self.params.get("algorithm") or ""

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left, from the measured times of the steps completed since the job
        (re)started (training.ml.progress.eta_seconds), as of the last heartbeat; None while
        no step's time is measured yet."""
        if self.status != self.Status.RUNNING or not self.total_steps:
            return None
        done = [m for m in self.metrics if m.get("attempt") == self.attempts]
        if not done:
            return None
        now = self.heartbeat_at.timestamp() if self.heartbeat_at else done[-1]["time"]
        return eta_seconds([(m["step"], m["time"]) for m in done], self.total_steps, now,
                           first_step_seconds=done[0].get("seconds"))


class ModelArtifact(models.Model):
    """A trained model on disk, with the job and dataset that made it."""

    class Kind(models.TextChoices):
        REWARD = "reward", "Reward model"
        POLICY = "policy", "Policy"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    base_model = models.CharField(max_length=500)
    path = models.CharField(max_length=1000, help_text="Under VAR_DIR: save_pretrained output.")
    merged_path = models.CharField(max_length=1000, blank=True,
                                   help_text="The adapter merged into its base, if saved.")
    is_adapter = models.BooleanField(default=False)
    metrics = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(TrainingJob, null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="artifacts")
    export = models.ForeignKey(Export, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="models")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name", "version"],
                                    name="model_artifact_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class CompletionScore(models.Model):
    """A reward model's score of one completion (from a scoring job)."""

    artifact = models.ForeignKey(ModelArtifact, on_delete=models.CASCADE, related_name="scores")
    completion = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="scores")
    reward = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["artifact", "completion"],
                                    name="completion_score_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.artifact}: completion {self.completion_id} = {self.reward:.3f}"


class Round(models.Model):
    """One turn of the loop: dataset snapshot -> reward model -> policy -> generated prompts,
    which labelers rank; the next round's snapshot includes those rankings."""

    class Status(models.TextChoices):
        EXPORTING = "exporting", "Exporting the dataset"
        TRAINING_REWARD = "training_reward", "Training the reward model"
        TRAINING_POLICY = "training_policy", "Training the policy"
        GENERATING = "generating", "Generating completions"
        RANKING = "ranking", "Ready to rank"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.EXPORTING, Status.TRAINING_REWARD, Status.TRAINING_POLICY,
              Status.GENERATING)
    ENDED_UNFINISHED = (Status.FAILED, Status.CANCELLED)
    LABELERS_DPO = "dpo-labelers"
    # The steps in order: the plan's part, the field that holds its work, what pages call it.
    STEPS = (("export", "export", "Dataset snapshot"), ("reward", "reward_job", "Reward model"),
             ("policy", "policy_job", "Policy"), ("generate", "generation_job", "Generation"))

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.EXPORTING)
    plan = models.JSONField(default=dict, blank=True,
                            help_text="export, reward, policy and generate settings")
    export = models.ForeignKey(Export, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")
    reward_job = models.ForeignKey(TrainingJob, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    policy_job = models.ForeignKey(TrainingJob, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    generation_job = models.ForeignKey(TrainingJob, null=True, blank=True,
                                       on_delete=models.SET_NULL, related_name="+")
    reward_artifact = models.ForeignKey(ModelArtifact, null=True, blank=True,
                                        on_delete=models.PROTECT, related_name="+")
    policy_artifact = models.ForeignKey(ModelArtifact, null=True, blank=True,
                                        on_delete=models.PROTECT, related_name="+")
    prompt_import = models.ForeignKey("annotate.PromptImport", null=True, blank=True,
                                      on_delete=models.SET_NULL, related_name="+",
                                      help_text="The generated prompts, ranked in this round.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project} round {self.number} ({self.status})"

    @property
    def policy_algorithm(self) -> str:
        """How the round trains its policy: the policy kind's algorithm, or LABELERS_DPO."""
        policy = self.plan.get("policy", {})
        if policy.get("preferences") == "labelers":
            return self.LABELERS_DPO
        return policy.get("params", {}).get("algorithm", "ppo")
