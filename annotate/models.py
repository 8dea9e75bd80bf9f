"""Labeling data: projects, their members, prompts, completions, rankings and leases.

Fields and constraints only. The database enforces what must never be false, including
that a ranking's tiers name exactly its prompt's completions (a trigger, see migration 0002).
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from .mode_words import ModeWords, mode_words

MIN_COMPLETIONS = 2
MAX_COMPLETIONS = 9


class Project(models.Model):
    class TiePolicy(models.TextChoices):
        HALF = "half", "A tie counts half a vote each way"
        ABSTAIN = "abstain", "A tie is an abstention"

    class Mode(models.TextChoices):
        RANK = "rank", "Rank the completions, best to worst"
        RATE = "rate", "Rate each completion on a scale"
        DEMONSTRATE = "demonstrate", "Write a response, or edit a completion into a better one"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    criterion = models.CharField(
        max_length=200, help_text="What labelers rank by, e.g. 'helpfulness'."
    )
    instructions = models.TextField(blank=True, help_text="Shown to labelers; Markdown.")
    annotation_mode = models.CharField(
        max_length=12, choices=Mode.choices, default=Mode.RANK,
        help_text="What labelers do with a prompt's completions.",
    )
    # Rate mode: every completion gets a whole-number score from min to max, once per aspect
    # (no aspects: one score, stored under annotate.ratings.OVERALL).
    rating_scale_min = models.SmallIntegerField(default=1)
    rating_scale_max = models.SmallIntegerField(default=5)
    rating_aspects = models.JSONField(
        default=list, blank=True,
        help_text="Aspect names scored separately, e.g. helpfulness, honesty; empty: one score.",
    )
    completions_per_prompt = models.PositiveSmallIntegerField(
        default=4,
        validators=[MinValueValidator(MIN_COMPLETIONS), MaxValueValidator(MAX_COMPLETIONS)],
    )
    labelers_per_prompt = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1)]
    )
    allow_ties = models.BooleanField(default=False)
    auto_place_last = models.BooleanField(
        "place the last completion automatically",
        default=True,
        help_text="When a labeler has ranked all but one completion, place the last one last.",
    )
    consensus_min_votes = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text="A pair is kept only with at least this many votes.",
    )
    consensus_min_agreement = models.FloatField(
        default=2 / 3,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="A pair is kept only when the winner's share of votes is at least this.",
    )
    consensus_tie_policy = models.CharField(
        max_length=10, choices=TiePolicy.choices, default=TiePolicy.HALF
    )
    consensus_max_spread = models.FloatField(
        default=2.0, validators=[MinValueValidator(0.0)],
        help_text="Rate mode: a completion's score is kept only when its labelers' scores "
                  "differ by at most this (highest minus lowest).",
    )
    lease_minutes = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="How long a prompt handed to a labeler stays theirs.",
    )
    adaptive_overlap = models.BooleanField(
        default=False,
        help_text="When a prompt's N rankings agree less than the threshold, ask for more.",
    )
    adaptive_min_agreement = models.FloatField(
        default=0.6, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Mean pairwise agreement below which adaptive overlap asks for another ranking.",
    )
    adaptive_max_labelers = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1)],
        help_text="Adaptive overlap never asks for more rankings of a prompt than this.",
    )
    gold_rate = models.FloatField(
        default=0.1, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of hand-outs that are gold prompts (unannounced), while any are left.",
    )
    gold_min_accuracy = models.FloatField(
        default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Labelers whose gold accuracy is below this are flagged.",
    )
    gold_exclude_flagged = models.BooleanField(
        default=False, help_text="Leave flagged labelers' rankings out of consensus and exports."
    )
    onboarding_gold_count = models.PositiveSmallIntegerField(
        default=0,
        help_text="New labelers first rank this many gold prompts and see each reference.",
    )
    is_frozen = models.BooleanField(default=False, help_text="Frozen projects take no rankings.")
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(completions_per_prompt__gte=MIN_COMPLETIONS)
                & Q(completions_per_prompt__lte=MAX_COMPLETIONS),
                name="project_k_between_2_and_9",
            ),
            models.CheckConstraint(
                condition=Q(labelers_per_prompt__gte=1), name="project_n_at_least_1"
            ),
            models.CheckConstraint(
                condition=Q(consensus_min_votes__gte=1), name="project_min_votes_at_least_1"
            ),
            models.CheckConstraint(
                condition=Q(consensus_min_agreement__gte=0.5) & Q(consensus_min_agreement__lte=1.0),
                name="project_min_agreement_in_half_to_one",
            ),
            models.CheckConstraint(
                condition=Q(rating_scale_max__gt=F("rating_scale_min")),
                name="project_rating_scale_not_empty",
            ),
            models.CheckConstraint(
                condition=Q(annotation_mode__in=["rank", "rate", "demonstrate"]),
                name="project_annotation_mode_known",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def words(self) -> ModeWords:
        """What labeler-facing pages call the mode's work: rank, rate or write."""
        return mode_words(self.annotation_mode)


