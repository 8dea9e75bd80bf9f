"""Labeling: hand out prompts under leases, take rankings, revisions and skips.

Invariants, under any concurrency:
- a prompt never receives more labeler rankings than its target (N, plus what adaptive
  overlap added), and open leases never hold more slots than are left;
- a labeler ranks a prompt at most once (revisions keep the earlier versions);
- no two labelers hold the last open slot of a prompt at once.
Every write that changes a prompt's slots first locks the prompt's row (SELECT ... FOR UPDATE
on PostgreSQL; on SQLite each transaction takes the write lock up front, see settings), then
counts with a fresh query, so counts are never read from a stale snapshot.
"""

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, connection, transaction
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.errors import Conflict, Invalid, NotFound

from ..agreement import mean_pairwise_agreement
from ..compiled import CompiledQuery, db_value, execute
from ..models import Assignment, Project, Prompt, Ranking, RankingRevision
from ..ranking import InvalidRanking, validate_displayed_order, validate_flags, validate_tiers
from ..ratings import tiers_from_scores, validate_scores

# How many candidate prompts each candidate query locks at most (SKIP LOCKED passes over
# others'): the first one nearly always takes the lease, and on PostgreSQL every row locked is
# a write.
CANDIDATES_PER_CALL = 5
# Tries when every open prompt was locked by other labelers' transactions at that moment.
LOCKED_RETRIES = 3
MAX_TIME_SPENT_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class RankingVersion:
    """One version of a labeler's ranking, as ranking_submit answers it: the current one or
    an earlier one kept as a revision (a retried request's key may name either)."""

    ranking: Ranking  # the row as it is now
    revision: int
    tiers: list
    flags: dict
    comment: str
    time_spent_ms: int | None
    idempotency_key: str
    scores: dict | None = None  # rate mode: what the tiers were derived from

    @property
    def id(self) -> int:
        return self.ranking.id

    @property
    def prompt_id(self) -> int:
        return self.ranking.prompt_id

    @classmethod
    def of(cls, row: Ranking | RankingRevision) -> "RankingVersion":
        ranking = row.ranking if isinstance(row, RankingRevision) else row
        return cls(ranking, row.revision, row.tiers, row.flags, row.comment, row.time_spent_ms,
                   row.idempotency_key, row.scores)


def assignment_next(
    *, project: Project, labeler: AbstractUser, now: datetime | None = None
) -> Assignment | None:
    """Return the labeler's open lease in `project`, or lease them a new prompt.

    A new prompt is one they have not ranked or skipped that still has an open slot;
    prompts closest to done come first. Return None when nothing is left for them.
    """
    now = now or timezone.now()
    ids = {"project_id": project.id, "labeler_id": labeler.id, "now": now}
    with transaction.atomic():
        row = OPEN_LEASE.first(**ids)
        if row is not None:
            return _assignment_with_prompt(row)
        if _wants_gold(project, labeler):
            # Locked like any prompt we lease: two requests of one labeler lease it once.
            gold = _gold_candidates(project, labeler).select_for_update(of=("self",)).first()
            if gold is not None:
                return _lease(gold, project, labeler, now)
        n = project.labelers_per_prompt
        for attempt in range(LOCKED_RETRIES + 1):
            # Untouched prompts are read only when no started one could be leased.
            for phase in (lambda: _started_rows(ids, n), lambda: UNTOUCHED_CANDIDATES.rows(**ids)):
                for values in phase():
                    prompt = Prompt.from_db(connection.alias, PROMPT_FIELDS, values)
                    lease = _lease_if_open(prompt, project, labeler, now)
                    if lease is not None:
                        return lease
            # Nothing we could lock: done, unless open prompts were only locked by others
            # for a moment (another labeler's lease being written). Then look again.
            phases = _candidates(project.id, labeler.id, now, n)
            if attempt == LOCKED_RETRIES or not any(c.exists() for c in phases):
                return None
            time.sleep(0.005 * (attempt + 1))
    return None


