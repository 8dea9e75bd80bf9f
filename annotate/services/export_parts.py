"""An export built in several processes: the prompts split into contiguous ranges of ids,
the first written by the exporting process, each other by a child process into files of its
own, appended in order once written (issue 19: the export is Python-bound, so a second core
halves its longest part).

The bytes stay those of one process: a prompt's lines depend on its own rows and on what the
parent settles once for the whole export (the parameters, the excluded labelers, the
reliability weights, the chat form); the counts add up and the split keys join.

Children are forked (os.fork), not multiprocessing: a Celery prefork worker's processes are
daemonic and may not have multiprocessing children. Not a fresh interpreter either: starting
Django costs about 0.9 CPU s, more than the whole export of 10,000 rankings (measured:
bench/README.md). A fork starts with Django loaded and the job in memory; the parent closes
its database connections first, so the child opens its own (psycopg leaves an inherited
connection of another thread alone: it closes only connections of its own process). The
child writes its files and result.json into its own folder under the export's folder and
leaves with os._exit: 0, or 1 with its traceback in the folder, which fails the export.
"""

import json
import logging
import os
import shutil
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, connections

from ..models import Export, Prompt, Ranking

MIN_RANKINGS = 2000  # below this, the export takes well under 0.2 s in one process
logger = logging.getLogger(__name__)
RESULT = "result.json"
ERRORS = "stderr.txt"


def export_workers(project, params) -> int:
    """How many processes build this export: EXPORT_WORKERS (default: 2, or 1 on one CPU),
    but 1 for a small project, and 1 where a child could not see the rows the parent sees
    (inside a transaction, or a database in this process's memory)."""
    workers = settings.EXPORT_WORKERS
    if workers < 2 or not _children_see_the_rows():
        return 1
    sources = ["labeler", "imported"] if params.include_imported else ["labeler"]
    least = getattr(settings, "EXPORT_WORKERS_MIN_RANKINGS", MIN_RANKINGS)
    if Ranking.objects.filter(prompt__project=project, source__in=sources).count() < least:
        return 1
    return workers


def _children_see_the_rows() -> bool:
    in_memory = getattr(connection, "is_in_memory_db", lambda: False)()
    return not connection.in_atomic_block and not in_memory


def id_ranges(project, workers: int) -> list[tuple[int | None, int | None]]:
    """The project's exported prompts in `workers` contiguous ranges of ids, about equal in
    prompts: [(None, b1), (b1, b2), ..., (bn, None)], from inclusive, to exclusive."""
    if workers < 2:
        return [(None, None)]
    ids = list(Prompt.objects.filter(project=project, retired_at__isnull=True)
               .order_by("id").values_list("id", flat=True))
    bounds = sorted({ids[len(ids) * k // workers] for k in range(1, workers)} if ids else set())
    edges = [None, *bounds, None]
    return list(zip(edges, edges[1:], strict=False))


class Part:
    """A forked child building one range of an export into its own folder."""

    def __init__(self, number: int, ids: tuple[int | None, int | None], folder: Path):
        self.number, self.ids, self.folder = number, ids, folder
        self.pid: int | None = None

    def send(self, job: dict[str, Any]) -> None:
        """Fork the child, which builds its range from `job` and exits."""
        job = {**job, "ids": list(self.ids), "folder": str(self.folder)}
        self.folder.mkdir(parents=True)
        connections.close_all()  # a connection is not shared across a fork; reopened lazily
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                export_part_build(job)
                code = 0
            except BaseException:
                (self.folder / ERRORS).write_text(traceback.format_exc())
            finally:
                try:
                    connections.close_all()
                finally:
                    os._exit(code)  # no atexit, no finalizers of what the parent owns
        self.pid = pid
        low, high = self.ids
        logger.debug("export %s: part %s, prompt ids %s to %s, in process %s",
                     job["export_id"], self.number, low or "start", high or "end", pid)

    def wait(self) -> tuple[Path, dict[str, Any], dict[str, list[str]]]:
        """The part's folder, counts and split keys, once it is written; RuntimeError, with
        the child's last error line, if it failed."""
        low, high = self.ids
        timeout = settings.EXPORT_PART_TIMEOUT_SECONDS
        deadline = time.monotonic() + timeout
        while True:  # a child hung after the fork must fail the export, not hold it forever
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"export part {self.number} (prompt ids {low or 'start'} "
                                   f"to {high or 'end'}) did not finish in {timeout:g} s")
            time.sleep(0.01)
        self.pid = None
        code = os.waitstatus_to_exitcode(status)
        result = self.folder / RESULT
        if code != 0 or not result.is_file():
            errors = self.folder / ERRORS
            lines = errors.read_text(errors="replace").strip().splitlines() \
                if errors.is_file() else []
            raise RuntimeError(
                f"export part {self.number} (prompt ids {low or 'start'} to {high or 'end'}) "
                f"failed with exit code {code}: {lines[-1] if lines else 'no error output'}")
        done = json.loads(result.read_text())
        return self.folder, done["counts"], done["keys"]

    def stop(self) -> None:
        """End the child if it still runs (the export failed elsewhere); drop its folder."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        shutil.rmtree(self.folder, ignore_errors=True)


def export_parts_start(export: Export, params, directory: Path) -> tuple[list, list[Part]]:
    """Split the export's prompts; a Part for every range but the first (the caller's), to
    send() its job to once the parent has settled it. Returns the ranges and the parts."""
    ranges = id_ranges(export.project, export_workers(export.project, params))
    parts = [Part(number, ids, directory / f".part-{number}")
             for number, ids in enumerate(ranges[1:], 1)]
    return ranges, parts


def export_part_job(export: Export, params, *, conversational: bool, excluded: set[int],
                    weights: dict[int | None, float]) -> dict[str, Any]:
    """What a child needs besides its range: what the parent settled for the whole export."""
    return {"export_id": export.id, "params": params.as_dict(),
            "conversational": conversational, "excluded": sorted(excluded),
            "weights": [[labeler, weight] for labeler, weight in weights.items()]}


def export_part_build(job: dict[str, Any]) -> dict[str, Any]:
    """A child's work: write its range's lines into its folder, as the parent's writer would;
    return (and save as result.json) its counts and split keys."""
    from .. import exporters
    from .exports import ExportParams, export_progress, export_write_prompts

    export = Export.objects.select_related("project").get(id=job["export_id"])
    params = ExportParams(**{**job["params"], "formats": tuple(job["params"]["formats"])})
    folder = Path(job["folder"])
    writer = exporters.ExportWriter(folder, conversational=job["conversational"],
                                    test_fraction=params.test_fraction, seed=params.seed)
    try:
        export_write_prompts(writer, export.project, params, set(job["excluded"]),
                             {labeler: weight for labeler, weight in job["weights"]},
                             tuple(job["ids"]), export_progress(export.id))
    finally:
        writer.close()
    result = {"counts": writer.counts.__dict__, "keys": writer.split_keys()}
    (folder / RESULT).write_text(json.dumps(result))
    return result