# The settings an admin chooses for a project: the form edits them, the API shows them.
PROJECT_SETTINGS = [
    "name",
    "slug",
    "criterion",
    "instructions",
    "annotation_mode",
    "rating_scale_min",
    "rating_scale_max",
    "rating_aspects",
    "completions_per_prompt",
    "labelers_per_prompt",
    "allow_ties",
    "auto_place_last",
    "consensus_min_votes",
    "consensus_min_agreement",
    "consensus_tie_policy",
    "consensus_max_spread",
    "lease_minutes",
]


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        LABELER = "labeler", "Labeler"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.LABELER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_once_per_project"),
            models.CheckConstraint(
                condition=Q(role__in=["admin", "labeler"]), name="membership_role_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class RunStatus(models.TextChoices):
    """Where a row run on a worker (an export, an import) stands."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class PromptImport(models.Model):
    """One file imported into a project. An upload is stored under VAR_DIR and imported by a
    worker, which keeps its status, progress and errors here; the command imports at once.
    Its prompts are written in one transaction: all of them, or (failed) none."""

    Status = RunStatus
    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    filename = models.CharField(max_length=255)
    file_format = models.CharField(max_length=20, help_text="'auto' until the file is read.")
    skip_invalid = models.BooleanField(default=False)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    upload = models.CharField(max_length=500, blank=True,
                              help_text="The stored upload, under VAR_DIR; removed at the end.")
    lines_read = models.PositiveIntegerField(default=0)
    prompt_count = models.PositiveIntegerField(default=0)
    completion_count = models.PositiveIntegerField(default=0)
    ranking_count = models.PositiveIntegerField(default=0)
    skipped = models.JSONField(
        default=list, blank=True, help_text="Lines left out with --skip-invalid, with reasons."
    )
    error = models.TextField(blank=True, help_text="Why it failed, in one line.")
    errors = models.JSONField(default=list, blank=True,
                              help_text="A failed import's errors: [{line, field, message}].")
    # Run on a worker: like an export, the row says who imports it and that it lives.
    dispatched_at = models.DateTimeField(null=True, blank=True,
                                         help_text="When the task last reached the broker.")
    worker = models.CharField(max_length=300, blank=True, help_text="host:pid of the importer.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.filename} into {self.project} ({self.status}, {self.prompt_count} prompts)"


class Prompt(models.Model):
    """A prompt to rank completions of: plain text, or chat messages [{role, content}]."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    source_import = models.ForeignKey(
        PromptImport, null=True, blank=True, on_delete=models.SET_NULL, related_name="prompts"
    )
    external_id = models.CharField(max_length=200, blank=True)
    text = models.TextField(blank=True)
    messages = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # annotate.content.content_key of the prompt and its completions: an import refuses a
    # second copy of the same content in a project.
    content_hash = models.CharField(max_length=64, blank=True)
    # Kept by annotate.services under the prompt's row lock: labelers' rankings so far, and
    # the rankings adaptive overlap asked for beyond the project's N.
    ranking_count = models.PositiveIntegerField(default=0)
    extra_rankings = models.PositiveSmallIntegerField(default=0)
    # A gold prompt has a known correct ranking (or best completion); every labeler may get it.
    gold_tiers = models.JSONField(null=True, blank=True, help_text="The reference ranking.")
    gold_mode = models.CharField(
        max_length=10, blank=True, choices=[("ranking", "whole ranking"), ("best", "best only")]
    )
    # A retired prompt (junk, a duplicate) stays with its rankings but is handed to no one
    # and left out of exports; clearing the field brings it back.
    retired_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "ranking_count", "id"]),
            # Prompts with rankings, most first: next-prompt reads a few of them however many
            # are started.
            models.Index(fields=["project", "-ranking_count", "id"],
                         condition=Q(ranking_count__gt=0), name="prompt_part_ranked_idx"),
            # Prompts adaptive overlap (or an admin) asked more rankings of: few, looked up often.
            models.Index(fields=["project", "id"], condition=Q(extra_rankings__gt=0),
                         name="prompt_extra_rankings_idx"),
            models.Index(fields=["project", "content_hash"], name="prompt_content_hash_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="prompt_external_id_unique_in_project",
            ),
            models.CheckConstraint(
                condition=Q(gold_tiers__isnull=True, gold_mode="")
                | (Q(gold_tiers__isnull=False) & Q(gold_mode__in=["ranking", "best"])),
                name="prompt_gold_has_a_mode",
            ),
            # Exactly one of text and messages.
            models.CheckConstraint(
                condition=(Q(messages__isnull=True) & ~Q(text=""))
                | (Q(messages__isnull=False) & Q(text="")),
                name="prompt_text_xor_messages",
            ),
        ]

    def __str__(self) -> str:
        return self.external_id or f"prompt {self.pk}"

    @property
    def is_gold(self) -> bool:
        return self.gold_tiers is not None

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    @property
    def last_text(self) -> str:
        """The text to show in a list: the prompt, or the chat's last message."""
        return self.messages[-1]["content"] if self.messages else self.text