def _candidates(project_id: int, labeler_id: int, now: datetime,
                n: int) -> tuple[QuerySet[Prompt], QuerySet[Prompt], QuerySet[Prompt]]:
    """Prompts the labeler has not ranked or skipped with a slot left, closest to done first.

    Three queries, none of which reads the whole project or every started prompt:
    - busy: prompts others hold open leases on or that were asked for extra rankings (few,
      from two small indexes), with `taken` = rankings plus others' open leases;
    - part ranked: prompts with some rankings, short of N, no one else's lease on them, so
      `taken` is their ranking_count; walked from the (project, -ranking_count, id) index,
      most ranked first, and stopped at the limit. Sorting every started prompt by a count of
      its leases made a hand-out cost a few ms per thousand started prompts (a lone labeler
      who ran ahead left thousands);
    - untouched: no rankings and no lease, by id.
    The first two, merged by (-taken, id), then the third: the order "most rankings plus open
    leases first, then id".
    """
    # Every project's open leases (few; the partial index assignment_open_lease_idx): the
    # prompts' own project filter keeps this project's, without a join per lease.
    leased_to_others = Assignment.objects.filter(
        status=Assignment.Status.LEASED, expires_at__gt=now,
    ).exclude(labeler_id=labeler_id).order_by().values("prompt_id")
    open_prompts = Prompt.objects.filter(project_id=project_id, gold_tiers__isnull=True,
                                         retired_at__isnull=True).filter(_not_done_by(labeler_id))
    busy = (
        open_prompts.filter(id__in=_busy_ids(project_id, leased_to_others))
        .annotate(open_leases=_open_lease_count(now, excluding=labeler_id))
        .annotate(taken=F("ranking_count") + F("open_leases"))
        .filter(taken__lt=F("extra_rankings") + n)
        .order_by("-taken", "id")
    )
    # `ranking_count > 0` as the partial index prompt_part_ranked_idx states it.
    part_ranked = (open_prompts.filter(ranking_count__gt=0, ranking_count__lt=n,
                                       extra_rankings=0)
                   .exclude(id__in=leased_to_others).order_by("-ranking_count", "id"))
    # `ranking_count < 1 ... ORDER BY ranking_count, id` is `= 0 ... ORDER BY id`, in a form
    # only the (project, ranking_count, id) index yields in order: with `= 0` PostgreSQL
    # walked the primary key past every prompt already ranked (it guesses untouched ones
    # are spread evenly), thousands of rows a hand-out later in a project.
    untouched = (open_prompts.filter(ranking_count__lt=1, extra_rankings=0)
                 .exclude(id__in=leased_to_others).order_by("ranking_count", "id"))
    return busy, part_ranked, untouched


def _not_done_by(labeler_id: int) -> Q | Exists:
    """Prompts the labeler has not ranked or skipped, in the form each database runs best."""
    closed = Assignment.objects.filter(
        labeler_id=labeler_id, status__in=[Assignment.Status.RANKED, Assignment.Status.SKIPPED])
    if connection.vendor == "sqlite":
        # One probe of the (prompt, labeler) unique index per candidate; a NOT IN list read
        # all the labeler's closed assignments on every next-prompt.
        return ~Exists(closed.filter(prompt_id=OuterRef("pk")))
    # PostgreSQL plans a NOT EXISTS as an anti join, and with the LIMIT a merge join that
    # walks the assignments from the project's first prompt; a hashed NOT IN list is read
    # once (every project's: the prompts' project filter keeps this one's, without a join).
    return ~Q(id__in=closed.order_by().values("prompt_id"))


def _busy_ids(project_id: int, leased_to_others: QuerySet) -> QuerySet:
    """Ids of prompts asked for extra rankings or leased to others.

    A UNION, each arm read from its own index, rather than an OR of the conditions: an OR
    with `id IN (leases)` can use no index, so the database read every prompt.
    """
    extra = Prompt.objects.filter(project_id=project_id, extra_rankings__gt=0).order_by()
    return extra.values("id").union(leased_to_others, all=True)


def _wants_gold(project: Project, labeler: AbstractUser) -> bool:
    """Onboarding first; then a gold prompt at the project's rate, unannounced."""
    if project.onboarding_gold_count and gold_done_count(project, labeler) < (
        project.onboarding_gold_count
    ):
        return True
    return project.gold_rate > 0 and secrets.randbelow(1_000_000) < project.gold_rate * 1_000_000


def gold_done_count(project: Project, labeler: AbstractUser) -> int:
    return (
        Assignment.objects.filter(labeler=labeler, prompt__project=project,
                                  prompt__gold_tiers__isnull=False)
        .exclude(status=Assignment.Status.LEASED)
        .count()
    )


