"""An export built in several processes: the prompts split into contiguous ranges of ids,
the first written by the exporting process, each other by a child process into files of its
own, appended in order once written (issue 19: the export is Python-bound, so a second core
halves its longest part).

The bytes stay those of one process: a prompt's lines depend on its own rows and on what the
parent settles once for the whole export (the parameters, the excluded labelers, the
reliability weights, the chat form); the counts add up and the split keys join.

Children are `python -m annotate.export_part` processes, not multiprocessing: a Celery
prefork worker's processes are daemonic and may not have multiprocessing children, and a
fork of a process holding database connections and a heartbeat thread is unsafe. A child
reads its job (JSON) on stdin, writes its files and result.json into its own folder under
the export's folder, and exits 0; anything else fails the export.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from ..models import Export, Prompt, Ranking

MIN_RANKINGS = 2000  # below this a child's start (about 0.3 CPU s) costs more than it saves
RESULT = "result.json"
ERRORS = "stderr.txt"


def export_workers(project, params) -> int:
    """How many processes build this export: EXPORT_WORKERS (default: 2, or 1 on one CPU),
    but 1 for a small project, and 1 where a child could not see the rows the parent sees
    (inside a transaction, or a database in this process's memory)."""
    workers = getattr(settings, "EXPORT_WORKERS", None)
    if workers is None:
        workers = int(os.environ.get("EXPORT_WORKERS", min(2, os.cpu_count() or 1)))
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
    """A child process building one range of an export into its own folder."""

    def __init__(self, number: int, ids: tuple[int | None, int | None], folder: Path):
        self.number, self.ids, self.folder = number, ids, folder
        folder.mkdir(parents=True)
        self._errors = (folder / ERRORS).open("wb")
        # Started before the job is known: the child's interpreter and Django start while
        # the parent settles the weights and writes its own range.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "annotate.export_part"], cwd=settings.BASE_DIR,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": getattr(
                settings, "EXPORT_PART_SETTINGS", settings.SETTINGS_MODULE)},
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._errors)

    def send(self, job: dict[str, Any]) -> None:
        data = json.dumps({**job, "ids": list(self.ids), "folder": str(self.folder)}).encode()
        try:
            self.process.stdin.write(data)
            self.process.stdin.close()
        except BrokenPipeError:
            pass  # it died starting: wait() says why

    def wait(self) -> tuple[Path, dict[str, Any], dict[str, list[str]]]:
        """The part's folder, counts and split keys, once it is written; RuntimeError, with
        the child's last error line, if it failed."""
        code = self.process.wait()
        self._errors.close()
        result = self.folder / RESULT
        if code != 0 or not result.is_file():
            lines = (self.folder / ERRORS).read_text(errors="replace").strip().splitlines()
            low, high = self.ids
            raise RuntimeError(
                f"export part {self.number} (prompt ids {low or 'start'} to {high or 'end'}) "
                f"failed with exit code {code}: {lines[-1] if lines else 'no error output'}")
        done = json.loads(result.read_text())
        return self.folder, done["counts"], done["keys"]

    def stop(self) -> None:
        """End the child if it still runs (the export failed elsewhere); drop its folder."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._errors.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def export_parts_start(export: Export, params, directory: Path) -> tuple[list, list[Part]]:
    """Split the export's prompts; start a child for every range but the first (the
    caller's). Returns the ranges and the children, to send() their job to."""
    ranges = id_ranges(export.project, export_workers(export.project, params))
    parts = [Part(number, ids, directory / f".part-{number}")
             for number, ids in enumerate(ranges[1:], 1)]
    return ranges, parts


def export_part_job(export: Export, params, *, conversational: bool, excluded: set[int],
                    weights: dict[int | None, float]) -> dict[str, Any]:
    """What a child needs besides its range: what the parent settled for the whole export,
    and the database the parent reads (a test run's own, where it differs from settings)."""
    return {"export_id": export.id, "params": params.as_dict(),
            "conversational": conversational, "excluded": sorted(excluded),
            "weights": [[labeler, weight] for labeler, weight in weights.items()],
            "database": connection.settings_dict["NAME"]}


def export_part_build(job: dict[str, Any]) -> dict[str, Any]:
    """A child's work: write its range's lines into its folder, as the parent's writer would;
    return (and save as result.json) its counts and split keys."""
    from .. import exporters
    from .exports import ExportParams, export_write_prompts

    export = Export.objects.select_related("project").get(id=job["export_id"])
    params = ExportParams(**{**job["params"], "formats": tuple(job["params"]["formats"])})
    folder = Path(job["folder"])
    writer = exporters.ExportWriter(folder, conversational=job["conversational"],
                                    test_fraction=params.test_fraction, seed=params.seed)
    try:
        export_write_prompts(writer, export.project, params, set(job["excluded"]),
                             {labeler: weight for labeler, weight in job["weights"]},
                             tuple(job["ids"]))
    finally:
        writer.close()
    result = {"counts": writer.counts.__dict__, "keys": writer.split_keys()}
    (folder / RESULT).write_text(json.dumps(result))
    return result
