"""Prompt imports: a whole file in one transaction, or the valid lines with a report.

An upload is only stored in the web request (prompts_import_upload); a worker imports it
(prompt_import_run) and keeps its status, progress and errors on the PromptImport row. The
command imports at once (prompts_import). Both read and write through _import_file, so a
file is refused, or imported, the same way.
"""

import gc
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from config.errors import Invalid, QuotaExceeded, reason_line

from .. import importers
from ..importers import PromptRow, RowError
from ..models import Completion, Project, Prompt, PromptImport, Ranking
from ..read_ahead import read_ahead
from . import bulk_insert, import_runs
from .duplicate_filter import DuplicateFilter, Unwritten, WrittenLines, duplicates_refused

IMPORT_BATCH_SIZE = 2000
# Past this many errors, a failing import stops reading: the file needs fixing anyway.
MAX_REPORTED_ERRORS = 1000


class ImportRejected(Invalid):
    """The file was not imported; nothing was written. `errors` say where and why."""

    def __init__(self, filename: str, errors: list[RowError], truncated: bool = False):
        self.filename = filename
        self.errors = errors
        self.truncated = truncated
        lines = [error.describe(filename) for error in errors[:20]]
        more = len(errors) - len(lines)
        if more > 0 or truncated:
            lines.append(f"... and {'more than ' if truncated else ''}{more} more errors")
        super().__init__(f"{filename}: nothing imported.\n" + "\n".join(lines),
                         extra={"errors": [error.as_dict() for error in errors]})
        self.message = f"{filename}: nothing imported."  # the answer's detail; rows in extra

    @property
    def summary(self) -> str:
        """One line: nothing imported, the first error, and how many more."""
        first = f" {self.errors[0].describe(self.filename)}" if self.errors else ""
        more = len(self.errors) - 1
        if more > 0 or self.truncated:
            first += f" (and {'more than ' if self.truncated else ''}{more} more errors)"
        return f"{self.message}{first}"


def prompts_import(
    *,
    project: Project,
    binary: IO[bytes],
    filename: str,
    file_format: str = "auto",
    skip_invalid: bool = False,
    imported_by: AbstractUser | None = None,
) -> PromptImport:
    """Import a prompt file into `project` now, in one transaction, or raise ImportRejected.

    Without `skip_invalid`, any invalid line rejects the whole file and nothing is written
    (not even the PromptImport). With it, valid lines are imported and every skipped line is
    kept on the PromptImport. A file-level error (size, header, format) rejects the file
    either way.
    """
    record = PromptImport(
        project=project, filename=filename[:255], file_format=file_format,
        skip_invalid=skip_invalid, imported_by=imported_by, status=PromptImport.Status.RUNNING,
        started_at=timezone.now(),
    )
    _import_file(record, binary, _Progress())
    return record


def prompts_import_upload(
    *,
    project: Project,
    upload: UploadedFile,
    file_format: str,
    skip_invalid: bool,
    imported_by: AbstractUser | None,
) -> PromptImport:
    """Store an uploaded file and queue its import on a worker; return the queued import.

    A file over the size limit is refused here, before it is stored (over HTTP, an upload
    that large never gets here: annotate.uploads stops it as it arrives). Past
    IMPORT_MAX_ACTIVE imports queued or running in the project, QuotaExceeded.
    """
    if upload.size > settings.IMPORT_MAX_BYTES:
        error = RowError(
            0,
            "file",
            f"is {upload.size:,} bytes; the limit is {settings.IMPORT_MAX_BYTES:,}",
            fatal=True,
        )
        raise ImportRejected(upload.name, [error])
    stored = import_runs.upload_store(upload)  # outside the transaction: a copy takes time
    try:
        with transaction.atomic():
            Project.objects.select_for_update().filter(id=project.id).first()
            if project.imports.filter(status__in=PromptImport.ACTIVE).count() >= (
                    settings.IMPORT_MAX_ACTIVE):
                raise QuotaExceeded(
                    f"This project already has {settings.IMPORT_MAX_ACTIVE} imports queued or "
                    "running; wait for one to finish.")
            record = PromptImport.objects.create(
                project=project, filename=upload.name[:255], file_format=file_format,
                skip_invalid=skip_invalid, imported_by=imported_by, upload=stored)
            transaction.on_commit(lambda: import_runs.prompt_import_dispatch(record.id))
    except BaseException:
        import_runs.upload_remove_file(stored)
        raise
    return record