def _gold_candidates(project: Project, labeler: AbstractUser) -> QuerySet[Prompt]:
    """Gold prompts the labeler has not ranked or skipped; every labeler may rank each."""
    closed = Assignment.objects.filter(labeler=labeler, prompt__project=project).exclude(
        status=Assignment.Status.LEASED
    )
    return (
        Prompt.objects.filter(project=project, gold_tiers__isnull=False, retired_at__isnull=True)
        .exclude(id__in=closed.values("prompt_id"))
        .order_by("id")
    )


def _open_lease_count(now: datetime, excluding: int) -> Coalesce:
    leases = (
        Assignment.objects.filter(prompt=OuterRef("pk"), status=Assignment.Status.LEASED,
                                  expires_at__gt=now)
        .exclude(labeler_id=excluding)
        .values("prompt")
        .annotate(count=Count("id"))
        .values("count")
    )
    return Coalesce(Subquery(leases, output_field=IntegerField()), Value(0))


def _open_slots(prompt: Prompt, project: Project, now: datetime, excluding: AbstractUser) -> int:
    """Slots left on a prompt locked in this transaction, not counting `excluding`'s own lease.

    `prompt` must come from a SELECT ... FOR UPDATE of this transaction: that returns the row's
    latest version, so its ranking_count is current (on SQLite the transaction holds the write
    lock). Open leases are counted afresh.
    """
    ranking_count = prompt.ranking_count
    open_leases = (
        Assignment.objects.filter(prompt=prompt, status=Assignment.Status.LEASED,
                                  expires_at__gt=now)
        .exclude(labeler=excluding)
        .count()
    )
    target = project.labelers_per_prompt + prompt.extra_rankings
    return target - ranking_count - open_leases


def _lease(prompt: Prompt, project: Project, labeler: AbstractUser, now: datetime) -> Assignment:
    expires_at = now + timedelta(minutes=project.lease_minutes)
    # No get_or_create savepoint: the prompt's row is locked, so no one else can write this
    # labeler's lease on it before we commit.
    assignment = Assignment.objects.filter(prompt=prompt, labeler=labeler).first()
    if assignment is None:
        assignment = Assignment.objects.create(
            prompt=prompt, labeler=labeler, seed=secrets.randbelow(2**31), leased_at=now,
            expires_at=expires_at)
    else:  # an expired lease of theirs: renew it, keeping its seed (same order)
        assignment.leased_at, assignment.expires_at = now, expires_at
        assignment.save(update_fields=["leased_at", "expires_at"])
    assignment.prompt = prompt
    return assignment


PROMPT_FIELDS = [field.attname for field in Prompt._meta.concrete_fields]
ASSIGNMENT_FIELDS = [field.attname for field in Assignment._meta.concrete_fields]
RANKING_FIELDS = [field.attname for field in Ranking._meta.concrete_fields]

# The hot path's reads, written by the ORM once per connection (annotate.compiled): next-prompt
# and submit spent more of their CPU building these queries than running them.
OPEN_LEASE = CompiledQuery(
    lambda project_id, labeler_id, now: Assignment.objects.filter(
        prompt__project_id=project_id, labeler_id=labeler_id,
        status=Assignment.Status.LEASED, expires_at__gt=now,
    ).order_by("leased_at").values_list(*ASSIGNMENT_FIELDS,
                                        *(f"prompt__{name}" for name in PROMPT_FIELDS))[:1],
    project_id=int, labeler_id=int, now=datetime)
BUSY_CANDIDATES = CompiledQuery(
    lambda project_id, labeler_id, now, n: _candidates(project_id, labeler_id, now, n)[0]
    .select_for_update(skip_locked=True, of=("self",))
    .values_list(*PROMPT_FIELDS, "taken")[:CANDIDATES_PER_CALL],
    project_id=int, labeler_id=int, now=datetime, n=int)
PART_RANKED_CANDIDATES = CompiledQuery(
    lambda project_id, labeler_id, now, n: _candidates(project_id, labeler_id, now, n)[1]
    .select_for_update(skip_locked=True, of=("self",))
    .values_list(*PROMPT_FIELDS)[:CANDIDATES_PER_CALL],
    project_id=int, labeler_id=int, now=datetime, n=int)
