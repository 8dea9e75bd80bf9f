"""Exports: versioned preference datasets, built prompt by prompt with flat memory."""

import hmac
import json
import logging
import shutil
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Max, QuerySet
from django.db.models.sql.constants import MULTI
from django.utils import timezone

from config.errors import NotFound, QuotaExceeded, reason_line

from .. import exporters
from ..agreement import leave_one_out_agreement
from ..consensus import TIE_POLICIES, LabeledRanking, merge_prompt
from ..exporters import PromptForExport, RankingForExport
from ..models import Completion, Export, Project, Prompt, Ranking
from ..quality import flagged_labeler_ids
from ..rating_exporters import SCORES_FILE
from ..selectors import model_win_rates
from ..signals import export_finished
from .export_parts import export_part_job, export_parts_start
from .export_runs import Heartbeat, export_claim, export_dispatch

logger = logging.getLogger(__name__)

FORMATS = ("trl-jsonl", "parquet", "hf-dataset")
PROGRESS_EVERY = 1000
T = TypeVar("T")
STREAM_CHUNK = 2000
ZIP_LEVEL = 3  # deflate: about half the time of the default 6, for a zip about a fifth larger


@dataclass(frozen=True)
class ExportParams:
    min_votes: int = 2
    min_agreement: float = 2 / 3
    tie_policy: str = "half"
    test_fraction: float = 0.1
    seed: int = 0
    include_imported: bool = False
    # Leave out labelers below the project's gold threshold; None: the project's setting.
    exclude_flagged: bool | None = None
    weight_by_reliability: bool = False  # weight votes by agreement with the others
    # Rate mode: keep a completion only when its labelers' scores differ by at most this;
    # None: the project's consensus_max_spread. Left out of a ranking export's params.
    max_spread: float | None = None
    formats: tuple[str, ...] = FORMATS

    def __post_init__(self):
        problems = []
        if self.min_votes < 1:
            problems.append("min_votes must be at least 1")
        if not 0.5 <= self.min_agreement <= 1:
            problems.append("min_agreement must be between 0.5 and 1")
        if self.tie_policy not in TIE_POLICIES:
            problems.append(f"tie_policy must be one of {', '.join(TIE_POLICIES)}")
        if self.max_spread is not None and not 0 <= self.max_spread < float("inf"):
            problems.append("max_spread must be a number of at least 0")
        if not 0 <= self.test_fraction < 1:
            problems.append("test_fraction must be at least 0 and below 1")
        unknown = set(self.formats) - set(FORMATS)
        if unknown:
            problems.append(f"unknown formats {sorted(unknown)}; use {', '.join(FORMATS)}")
        if problems:
            raise ValueError("; ".join(problems))

    def as_dict(self) -> dict:
        fields = {**self.__dict__, "formats": list(self.formats)}
        if self.max_spread is None:  # a ranking export's params stay as they were
            del fields["max_spread"]
        return fields


def export_create(*, project: Project, params: ExportParams,
                  created_by: AbstractUser | None, run_now: bool = False) -> Export:
    """Create the next version of the project's export; build it now or on a worker.

    On a worker, a request with the same parameters as an export still queued or building
    gets that export; past EXPORT_MAX_ACTIVE different ones, QuotaExceeded.
    """
    if params.exclude_flagged is None:  # frozen into the export's params, so rebuilds agree
        params = replace(params, exclude_flagged=project.gold_exclude_flagged)
    if params.max_spread is None and project.annotation_mode == Project.Mode.RATE:
        params = replace(params, max_spread=project.consensus_max_spread)
    with transaction.atomic():
        Project.objects.select_for_update().filter(id=project.id).first()
        if not run_now:
            active = list(project.exports.filter(status__in=Export.ACTIVE))
            same = next((e for e in active if e.params == params.as_dict()), None)
            if same is not None:
                return same
            if len(active) >= settings.EXPORT_MAX_ACTIVE:
                raise QuotaExceeded(
                    f"This project already has {settings.EXPORT_MAX_ACTIVE} exports queued or "
                    "building; wait for one to finish.")
        latest = project.exports.aggregate(latest=Max("version"))["latest"] or 0
        export = Export.objects.create(
            project=project, version=latest + 1, params=params.as_dict(), created_by=created_by,
            prompts_total=project.prompts.filter(retired_at__isnull=True).count(),
        )
        if not run_now:
            transaction.on_commit(lambda: export_dispatch(export.id))
    if run_now:
        export_run(export.id)
        export.refresh_from_db()
    return export


