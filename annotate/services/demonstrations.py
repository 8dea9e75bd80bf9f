"""Demonstrations: a labeler writes the response a prompt should get (demonstrate mode).

The same rules as rankings (annotate.services.labeling): a first demonstration needs the
labeler's lease and a free slot of the prompt, it closes the lease as RANKED and counts in
`prompt.ranking_count` (a prompt's judgements, whatever their kind); a key names one
submission, so a retried request is answered with what it stored and writes nothing; a
resubmission keeps the version it replaces in `history`.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from config.errors import Conflict, Invalid

from ..models import Assignment, Demonstration, Project, Prompt
from .labeling import MAX_TIME_SPENT_MS, _locked_prompt, _open_assignment, _open_slots

MAX_TEXT_CHARS = 20_000
MAX_COMMENT_CHARS = 5_000
# What a project of each mode takes from its labelers, for refusals.
TAKES = {"rank": "rankings", "rate": "ratings", "demonstrate": "demonstrations"}


@dataclass(frozen=True)
class DemonstrationVersion:
    """One version of a labeler's demonstration: the current one, or one kept in `history`
    (a retried request's key may name either)."""

    demonstration: Demonstration  # the row as it is now
    revision: int
    text: str
    source_completion_id: int | None
    comment: str
    time_spent_ms: int | None
    idempotency_key: str

    @property
    def id(self) -> int:
        return self.demonstration.id

    @property
    def prompt_id(self) -> int:
        return self.demonstration.prompt_id

    @classmethod
    def current(cls, row: Demonstration) -> "DemonstrationVersion":
        return cls(row, row.revision, row.text, row.source_completion_id, row.comment,
                   row.time_spent_ms, row.idempotency_key)

    @classmethod
    def earlier(cls, row: Demonstration, entry: dict) -> "DemonstrationVersion":
        return cls(row, entry["revision"], entry["text"], entry["source_completion"],
                   entry["comment"], entry.get("time_spent_ms"), entry["idempotency_key"])


def demonstration_submit(
    *,
    project: Project,
    labeler: AbstractUser,
    prompt_id: int,
    text: str,
    idempotency_key: str,
    source_completion_id: int | None = None,
    comment: str = "",
    time_spent_ms: int | None = None,
    base_revision: int | None = None,
    now: datetime | None = None,
) -> tuple[DemonstrationVersion, bool]:
    """Record a demonstration, or a revision of the labeler's earlier one.

    `source_completion_id` names the completion the labeler edited (None: written from
    scratch). `base_revision` as in ranking_submit: the version this one replaces (0: none);
    if the stored one has moved on, Conflict with it in `extra["current"]`.

    Return the version stored and whether it is new; a key seen before returns the version
    it stored then, and nothing is written. Raise an ApplicationError when the rules refuse.
    """
    now = now or timezone.now()
    if project.annotation_mode != Project.Mode.DEMONSTRATE:
        raise Conflict(f"This project is in {project.annotation_mode} mode: it takes "
                       f"{TAKES[project.annotation_mode]}, not demonstrations.")
    answer = _validated(text, source_completion_id, comment, time_spent_ms, idempotency_key)
    try:
        with transaction.atomic():
            return _submit_locked(project, labeler, prompt_id, answer, base_revision, now)
    except IntegrityError:
        # The key is checked under the prompt's lock, so one key sent for two prompts at
        # once passes twice and the database refuses the second write: it is taken.
        earlier = _version_with_key(labeler, idempotency_key)
        if earlier is None:
            raise
        raise _key_taken(idempotency_key, earlier.prompt_id) from None


def _validated(text: object, source_completion_id: object, comment: object,
               time_spent_ms: object, key: str) -> dict:
    """The submission's fields as stored, or Invalid naming the field that is wrong."""
    if not isinstance(text, str):
        raise Invalid("text: must be a string.")
    text = text.strip()
    if not text:
        raise Invalid("text: write the response (it is empty).")
    if len(text) > MAX_TEXT_CHARS:
        raise Invalid(f"text: {len(text):,} characters; at most {MAX_TEXT_CHARS:,}.")
    if "\x00" in text:
        raise Invalid("text: holds a NUL character (\\x00), which is never part of a response.")
    if source_completion_id is not None and (
            isinstance(source_completion_id, bool) or not isinstance(source_completion_id, int)):
        raise Invalid("source_completion: must be a completion id or null.")
    comment = comment or ""
    if len(comment) > MAX_COMMENT_CHARS or "\x00" in comment:
        raise Invalid(f"comment: at most {MAX_COMMENT_CHARS:,} characters, no NUL.")
    if time_spent_ms is not None and not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS:
        raise Invalid("time_spent_ms must be between 0 and 86,400,000.")
    return {"text": text, "source_completion_id": source_completion_id, "comment": comment,
            "time_spent_ms": time_spent_ms, "idempotency_key": key}


def _submit_locked(project: Project, labeler: AbstractUser, prompt_id: int, answer: dict,
                   base_revision: int | None, now: datetime) -> tuple[DemonstrationVersion, bool]:
    prompt = _locked_prompt(project, prompt_id)
    # Checked under the prompt's lock, so two copies of one request cannot both pass.
    earlier = _version_with_key(labeler, answer["idempotency_key"])
    if earlier is not None:
        return _replayed(earlier, prompt, answer), False
    if prompt.project.is_frozen:
        raise Conflict("This project is frozen: it takes no more demonstrations.")
    existing = Demonstration.objects.filter(prompt=prompt, labeler=labeler).first()
    _check_base(existing, base_revision)
    assignment = None if existing else _open_assignment(prompt, labeler)
    _check_source(prompt, answer["source_completion_id"])
    if existing is not None:
        return DemonstrationVersion.current(_revise(existing, answer)), True
    row = _first_demonstration(prompt, project, labeler, assignment, answer, now)
    return DemonstrationVersion.current(row), True


def _check_source(prompt: Prompt, source_completion_id: int | None) -> None:
    if source_completion_id is None:
        return
    if not prompt.completions.filter(id=source_completion_id).exists():
        raise Invalid(f"source_completion: {source_completion_id} is not a completion of "
                      f"prompt {prompt.id}.")


def _check_base(existing: Demonstration | None, base_revision: int | None) -> None:
    """Refuse a submission made from a version that is no longer the stored one."""
    stored = existing.revision if existing else 0
    if base_revision is None or base_revision == stored:
        return
    if existing is None:
        raise Conflict(f"base_revision {base_revision}: you have no demonstration for this "
                       "prompt")
    raise Conflict(
        f"Your demonstration for this prompt was saved as revision {stored} elsewhere "
        f"(another tab or session) since this page showed revision {base_revision}: look at "
        f"it, then save yours over it as revision {stored + 1}, or load the saved one.",
        extra={"current": {"revision": stored, "text": existing.text,
                           "source_completion": existing.source_completion_id,
                           "comment": existing.comment}})


def _replayed(earlier: DemonstrationVersion, prompt: Prompt,
              answer: dict) -> DemonstrationVersion:
    """The version a retried request stored, if this is that request again; the same key
    with other content is refused, so a success only ever describes what is stored."""
    if earlier.prompt_id != prompt.id:
        raise _key_taken(answer["idempotency_key"], earlier.prompt_id)
    stored = (earlier.text, earlier.source_completion_id, earlier.comment)
    if stored != (answer["text"], answer["source_completion_id"], answer["comment"]):
        raise Conflict(f"idempotency_key {answer['idempotency_key']!r} was already used for "
                       f"another version (revision {earlier.revision}) of your demonstration "
                       "for this prompt; send a new key with each new submission")
    return earlier


def _key_taken(key: str, prompt_id: int) -> Conflict:
    return Conflict(f"idempotency_key {key!r} was already used for your demonstration for "
                    f"prompt {prompt_id}; send a new key with each new submission")


def _version_with_key(labeler: AbstractUser, key: str) -> DemonstrationVersion | None:
    """The labeler's version stored with `key`: a current one, or one in a history."""
    if not key:
        return None
    row = Demonstration.objects.filter(labeler=labeler, idempotency_key=key).first()
    if row is not None:
        return DemonstrationVersion.current(row)
    # History is JSON; its text narrows the rows down on any database, Python decides.
    candidates = (Demonstration.objects.filter(labeler=labeler)
                  .annotate(history_text=Cast("history", TextField()))
                  .filter(history_text__contains=key))
    for row in candidates:
        for entry in row.history:
            if entry.get("idempotency_key") == key:
                return DemonstrationVersion.earlier(row, entry)
    return None


def _first_demonstration(prompt: Prompt, project: Project, labeler: AbstractUser,
                         assignment: Assignment, answer: dict, now: datetime) -> Demonstration:
    target = project.labelers_per_prompt + prompt.extra_rankings
    slot_lost = prompt.ranking_count >= target or (
        assignment.expires_at <= now and _open_slots(prompt, project, now, labeler) <= 0
    )
    if slot_lost and not prompt.is_gold:  # gold prompts have no slots: everyone gets them
        raise Conflict("Your lease on this prompt expired and others took its slots; it needs "
                       "no more demonstrations.")
    row = Demonstration.objects.create(prompt=prompt, labeler=labeler, **answer)
    assignment.status = Assignment.Status.RANKED
    assignment.closed_at = now
    assignment.save(update_fields=["status", "closed_at"])
    prompt.ranking_count += 1
    prompt.save(update_fields=["ranking_count"])
    return row


def _revise(row: Demonstration, answer: dict) -> Demonstration:
    """Keep the current version in history (oldest first), then overwrite it."""
    row.history = [*row.history, {
        "revision": row.revision, "text": row.text,
        "source_completion": row.source_completion_id, "comment": row.comment,
        "time_spent_ms": row.time_spent_ms, "idempotency_key": row.idempotency_key,
        "submitted_at": row.updated_at.isoformat(),
    }]
    for name, value in answer.items():
        setattr(row, name, value)
    row.revision += 1
    row.save()
    return row