UNTOUCHED_CANDIDATES = CompiledQuery(
    lambda project_id, labeler_id, now: _candidates(project_id, labeler_id, now, 1)[2]
    .select_for_update(skip_locked=True, of=("self",))
    .values_list(*PROMPT_FIELDS)[:CANDIDATES_PER_CALL],
    project_id=int, labeler_id=int, now=datetime)
# A locked prompt's open leases held by others, and the labeler's own assignment if any: the
# counts _open_slots and _lease read, in one query.
LEASES_ON_PROMPT = CompiledQuery(
    lambda prompt_id, labeler_id, now: Assignment.objects.filter(prompt_id=prompt_id)
    .order_by().values("prompt_id").annotate(
        open_leases=Count("id", filter=Q(status=Assignment.Status.LEASED, expires_at__gt=now)
                          & ~Q(labeler_id=labeler_id)),
        mine=Max("id", filter=Q(labeler_id=labeler_id)),
    ).values_list("open_leases", "mine"),
    prompt_id=int, labeler_id=int, now=datetime)


_RANKING_COUNT = PROMPT_FIELDS.index("ranking_count")


def _started_rows(ids: dict, n: int) -> list[tuple]:
    """The busy and part-ranked candidates (each locked, at most CANDIDATES_PER_CALL), in
    the order (-taken, id): a part-ranked prompt's taken is its ranking_count."""
    keyed = [(-row[-1], row[0], row[:-1]) for row in BUSY_CANDIDATES.rows(**ids, n=n)]
    keyed += [(-row[_RANKING_COUNT], row[0], row)
              for row in PART_RANKED_CANDIDATES.rows(**ids, n=n)]
    keyed.sort(key=lambda item: item[:2])
    return [row for *_, row in keyed]


def _assignment_with_prompt(row: tuple) -> Assignment:
    split = len(ASSIGNMENT_FIELDS)
    assignment = Assignment.from_db(connection.alias, ASSIGNMENT_FIELDS, row[:split])
    assignment.prompt = Prompt.from_db(connection.alias, PROMPT_FIELDS, row[split:])
    return assignment


def _lease_if_open(prompt: Prompt, project: Project, labeler: AbstractUser,
                   now: datetime) -> Assignment | None:
    """Lease `prompt` (locked in this transaction, so its counts are current) if a slot is
    open, as _open_slots and _lease do, in one read and one write."""
    row = LEASES_ON_PROMPT.first(prompt_id=prompt.id, labeler_id=labeler.id, now=now)
    open_leases, mine = row if row is not None else (0, None)
    target = project.labelers_per_prompt + prompt.extra_rankings
    if target - prompt.ranking_count - open_leases <= 0:
        return None
    if mine is not None:  # an expired lease of theirs: _lease renews it
        return _lease(prompt, project, labeler, now)
    values = {"prompt_id": prompt.id, "labeler_id": labeler.id,
              "status": Assignment.Status.LEASED, "seed": secrets.randbelow(2**31),
              "leased_at": now, "expires_at": now + timedelta(minutes=project.lease_minutes),
              "closed_at": None, "skip_reason": ""}
    names = list(values)
    [(values["id"],)] = execute(
        f"INSERT INTO {connection.ops.quote_name(Assignment._meta.db_table)} "
        f"({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(names))}) RETURNING id",
        [db_value(Assignment, name, value) for name, value in values.items()])
    assignment = Assignment.from_db(connection.alias, ASSIGNMENT_FIELDS,
                                    [values[name] for name in ASSIGNMENT_FIELDS])
    assignment.prompt = prompt
    return assignment


def lease_renew(
    *, project: Project, labeler: AbstractUser, prompt_id: int, now: datetime | None = None
) -> Assignment:
    """Extend the labeler's lease on a prompt they are still ranking (the page calls this)."""
    now = now or timezone.now()
    with transaction.atomic():
        prompt = _locked_prompt(project, prompt_id)
        assignment = _open_assignment(prompt, labeler)
        if assignment.expires_at <= now and _open_slots(prompt, project, now, labeler) <= 0:
            raise Conflict("Your lease expired and others took this prompt's slots.")
        assignment.leased_at = now
        assignment.expires_at = now + timedelta(minutes=project.lease_minutes)
        assignment.save(update_fields=["leased_at", "expires_at"])
    return assignment