def prompt_import_run(import_id: int) -> None:
    """Import a queued upload, on a worker. A second delivery finds it claimed and returns,
    unless its importer is gone: that one's transaction died with it, so the file is imported
    again from its first line. The row ends succeeded, or failed with its errors and nothing
    written; either way its stored upload is removed."""
    record = import_runs.prompt_import_claim(import_id)
    if record is None:
        return
    mine = PromptImport.objects.filter(id=import_id, status=PromptImport.Status.RUNNING,
                                       worker=record.worker)
    progress = _Progress()
    try:
        with import_runs.ImportHeartbeat(record, lambda: {"lines_read": progress.lines}):
            with _open_upload(record) as binary:
                _import_file(record, binary, progress)
    except _TakenOver:
        return  # another worker took it over meanwhile: this transaction was rolled back
    except ImportRejected as rejected:
        mine.update(status=PromptImport.Status.FAILED, error=rejected.summary,
                    errors=rejected.extra["errors"], lines_read=progress.lines,
                    file_format=record.file_format, finished_at=timezone.now())
    except Exception as exc:
        # One line for the admins; the traceback goes to the worker's log with the raise.
        mine.update(status=PromptImport.Status.FAILED, lines_read=progress.lines,
                    error=f"{record.filename}: nothing imported: {reason_line(exc)}",
                    finished_at=timezone.now())
        import_runs.upload_remove(record)
        raise
    import_runs.upload_remove(record)


def _open_upload(record: PromptImport) -> IO[bytes]:
    try:
        return import_runs.upload_path(record).open("rb")
    except OSError:
        raise ImportRejected(record.filename, [RowError(
            0, "file", "is no longer on the server (the web server and the workers must share "
                       "VAR_DIR); upload it again", True)]) from None


class _Progress:
    """The last line read, for the heartbeat to show."""

    lines = 0


class _TakenOver(Exception):
    """The import's row went to another worker (this one was thought gone): roll back."""


def _import_file(record: PromptImport, binary: IO[bytes], progress: _Progress) -> None:
    """Write the file's prompts under `record` in one transaction, or raise ImportRejected.

    A new `record` is created in that transaction. Its end (counts, skipped lines,
    succeeded) is written there too, and only while the row is still this runner's.
    """
    filename = record.filename
    try:
        stream = importers.open_maybe_gzip(binary, max_bytes=settings.IMPORT_MAX_BYTES)
        if record.file_format == "auto":  # peeking decompresses: a corrupt gzip fails here
            stream = importers.peekable(stream)
            guess = importers.guess_format(filename, stream.peek(importers.DETECT_BYTES))
            record.file_format = guess.file_format
            if guess.error:
                raise ImportRejected(filename, [guess.error])
        rows = importers.parse_prompts(
            stream,
            file_format=record.file_format,
            completions_per_prompt=record.project.completions_per_prompt,
            max_bytes=settings.IMPORT_MAX_BYTES,
            max_line_bytes=settings.IMPORT_MAX_LINE_BYTES,
        )
        with _heap_frozen(), transaction.atomic(), _parsed_ahead(rows) as rows:
            if record.pk is None:
                record.save()
            rows = _gold_refused_where_none_is_taken(rows, record.project)
            errors, truncated = _import_rows(record, _counted(rows, progress),
                                             stop_on_error=not record.skip_invalid)
            if errors and (not record.skip_invalid or any(error.fatal for error in errors)):
                raise ImportRejected(filename, errors, truncated)
            if record.prompt_count == 0:
                no_prompts = RowError(0, "file", "has no prompts (it is empty, or only a header)")
                raise ImportRejected(filename, errors or [no_prompts])
            record.skipped = [error.as_dict() for error in errors]
            _finish(record, lines_read=progress.lines)
    except importers.FileTooLarge:
        limit = f"{settings.IMPORT_MAX_BYTES:,}"
        raise ImportRejected(filename, [RowError(
            0, "file", f"expands past the limit of {limit} bytes when decompressed (a "
                       "gzip file is measured by what it holds)", True)]) from None
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt gzip stream
        raise ImportRejected(
            filename, [RowError(0, "file", f"cannot be read: {exc}", True)]
        ) from exc
    except IntegrityError as exc:  # e.g. another import added the same id meanwhile
        raise ImportRejected(
            filename, [RowError(0, "file", f"conflicts with stored data: {exc}")]
        ) from exc
    if record.prompt_count >= ANALYZE_AFTER_PROMPTS:
        _refresh_planner_statistics(rankings=record.ranking_count > 0)