def export_run(export_id: int) -> None:
    """Build a queued export. A second delivery of the same job finds it claimed and returns,
    unless its builder is gone: then it is built again from the start, into the same folder."""
    export = export_claim(export_id)
    if export is None:
        return
    mine = Export.objects.filter(id=export_id, status=Export.Status.RUNNING,
                                 worker=export.worker)
    final = settings.VAR_DIR / "exports" / export.project.slug / f"v{export.version}"
    work = final.with_name(final.name + ".partial")
    try:
        with Heartbeat(export):
            shutil.rmtree(work, ignore_errors=True)
            counts, data_hash = _build(export, work)
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
            _zip(final)
    except Exception as exc:
        shutil.rmtree(work, ignore_errors=True)
        # One line for the admins; the traceback goes to the worker's log with the raise.
        mine.update(status=Export.Status.FAILED, error=f"Export failed: {reason_line(exc)}",
                    finished_at=timezone.now())
        _tell_finished(export_id)
        raise
    mine.update(
        status=Export.Status.SUCCEEDED, counts=counts, content_hash=data_hash,
        directory=str(final.relative_to(settings.VAR_DIR)), finished_at=timezone.now(),
        prompts_done=export.prompts_total,
    )
    _tell_finished(export_id)


def _tell_finished(export_id: int) -> None:
    """A listener's failure is logged, never the export's: it is built either way."""
    for receiver, outcome in export_finished.send_robust(sender=Export, export_id=export_id):
        if isinstance(outcome, Exception):
            logger.error("export %s: %s failed: %s", export_id, receiver, outcome,
                         exc_info=outcome)


def _build(export: Export, directory: Path) -> tuple[dict, str]:
    params = ExportParams(**{**export.params, "formats": tuple(export.params["formats"])})
    project = export.project
    if project.annotation_mode == Project.Mode.DEMONSTRATE:
        # Imported here: that module builds on this one's params and pseudonyms.
        from .demonstration_exports import demonstration_export_build

        return demonstration_export_build(export, params, directory)
    if project.annotation_mode == Project.Mode.RATE:
        from .rating_exports import rating_export_build  # it streams with this module's reader

        return rating_export_build(export, params, directory)
    ranges, parts = export_parts_start(export, params, directory)  # one range: no part
    writer = None
    try:
        conversational = project.prompts.filter(messages__isnull=False).exists()
        excluded = flagged_labeler_ids(project) if params.exclude_flagged else set()
        weights = (labeler_reliability(project, params, excluded)
                   if params.weight_by_reliability else {})
        writer = exporters.ExportWriter(directory, conversational=conversational,
                                        test_fraction=params.test_fraction, seed=params.seed)
        # What depends on the whole export (weights, exclusions, the chat form) is settled
        # above, once: each part (a forked child) writes its own prompts' lines with it.
        for part in parts:
            part.send(export_part_job(export, params, conversational=conversational,
                                      excluded=excluded, weights=weights))

        export_write_prompts(writer, project, params, excluded, weights, ranges[0],
                             export_progress(export.id))
        for part in parts:  # in order: the files are the parts' lines, concatenated
            writer.append_part(*part.wait())
    finally:
        for part in parts:
            part.stop()
        if writer is not None:
            writer.close()
    data_hash = exporters.content_hash(directory)
    if "parquet" in params.formats:
        exporters.write_parquet(directory)
    if "hf-dataset" in params.formats:
        exporters.write_hf_dataset(directory)
    card = exporters.dataset_card(
        project_name=project.name, criterion=project.criterion, params=params.as_dict(),
        counts=writer.counts, data_hash=data_hash, conversational=conversational,
        judged=model_win_rates(project, exclude_labelers=excluded),
    )
    (directory / "README.md").write_text(card, encoding="utf-8")
    exporters.write_manifest(directory, counts=writer.counts, data_hash=data_hash,
                             params=params.as_dict(), digests=writer.digests)
    return writer.counts.__dict__, data_hash