def prompt_skip(
    *, project: Project, labeler: AbstractUser, prompt_id: int, reason: str,
    now: datetime | None = None,
) -> Assignment:
    """Skip a leased prompt with a reason; it goes back to the pool for others."""
    now = now or timezone.now()
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("Say why you skip this prompt.")
    with transaction.atomic():
        prompt = _locked_prompt(project, prompt_id)
        assignment = _open_assignment(prompt, labeler)
        assignment.status = Assignment.Status.SKIPPED
        assignment.closed_at = now
        assignment.skip_reason = reason[:500]
        assignment.save(update_fields=["status", "closed_at", "skip_reason"])
    return assignment


def ranking_submit(
    *,
    project: Project,
    labeler: AbstractUser,
    prompt_id: int,
    tiers: object = None,
    idempotency_key: str,
    flags: object = None,
    comment: str = "",
    time_spent_ms: int | None = None,
    displayed_order: object = None,
    base_revision: int | None = None,
    scores: object = None,
    now: datetime | None = None,
) -> tuple[RankingVersion, bool]:
    """Record a ranking, or a revision of the labeler's earlier one.

    A rank project takes `tiers`. A rate project takes `scores` instead and refuses `tiers`:
    the tiers stored are derived from the scores (annotate.ratings.tiers_from_scores), so a
    client cannot send a ranking that contradicts its own scores.

    `base_revision` names the version this submission replaces (0: none). When the stored
    ranking has moved on since (another tab or session saved one), the submission is refused
    with Conflict carrying the current version in `extra["current"]`, so nothing is
    overwritten unseen. Without it, a submission revises whatever is stored.

    Return the version stored and whether it is new; a key seen before returns the version
    it stored then, and nothing is written. Raise an ApplicationError when the rules refuse.
    """
    now = now or timezone.now()
    if project.annotation_mode == Project.Mode.DEMONSTRATE:
        raise Conflict("This project is in demonstrate mode: it takes demonstrations "
                       "(a response written for the prompt), not rankings.")
    if time_spent_ms is not None and not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS:
        raise Invalid("time_spent_ms must be between 0 and 86,400,000.")
    answer = {"tiers": tiers, "flags": flags, "displayed_order": displayed_order,
              "comment": comment, "time_spent_ms": time_spent_ms,
              "base_revision": base_revision, "scores": scores}
    try:
        with transaction.atomic():
            row, created = _submit_locked(project, labeler, prompt_id, idempotency_key, answer,
                                          now)
            return RankingVersion.of(row), created
    except IntegrityError:
        # The key is checked under the prompt's lock, so one key sent for two prompts at
        # once passes twice and the database refuses the second write: it is taken.
        earlier = _version_with_key(labeler, idempotency_key)
        if earlier is None:
            raise
        raise _key_taken(idempotency_key, RankingVersion.of(earlier).prompt_id) from None


def _submit_locked(
    project: Project, labeler: AbstractUser, prompt_id: int, idempotency_key: str,
    answer: dict, now: datetime,
) -> tuple[Ranking | RankingRevision, bool]:
    ranking = _first_ranking_fast(project, labeler, prompt_id, idempotency_key, answer, now)
    if ranking is not None:
        return ranking, True
    prompt = _locked_prompt(project, prompt_id)
    # Checked under the prompt's lock, so two copies of one request cannot both pass.
    earlier = _version_with_key(labeler, idempotency_key)
    if earlier is not None:
        return _replayed(earlier, prompt, project, answer, idempotency_key), False
    if prompt.project.is_frozen:
        raise Conflict("This project is frozen: it takes no more rankings.")
    existing = Ranking.objects.filter(prompt=prompt, labeler=labeler).first()
    _check_base(existing, answer["base_revision"])
    assignment = None if existing else _open_assignment(prompt, labeler)
    fields = _validated(answer, prompt, project, idempotency_key)
    if existing is not None:
        return _revise(existing, fields), True
    return _first_ranking(prompt, project, labeler, assignment, fields, now), True


# The prompt's completions with the prompt's row locked (its fresh counts, is the project
# frozen), in one query.
LOCKED_PROMPT_COMPLETIONS = CompiledQuery(
    lambda prompt_id, project_id: Prompt.objects.filter(id=prompt_id, project_id=project_id)
    .select_for_update(of=("self",)).order_by("completions__position")
    .values_list("completions__id", "project__is_frozen", *PROMPT_FIELDS),
    prompt_id=int, project_id=int)