@contextmanager
def _parsed_ahead(rows: Iterator[PromptRow | RowError],
                  ) -> Iterator[Iterator[PromptRow | RowError]]:
    """On PostgreSQL, the file is parsed while the database stores and checks the batch
    before (the parser's thread runs in the import's waits only: annotate/read_ahead.py).
    The checks are the foreign keys of every row, about 40% of the database's time for an
    import; deferred, they ran at the commit, after the whole file was parsed, so here they
    run at each statement's end. On SQLite the database works in this process, under the
    same interpreter lock as the parser: there is nothing to overlap."""
    if connection.vendor != "postgresql":
        yield rows
        return
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with read_ahead(rows, limit=IMPORT_BATCH_SIZE) as parsed:
        yield parsed
    # As Django declares them (every foreign key INITIALLY DEFERRED), for the rest of an
    # enclosing transaction. After an error, the rollback (to a savepoint) restores it.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Keep the objects alive before the import (Django, the app's modules) out of the cyclic
    garbage collector's full passes while it runs: a batch's rows survive long enough to
    reach the oldest generation, so every few batches a full pass walked the whole heap,
    0.15 s of CPU on 10,000 prompts (0.60 -> 0.45 s on PostgreSQL). New objects are
    collected as before; the frozen ones are handed back at the end. A process that froze
    its heap itself (e.g. before forking workers) is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _counted(rows: Iterable[PromptRow | RowError], progress: _Progress,
             ) -> Iterator[PromptRow | RowError]:
    for row in rows:
        progress.lines = max(progress.lines, row.line)
        yield row


def _finish(record: PromptImport, **fields) -> None:
    """Write the import's success, in its transaction, if the row is still ours."""
    record.status, record.finished_at = PromptImport.Status.SUCCEEDED, timezone.now()
    for name, value in fields.items():
        setattr(record, name, value)
    final = ("status", "finished_at", "file_format", "lines_read", "prompt_count",
             "completion_count", "ranking_count", "skipped")
    still_ours = PromptImport.objects.filter(
        id=record.id, status=PromptImport.Status.RUNNING, worker=record.worker)
    if not still_ours.update(**{name: getattr(record, name) for name in final}):
        raise _TakenOver


ANALYZE_AFTER_PROMPTS = 10_000


def _gold_refused_where_none_is_taken(
        rows: Iterable[PromptRow | RowError], project: Project) -> Iterable[PromptRow | RowError]:
    """A demonstrate project takes no gold (as marking a stored prompt is refused): a line
    that marks one is an error at its line, not a gold prompt no labeler could be scored on."""
    if project.annotation_mode != Project.Mode.DEMONSTRATE:
        return rows
    return (RowError(row.line, "gold", "a demonstrate project takes no gold prompts: its "
                                       "labelers write responses, which no reference ranking "
                                       "can score")
            if isinstance(row, PromptRow) and row.gold_tiers is not None else row
            for row in rows)