def export_write_prompts(writer: exporters.ExportWriter, project: Project, params: ExportParams,
                         excluded: set[int], weights: dict[int | None, float],
                         ids: "IdRange" = (None, None), on_progress=None) -> None:
    """Merge and write the prompts whose ids are in `ids`, in id order (all: the default)."""
    for prompt, all_rankings in reported(prompts_with_rankings(project, params, ids),
                                         on_progress):
        rankings = [r for r in all_rankings if r.labeler_id not in excluded]
        labeled = [LabeledRanking(prompt.prompt_id, r.labeler, r.tiers,
                                  weights.get(r.labeler_id, 1.0)) for r in rankings]
        verdicts, consensus = merge_prompt(labeled, min_votes=params.min_votes,
                                           min_agreement=params.min_agreement,
                                           tie_policy=params.tie_policy)
        writer.add_prompt(prompt, rankings, verdicts, consensus)


def reported(items: Iterable[T], progress: Callable[[int], None] | None) -> Iterator[T]:
    """`items`, calling `progress(done)` after every PROGRESS_EVERY of them are handled (an
    export's prompts: export_progress counts them on the export's row)."""
    for done, item in enumerate(items, 1):
        yield item
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done)


def export_progress(export_id: int):
    """What an export calls every PROGRESS_EVERY prompts: the export's count of prompts done
    goes up by that many. An addition, not the writer's own count, since the parts of an
    export built in several processes report side by side."""
    def progress(done: int) -> None:
        # SQLite: the export streams its rows on this connection, so the connection's read
        # snapshot is older than anything committed since (a labeler's ranking, another
        # part's progress, the heartbeat). A write there would upgrade that snapshot, which
        # SQLite refuses at once ("database is locked", SQLITE_BUSY_SNAPSHOT), failing the
        # export. A connection of its own waits for the write lock like any writer.
        own = _reads_hold_a_snapshot()
        writer = connections.create_connection(DEFAULT_DB_ALIAS) if own else connection
        try:
            with writer.cursor() as cursor:
                cursor.execute(f"UPDATE {writer.ops.quote_name(Export._meta.db_table)} "
                               "SET prompts_done = prompts_done + %s WHERE id = %s",
                               [PROGRESS_EVERY, export_id])
        finally:
            if own:
                writer.close()
    return progress


def _reads_hold_a_snapshot() -> bool:
    """Whether a write on this connection, while the export's streaming reads are open,
    would have to upgrade their snapshot: SQLite on a file, outside a transaction (inside
    one, or in memory, nothing else can have written in between)."""
    return (connection.vendor == "sqlite" and not connection.in_atomic_block
            and not connection.is_in_memory_db())


IdRange = tuple[int | None, int | None]  # prompt ids from (inclusive), to (exclusive); None: open


def prompts_with_rankings(
    project: Project, params: ExportParams, ids: IdRange = (None, None)
) -> Iterator[tuple[PromptForExport, list[RankingForExport]]]:
    """Stream the project's prompts in id order, each with its completions and rankings;
    retired prompts are left out. `ids`: only the prompts in that range of ids.

    Three ordered queries read side by side (a merge join), so only one prompt is in memory.
    """
    prompts = _raw_rows(_in_range(Prompt.objects.filter(project=project, retired_at__isnull=True),
                                  "id", ids)
                        .order_by("id").values_list("id", "external_id", "text", "messages"))
    completions = _peekable(_raw_rows(
        _in_range(Completion.objects.filter(prompt__project=project), "prompt_id", ids)
        .order_by("prompt_id", "position").values_list("prompt_id", "id", "text")
    ))
    sources = ["labeler", "imported"] if params.include_imported else ["labeler"]
    rankings = _peekable(_raw_rows(
        _in_range(Ranking.objects.filter(prompt__project=project, source__in=sources),
                  "prompt_id", ids)
        .order_by("prompt_id", "source", "labeler_id")
        .values_list("prompt_id", "labeler_id", "source", "tiers", "revision", "flags",
                     "time_spent_ms", "displayed_order", "scores")
    ))
    pseudonyms: dict[int | None, str] = {}  # an HMAC per labeler, not per ranking
    for prompt_id, external_id, text, messages in prompts:
        texts = {row[1]: row[2] for row in completions.take_while(prompt_id)}
        ranked = []
        for (_, labeler_id, source, tiers, revision, flags, time_spent_ms, displayed_order,
             scores) in rankings.take_while(prompt_id):
            pseudonym = pseudonyms.get(labeler_id)
            if pseudonym is None:
                pseudonym = pseudonyms[labeler_id] = labeler_pseudonym(project.id, labeler_id)
            ranked.append(RankingForExport(
                labeler_id=labeler_id, labeler=pseudonym, source=source,
                tiers=_json(tiers), revision=revision, flags=_json(flags),
                time_spent_ms=time_spent_ms, displayed_order=_json(displayed_order),
                scores=_json(scores),
            ))
        yield PromptForExport(prompt_id, external_id, text, _json(messages), texts), ranked