# Anything that makes a submission more than a first ranking: a ranking of the prompt, or a
# ranking or revision carrying the key.
KEY_OR_RANKING_SEEN = CompiledQuery(
    lambda labeler_id, prompt_id, key: Ranking.objects.filter(
        Q(idempotency_key=key) | Q(prompt_id=prompt_id), labeler_id=labeler_id,
    ).order_by().values_list("id").union(
        RankingRevision.objects.filter(ranking__labeler_id=labeler_id, idempotency_key=key)
        .order_by().values_list("id"), all=True),
    labeler_id=int, prompt_id=int, key=str)


def _first_ranking_fast(
    project: Project, labeler: AbstractUser, prompt_id: object, key: str, answer: dict,
    now: datetime,
) -> Ranking | None:
    """The common submission, a first ranking on a live lease, in two reads and three
    writes. None for anything else (a retried key, a revision, a base_revision to check, a
    frozen project, an expired lease, a full prompt, no such prompt), with nothing written:
    the full path, under the same lock, handles and words those. Invalid answers are refused
    here as there."""
    if not key or answer["base_revision"] not in (None, 0) or type(prompt_id) is not int:
        return None
    rows = LOCKED_PROMPT_COMPLETIONS.rows(prompt_id=prompt_id, project_id=project.id)
    if not rows or rows[0][0] is None or rows[0][1]:  # none, no completions, or frozen
        return None
    if KEY_OR_RANKING_SEEN.first(labeler_id=labeler.id, prompt_id=prompt_id, key=key):
        return None
    prompt = Prompt.from_db(connection.alias, PROMPT_FIELDS, rows[0][2:])
    if prompt.ranking_count >= project.labelers_per_prompt + prompt.extra_rankings and (
            not prompt.is_gold):
        return None
    table = connection.ops.quote_name
    # The live lease closed as ranked, found and written in one statement: none (expired,
    # skipped, never leased) writes nothing and leaves the submission to the full path. An
    # invalid answer is refused after it, as the full path refuses it after the lease; the
    # refusal rolls the transaction back.
    closed = execute(
        f"UPDATE {table(Assignment._meta.db_table)} SET status = %s, closed_at = %s "
        "WHERE prompt_id = %s AND labeler_id = %s AND status = %s AND expires_at > %s "
        "RETURNING id",
        [Assignment.Status.RANKED, db_value(Assignment, "closed_at", now), prompt_id,
         labeler.id, Assignment.Status.LEASED, db_value(Assignment, "expires_at", now)])
    if not closed:
        return None
    fields = _validated_for(answer, [row[0] for row in rows], project, key)
    ranking = _ranking_insert(prompt, labeler, fields)
    prompt.ranking_count += 1
    if _needs_more_rankings(prompt, project):
        prompt.extra_rankings += 1
    execute(f"UPDATE {table(Prompt._meta.db_table)} SET ranking_count = %s, "
            "extra_rankings = %s WHERE id = %s",
            [prompt.ranking_count, prompt.extra_rankings, prompt.id])
    return ranking


def _ranking_insert(prompt: Prompt, labeler: AbstractUser, fields: dict) -> Ranking:
    """Ranking.objects.create without the ORM's query building; the instance it returns."""
    stamp = timezone.now()  # auto_now_add / auto_now
    values = {"prompt_id": prompt.id, "labeler_id": labeler.id,
              "source": Ranking.Source.LABELER, **fields, "revision": 1,
              "created_at": stamp, "updated_at": stamp}
    names = list(values)
    [(values["id"],)] = execute(
        f"INSERT INTO {connection.ops.quote_name(Ranking._meta.db_table)} "
        f"({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) RETURNING id",
        [db_value(Ranking, name, value) for name, value in values.items()])
    ranking = Ranking.from_db(connection.alias, RANKING_FIELDS,
                              [values[name] for name in RANKING_FIELDS])
    ranking.prompt = prompt
    return ranking


def _check_base(existing: Ranking | None, base_revision: int | None) -> None:
    """Refuse a submission made from a version that is no longer the stored one."""
    stored = existing.revision if existing else 0
    if base_revision is None or base_revision == stored:
        return
    if existing is None:
        raise Conflict(f"base_revision {base_revision}: you have no ranking of this prompt")
    raise Conflict(
        f"Your ranking of this prompt was saved as revision {stored} elsewhere (another tab "
        f"or session) since this page showed revision {base_revision}: look at it, then "
        f"save yours over it as revision {stored + 1}, or load the saved one.",
        extra={"current": {"revision": stored, "tiers": existing.tiers,
                           "scores": existing.scores, "flags": existing.flags,
                           "comment": existing.comment}})