class Completion(models.Model):
    # No index of its own: completion_position_unique (prompt, position) serves the lookups
    # by prompt and a prompt's deletion.
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions",
                               db_index=False)
    position = models.PositiveSmallIntegerField(help_text="Order in the imported file, from 0.")
    text = models.TextField()
    model_name = models.CharField(max_length=200, blank=True)
    generation_params = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["prompt_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "position"], name="completion_position_unique"
            ),
            models.CheckConstraint(condition=~Q(text=""), name="completion_text_not_empty"),
        ]

    def __str__(self) -> str:
        return f"completion {self.position} of {self.prompt}"


class Ranking(models.Model):
    """An ordered list of tiers of completion ids, best first; one tier with several ids is a tie.

    A labeler ranks a prompt at most once (revisions keep history elsewhere). A ranking
    imported with the data (e.g. HH-RLHF's chosen/rejected) has no labeler.
    """

    class Source(models.TextChoices):
        LABELER = "labeler", "Ranked by a labeler"
        IMPORTED = "imported", "Imported with the data"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="rankings")
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rankings",
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.LABELER)
    tiers = models.JSONField(help_text="[[completion id, ...], ...], best tier first.")
    # Rate mode: the labeler's scores, {"<completion id>": {"<aspect>": score}}; the tiers
    # are then derived from them (annotate.ratings.tiers_from_scores), ties included.
    scores = models.JSONField(null=True, blank=True)
    flags = models.JSONField(default=dict, blank=True)
    comment = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True)
    displayed_order = models.JSONField(
        default=list, blank=True, help_text="Completion ids in the order the labeler saw them."
    )
    revision = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "labeler"],
                condition=Q(labeler__isnull=False),
                name="ranking_once_per_labeler_and_prompt",
            ),
            models.UniqueConstraint(
                fields=["prompt"],
                condition=Q(source="imported"),
                name="ranking_one_imported_per_prompt",
            ),
            models.UniqueConstraint(
                fields=["labeler", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="ranking_idempotency_key_unique_per_labeler",
            ),
            models.CheckConstraint(
                condition=(Q(source="labeler") & Q(labeler__isnull=False))
                | (Q(source="imported") & Q(labeler__isnull=True)),
                name="ranking_labeler_matches_source",
            ),
        ]

    def __str__(self) -> str:
        return f"ranking of {self.prompt} by {self.labeler or 'import'}"