def _in_range(query: QuerySet, column: str, ids: IdRange) -> QuerySet:
    low, high = ids
    if low is not None:
        query = query.filter(**{f"{column}__gte": low})
    if high is not None:
        query = query.filter(**{f"{column}__lt": high})
    return query


def _raw_rows(query: QuerySet) -> Iterator[tuple]:
    """A values_list query's rows as the database driver returns them, fetched in chunks
    (a server-side cursor on PostgreSQL), as .iterator() does but without Django's per-value
    converters: JSON columns stay text, for _json. Only for columns whose other values the
    driver already returns as Django would (ids, integers, text)."""
    compiler = query.query.get_compiler(using=query.db)
    for chunk in compiler.execute_sql(MULTI, chunked_fetch=True, chunk_size=STREAM_CHUNK):
        yield from chunk


def _json(text: str | None):
    """A JSON column's text decoded, as JSONField.from_db_value does (None stays None);
    the empty object, most rankings' flags, without the parser."""
    if text is None:
        return None
    return {} if text == "{}" else json.loads(text)


class _peekable:
    """Rows of a query ordered by prompt id, taken one prompt at a time."""

    def __init__(self, rows: Iterator[tuple]):
        self._rows = rows
        self._next = next(rows, None)

    def take_while(self, prompt_id: int) -> Iterator[tuple]:
        while self._next is not None and self._next[0] < prompt_id:
            self._next = next(self._rows, None)  # rows of prompts not exported
        while self._next is not None and self._next[0] == prompt_id:
            yield self._next
            self._next = next(self._rows, None)


MIN_WEIGHT = 0.05


def labeler_reliability(project: Project, params: ExportParams,
                        excluded: set[int]) -> dict[int | None, float]:
    """Each labeler's weight: their mean agreement with the consensus of the others.

    A first streaming pass over the project, prompt by prompt, so memory stays flat.
    """
    totals: dict[str, list[float]] = {}
    for prompt, rankings in prompts_with_rankings(project, params):
        group = [LabeledRanking(prompt.prompt_id, str(r.labeler_id), r.tiers) for r in rankings
                 if r.labeler_id is not None and r.labeler_id not in excluded]
        for labeler, summary in leave_one_out_agreement(group, params.tie_policy).items():
            total = totals.setdefault(labeler, [0.0, 0])
            total[0] += summary.mean_agreement * summary.prompts
            total[1] += summary.prompts
    return {int(labeler): max(MIN_WEIGHT, score / count)
            for labeler, (score, count) in totals.items() if count}


def labeler_pseudonym(project_id: int, labeler_id: int | None) -> str:
    """A stable pseudonym per project: exports never carry user names or ids."""
    if labeler_id is None:
        return "imported"
    key = settings.SECRET_KEY.encode()
    digest = hmac.new(key, f"{project_id}:{labeler_id}".encode(), "sha256").hexdigest()
    return f"labeler-{digest[:12]}"


def _zip(directory: Path) -> Path:
    archive = directory.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as out:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                out.write(path, Path(directory.name) / path.relative_to(directory))
    return archive


def export_file_path(export: Export, name: str | None) -> Path:
    """The zip of a finished export, or one file of it by name; NotFound if none."""
    if export.status != Export.Status.SUCCEEDED:
        raise NotFound(f"export v{export.version} is {export.status}, not ready")
    folder = settings.VAR_DIR / export.directory
    if name is None:
        return folder.with_suffix(".zip")
    allowed = {*exporters.DATA_FILES, "README.md", exporters.MANIFEST, "train.parquet",
               "test.parquet", "demonstrations.jsonl", SCORES_FILE}
    if name not in allowed or not (folder / name).is_file():
        raise NotFound(f"no file {name!r} in this export; files: {', '.join(sorted(allowed))}")
    return folder / name