# The columns whose statistics the planner uses on these tables: those the queries filter,
# join, group or sort on (next-prompt, the export, the counts, the duplicate lookups).
PLANNER_COLUMNS = {
    Prompt: ("id", "project_id", "source_import_id", "external_id", "content_hash",
             "ranking_count", "extra_rankings", "gold_tiers", "retired_at"),
    Completion: ("id", "prompt_id", "position"),
    Ranking: ("id", "prompt_id", "labeler_id", "source", "idempotency_key", "created_at"),
}


def _refresh_planner_statistics(*, rankings: bool) -> None:
    """After a large import, refresh PostgreSQL's statistics now rather than at autovacuum's
    next pass: an export planned on the old ones (a few rows) can take minutes, not seconds.
    The rankings table only if the import wrote to it: an unchanged table's are current.

    Only the columns the planner uses (PLANNER_COLUMNS): the texts, messages, metadata,
    tiers and parameters are only read out, never filtered on (the prompt browser's
    substring search cannot use their statistics), and they are the wide values, most of
    ANALYZE's work (80 -> 38 ms on 10,000 prompts). The table's row count is refreshed
    whatever the columns; the others keep what autovacuum last found."""
    if connection.vendor == "postgresql":
        models = [Prompt, Completion] + ([Ranking] if rankings else [])
        tables = ", ".join(f"{model._meta.db_table} ({', '.join(PLANNER_COLUMNS[model])})"
                           for model in models)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {tables}")


def _import_rows(
    record: PromptImport, rows: Iterable[PromptRow | RowError], *, stop_on_error: bool
) -> tuple[list[RowError], bool]:
    """Write valid rows in batches; return the errors met and whether reading stopped early.

    The file is read a batch at a time (IMPORT_BATCH_SIZE prompts and the errors between
    them), looked up against the database in one query for its ids and content, and written
    in one statement per table: memory holds a batch, not the file.
    """
    written = WrittenLines()
    known = DuplicateFilter(record.project_id)
    unwritten = Unwritten()
    errors: list[RowError] = []
    chunk: list[PromptRow | RowError] = []
    prompts_in_chunk = 0
    for row in rows:
        chunk.append(row)
        prompts_in_chunk += isinstance(row, PromptRow)
        if prompts_in_chunk >= IMPORT_BATCH_SIZE or (isinstance(row, RowError) and row.fatal):
            if _import_chunk(record, chunk, written, known, unwritten, errors, stop_on_error):
                return errors, not errors[-1].fatal
            chunk, prompts_in_chunk = [], 0
    if chunk and _import_chunk(record, chunk, written, known, unwritten, errors, stop_on_error):
        return errors, not errors[-1].fatal
    return errors, False


def _import_chunk(record: PromptImport, chunk: list[PromptRow | RowError],
                  written: WrittenLines, known: DuplicateFilter, unwritten: Unwritten,
                  errors: list[RowError], stop_on_error: bool) -> bool:
    """Check a chunk's rows in file order and write the valid ones, unless an error already
    rejects the file. True when reading must stop (a fatal error, or too many errors)."""
    prompts = [row for row in chunk if isinstance(row, PromptRow)]
    refusals = duplicates_refused(record, prompts, written, known, unwritten)
    fresh: list[tuple[PromptRow, str]] = []
    for row in chunk:
        if isinstance(row, PromptRow):
            key, row = next(refusals)
            if isinstance(row, PromptRow):
                fresh.append((row, key))
                continue
        errors.append(row)
        if row.fatal or len(errors) >= MAX_REPORTED_ERRORS:
            return True
    if stop_on_error and errors:
        # The file is refused: its rows are no longer written, so the content of those
        # still to come is kept here to find copies among them (a refused file only).
        unwritten.keys.update((key, f"line {row.line}") for row, key in fresh)
    elif fresh:
        ids = bulk_insert.ids_reserve(Prompt, len(fresh))
        _write_batch(record, [(row, key, prompt_id) for (row, key), prompt_id in zip(
            fresh, ids, strict=True)])
        written.add(ids, [row for row, _ in fresh])
        known.add([row.external_id for row, _ in fresh if row.external_id],
                  [key for _, key in fresh])
        for row, _ in fresh:  # written: the lookup finds their ids from now on
            unwritten.ids.pop(row.external_id, None)
    return False