class Demonstration(models.Model):
    """A response a labeler wrote for a prompt (demonstrate mode): from scratch, or by editing
    one of its completions (`source_completion`, kept as it was). One per labeler and prompt;
    a resubmission keeps the version it replaces in `history`."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="demonstrations")
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="demonstrations"
    )
    text = models.TextField()
    source_completion = models.ForeignKey(
        Completion, null=True, blank=True, on_delete=models.SET_NULL, related_name="edits",
        help_text="The completion the labeler edited; none when written from scratch.",
    )
    comment = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True)
    revision = models.PositiveIntegerField(default=1)
    history = models.JSONField(
        default=list, blank=True,
        help_text="Earlier versions: [{revision, text, source_completion, comment, "
                  "idempotency_key, submitted_at}], oldest first.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["prompt_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "labeler"], name="demonstration_once_per_labeler_and_prompt"
            ),
            models.UniqueConstraint(
                fields=["labeler", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="demonstration_idempotency_key_unique_per_labeler",
            ),
            models.CheckConstraint(condition=~Q(text=""), name="demonstration_text_not_empty"),
        ]

    def __str__(self) -> str:
        return f"demonstration for {self.prompt} by {self.labeler}"


class Assignment(models.Model):
    """A prompt handed to a labeler: leased until `expires_at`, then ranked or skipped.

    An open lease holds one of the prompt's slots until it expires; an expired one frees it.
    `seed` fixes the order in which this labeler sees the completions.
    """

    class Status(models.TextChoices):
        LEASED = "leased", "Leased"
        RANKED = "ranked", "Ranked"
        SKIPPED = "skipped", "Skipped"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="assignments")
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.LEASED)
    seed = models.PositiveIntegerField()
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "labeler"], name="assignment_once_per_labeler"
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("leased_at")), name="assignment_expires_after_lease"
            ),
            models.CheckConstraint(
                condition=Q(status="leased", closed_at__isnull=True)
                | (Q(status__in=["ranked", "skipped"]) & Q(closed_at__isnull=False)),
                name="assignment_closed_when_ranked_or_skipped",
            ),
        ]
        indexes = [
            models.Index(fields=["prompt", "status", "expires_at"]),
            models.Index(fields=["labeler", "status"]),
            # Open leases, project-wide: next-prompt's "leased to others" reads these few
            # rows instead of a project's every assignment.
            models.Index(fields=["expires_at", "prompt", "labeler"],
                         condition=Q(status="leased"), name="assignment_open_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt} {self.status} by {self.labeler}"


class RankingRevision(models.Model):
    """An earlier version of a ranking, kept when the labeler revised it."""

    ranking = models.ForeignKey(Ranking, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    tiers = models.JSONField()
    scores = models.JSONField(null=True, blank=True)
    flags = models.JSONField(default=dict, blank=True)
    comment = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True)
    displayed_order = models.JSONField(default=list, blank=True)
    submitted_at = models.DateTimeField(help_text="When this version was submitted.")

    class Meta:
        ordering = ["ranking", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["ranking", "revision"], name="revision_unique"),
        ]

    def __str__(self) -> str:
        return f"revision {self.revision} of {self.ranking}"


class Export(models.Model):
    """A frozen, versioned preference dataset built from a project's rankings."""

    Status = RunStatus
    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(help_text="min_votes, min_agreement, tie_policy, test_fraction, ...")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    prompts_total = models.PositiveIntegerField(default=0)
    prompts_done = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    directory = models.CharField(max_length=500, blank=True, help_text="Under VAR_DIR.")
    error = models.TextField(blank=True)
    # Built on a worker: like a training job, the row says who builds it and that it lives.
    dispatched_at = models.DateTimeField(null=True, blank=True,
                                         help_text="When the task last reached the broker.")
    worker = models.CharField(max_length=300, blank=True, help_text="host:pid of the builder.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="export_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project} export v{self.version} ({self.status})"


class LoginFailure(models.Model):
    """One failed login. The throttle counts these rows, so every web process sees them."""

    username = models.CharField(max_length=150, help_text="As typed, case-folded.")
    ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["username", "at"], name="login_failure_username_idx"),
            models.Index(fields=["ip", "at"], name="login_failure_ip_idx"),
        ]

    def __str__(self) -> str:
        return f"failed login of {self.username!r} from {self.ip} at {self.at}"