def _validated(answer: dict, prompt: Prompt, project: Project, key: str) -> dict:
    """The ranking's fields as stored, or Invalid saying what is wrong."""
    completion_ids = list(prompt.completions.values_list("id", flat=True))
    return _validated_for(answer, completion_ids, project, key)


def _validated_for(answer: dict, completion_ids: list[int], project: Project, key: str) -> dict:
    try:
        fields = {
            **_tiers_and_scores(answer, completion_ids, project),
            "flags": validate_flags(answer["flags"], completion_ids),
            "displayed_order": validate_displayed_order(answer["displayed_order"],
                                                        completion_ids),
        }
    except InvalidRanking as exc:
        raise Invalid(str(exc)) from None
    return fields | {"comment": answer["comment"] or "", "time_spent_ms": answer["time_spent_ms"],
                     "idempotency_key": key}


def _tiers_and_scores(answer: dict, completion_ids: list[int], project: Project) -> dict:
    """A rank project's tiers as given; a rate project's scores and the tiers they imply."""
    if project.annotation_mode != Project.Mode.RATE:
        if answer["scores"] is not None:
            raise Invalid("scores: this project ranks; scores are for rate projects",
                          extra={"field": "scores"})
        return {"tiers": validate_tiers(answer["tiers"], set(completion_ids),
                                        allow_ties=project.allow_ties), "scores": None}
    if answer["tiers"] is not None:
        raise Invalid("tiers: this project rates; send scores, the tiers come from them",
                      extra={"field": "tiers"})
    if answer["scores"] is None:
        raise Invalid("scores: this project rates; give every completion a score",
                      extra={"field": "scores"})
    try:
        scores = validate_scores(answer["scores"], completion_ids,
                                 scale_min=project.rating_scale_min,
                                 scale_max=project.rating_scale_max,
                                 aspects=project.rating_aspects)
    except InvalidRanking as exc:
        raise Invalid(str(exc), extra={"field": "scores"}) from None
    return {"tiers": tiers_from_scores(scores), "scores": scores}


def _replayed(earlier: Ranking | RankingRevision, prompt: Prompt, project: Project,
              answer: dict, key: str) -> Ranking | RankingRevision:
    """The version a retried request stored, if this is that request again. A key names one
    submission: sent with another prompt or another ranking, it is refused, so a success
    only ever describes what is stored."""
    ranking = earlier.ranking if isinstance(earlier, RankingRevision) else earlier
    if ranking.prompt_id != prompt.id:
        raise _key_taken(key, ranking.prompt_id)
    fields = _validated(answer, prompt, project, key)
    if (earlier.tiers, earlier.scores, earlier.flags, earlier.comment) != (
            fields["tiers"], fields["scores"], fields["flags"], fields["comment"]):
        raise Conflict(f"idempotency_key {key!r} was already used for another version "
                       f"(revision {earlier.revision}) of your ranking of this prompt; send a "
                       "new key with each new submission")
    return earlier


def _key_taken(key: str, prompt_id: int) -> Conflict:
    return Conflict(f"idempotency_key {key!r} was already used for your ranking of prompt "
                    f"{prompt_id}; send a new key with each new submission")


def _version_with_key(labeler: AbstractUser, key: str) -> Ranking | RankingRevision | None:
    if not key:
        return None
    ranking = Ranking.objects.filter(labeler=labeler, idempotency_key=key).first()
    if ranking is not None:
        return ranking
    return (
        RankingRevision.objects.select_related("ranking")
        .filter(ranking__labeler=labeler, idempotency_key=key)
        .first()
    )