PROMPT_COLUMNS = ("id", "project_id", "source_import_id", "external_id", "text", "messages",
                  "metadata", "content_hash", "gold_tiers", "gold_mode")
COMPLETION_COLUMNS = ("id", "prompt_id", "position", "text", "model_name", "generation_params",
                      "external_id")
RANKING_COLUMNS = ("prompt_id", "source", "tiers")


def _write_batch(record: PromptImport, rows: list[tuple[PromptRow, str, int]]) -> None:
    """Write the prompts (with their content keys and reserved ids), their completions and
    imported rankings, one statement a table; count them on `record`. Where tiers (gold, an
    imported ranking) name completions, their ids are reserved first, so they are known
    without reading them back; otherwise the table numbers them."""
    ids_of = _completion_ids(rows)
    bulk_insert.rows_insert(Prompt, PROMPT_COLUMNS, (
        (prompt_id, record.project_id, record.pk, row.external_id, row.text, row.messages,
         row.metadata, key, _tiers_of_ids(row.gold_tiers, ids), row.gold_mode)
        for (row, key, prompt_id), ids in zip(rows, ids_of, strict=True)))
    completions = (
        (completion_id, prompt_id, position, completion.text, completion.model_name,
         completion.generation_params, completion.external_id)
        for (row, _, prompt_id), ids in zip(rows, ids_of, strict=True)
        for position, (completion_id, completion) in enumerate(zip(ids, row.completions,
                                                                   strict=True)))
    if ids_of[0][0] is not None:
        bulk_insert.rows_insert(Completion, COMPLETION_COLUMNS, completions)
    else:  # no id reserved: the table numbers them
        bulk_insert.rows_insert(Completion, COMPLETION_COLUMNS[1:],
                                (values[1:] for values in completions))
    rankings = [(prompt_id, Ranking.Source.IMPORTED.value, _tiers_of_ids(row.reference_tiers, ids))
                for (row, _, prompt_id), ids in zip(rows, ids_of, strict=True)
                if row.reference_tiers is not None]
    if rankings:  # each passes the tiers trigger of migration 0002, as any ranking does
        bulk_insert.rows_insert(Ranking, RANKING_COLUMNS, rankings)
    record.prompt_count += len(rows)
    record.completion_count += sum(len(ids) for ids in ids_of)
    record.ranking_count += len(rankings)


def _completion_ids(rows: list[tuple[PromptRow, str, int]]) -> list[list[int | None]]:
    """Each row's completion ids, reserved, if any row's tiers name them; else Nones."""
    if not any(row.gold_tiers or row.reference_tiers for row, _, _ in rows):
        return [[None] * len(row.completions) for row, _, _ in rows]
    ids = iter(bulk_insert.ids_reserve(Completion, sum(len(row.completions)
                                                       for row, _, _ in rows)))
    return [[next(ids) for _ in row.completions] for row, _, _ in rows]


def _tiers_of_ids(position_tiers: list[list[int]] | None,
                  completion_ids: list[int]) -> list[list[int]] | None:
    if position_tiers is None:
        return None
    return [[completion_ids[position] for position in tier] for tier in position_tiers]