def _first_ranking(
    prompt: Prompt, project: Project, labeler: AbstractUser, assignment: Assignment,
    fields: dict, now: datetime,
) -> Ranking:
    target = project.labelers_per_prompt + prompt.extra_rankings
    slot_lost = prompt.ranking_count >= target or (
        assignment.expires_at <= now and _open_slots(prompt, project, now, labeler) <= 0
    )
    if slot_lost and not prompt.is_gold:  # gold prompts have no slots: everyone ranks them
        raise Conflict(
            "Your lease on this prompt expired and others took its slots; it needs no more "
            "rankings.",
        )
    ranking = Ranking.objects.create(prompt=prompt, labeler=labeler, **fields)
    assignment.status = Assignment.Status.RANKED
    assignment.closed_at = now
    assignment.save(update_fields=["status", "closed_at"])
    prompt.ranking_count += 1
    if _needs_more_rankings(prompt, project):
        prompt.extra_rankings += 1
    prompt.save(update_fields=["ranking_count", "extra_rankings"])
    return ranking


def _revise(ranking: Ranking, fields: dict) -> Ranking:
    """Keep the current version in history, then overwrite it with the new one."""
    RankingRevision.objects.create(
        ranking=ranking, revision=ranking.revision, tiers=ranking.tiers, scores=ranking.scores,
        flags=ranking.flags,
        comment=ranking.comment, time_spent_ms=ranking.time_spent_ms,
        idempotency_key=ranking.idempotency_key, displayed_order=ranking.displayed_order,
        submitted_at=ranking.updated_at,
    )
    for name, value in fields.items():
        setattr(ranking, name, value)
    ranking.revision += 1
    ranking.save()
    return ranking


def _needs_more_rankings(prompt: Prompt, project: Project) -> bool:
    """Adaptive overlap: a prompt at its target whose rankings disagree asks for one more."""
    target = project.labelers_per_prompt + prompt.extra_rankings
    if not project.adaptive_overlap or prompt.is_gold or prompt.ranking_count < target:
        return False
    if target >= project.adaptive_max_labelers:
        return False
    all_tiers = list(
        Ranking.objects.filter(prompt=prompt, source=Ranking.Source.LABELER)
        .values_list("tiers", flat=True)
    )
    return mean_pairwise_agreement(all_tiers) < project.adaptive_min_agreement


def _locked_prompt(project: Project, prompt_id: int) -> Prompt:
    """The prompt, its row locked; its project is read in the same query (is it frozen?)."""
    try:
        return (Prompt.objects.select_related("project").select_for_update(of=("self",))
                .get(id=prompt_id, project=project))
    except (Prompt.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such prompt in this project.") from None


def _open_assignment(prompt: Prompt, labeler: AbstractUser) -> Assignment:
    assignment = Assignment.objects.filter(
        prompt=prompt, labeler=labeler, status=Assignment.Status.LEASED
    ).first()
    if assignment is None:
        raise NotFound("This prompt is not leased to you.")
    return assignment


def prompt_gold_set(*, project: Project, prompt_id: int, tiers: object, mode: str) -> Prompt:
    """Mark a prompt as gold with its reference ranking ("ranking") or best tier ("best")."""
    if mode not in ("ranking", "best"):
        raise Invalid("mode must be 'ranking' or 'best'.")
    if project.annotation_mode == Project.Mode.DEMONSTRATE:
        raise Invalid("A demonstrate project takes no gold prompts: its labelers write "
                      "responses, which no reference ranking can score.")
    with transaction.atomic():
        prompt = _locked_prompt(project, prompt_id)
        completion_ids = set(prompt.completions.values_list("id", flat=True))
        try:
            clean = validate_tiers(tiers, completion_ids, allow_ties=True)
        except InvalidRanking as exc:
            raise Invalid(str(exc)) from None
        prompt.gold_tiers, prompt.gold_mode = clean, mode
        prompt.save(update_fields=["gold_tiers", "gold_mode"])
    return prompt


def prompt_gold_clear(*, project: Project, prompt_id: int) -> Prompt:
    with transaction.atomic():
        prompt = _locked_prompt(project, prompt_id)
        prompt.gold_tiers, prompt.gold_mode = None, ""
        prompt.save(update_fields=["gold_tiers", "gold_mode"])
    return prompt


def prompts_request_more_rankings(*, project: Project, prompt_ids: list[int],
                                  extra: int = 1) -> int:
    """Send prompts back to the labelers: each asks for `extra` more rankings (gold prompts
    have no slots, so they are left alone). Return how many prompts were sent back."""
    with transaction.atomic():
        return Prompt.objects.filter(project=project, id__in=prompt_ids,
                                     gold_tiers__isnull=True).update(
            extra_rankings=F("extra_rankings") + extra)
