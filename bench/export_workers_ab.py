"""Issue 19: exports of an existing bench dataset (bench/export_side_by_side.py builds it)
with EXPORT_WORKERS 1 and 2, alternating, in one warm process: wall time, the parent's CPU
(time.process_time), its children's (RUSAGE_CHILDREN) and the parent's wait for them.

    export DJANGO_SETTINGS_MODULE=config.settings LOG_LEVEL=WARNING \
        SECRET_KEY=bench-export-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
    VAR_DIR=bench/.scratch/export-sqlite-10000 .venv/bin/python bench/export_workers_ab.py 6
    VAR_DIR=bench/.scratch/export-postgres-10000 \
        DATABASE_URL=postgres://postgres@127.0.0.1:5432/rlhf_bench_export_10000 \
        .venv/bin/python bench/export_workers_ab.py 6
"""

import json
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from annotate import services  # noqa: E402
from annotate.models import Project  # noqa: E402
from annotate.services import export_parts  # noqa: E402

waits: list[float] = []
_wait = export_parts.Part.wait


def timed_wait(self):
    started = time.perf_counter()
    try:
        return _wait(self)
    finally:
        waits.append(time.perf_counter() - started)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_export(project, params, workers: int) -> tuple[dict, str]:
    settings.EXPORT_WORKERS = workers
    waits.clear()
    children, cpu, started = children_cpu(), time.process_time(), time.perf_counter()
    export = services.export_create(project=project, params=params, created_by=None,
                                    run_now=True)
    row = {"wall": time.perf_counter() - started, "parent_cpu": time.process_time() - cpu,
           "children_cpu": children_cpu() - children, "waiting": sum(waits)}
    folder = settings.VAR_DIR / export.directory
    shutil.rmtree(folder)
    folder.with_suffix(".zip").unlink()
    return row, export.content_hash


def main(repeat: int) -> None:
    export_parts.Part.wait = timed_wait
    project = Project.objects.get(slug="bench-labeling")
    params = services.ExportParams(formats=("trl-jsonl",))
    rows: dict[int, list[dict]] = {1: [], 2: []}
    hashes = set()
    for rep in range(repeat):
        for workers in (1, 2) if rep % 2 == 0 else (2, 1):
            row, content_hash = one_export(project, params, workers)
            rows[workers].append(row)
            hashes.add(content_hash)
    for workers, runs in rows.items():
        def median(key, runs=runs):
            return round(statistics.median(r[key] for r in runs), 3)

        print(json.dumps({
            "workers": workers, "wall": [round(r["wall"], 3) for r in runs],
            "wall_median": median("wall"), "parent_cpu_median": median("parent_cpu"),
            "children_cpu_median": median("children_cpu"),
            "total_cpu_median": round(statistics.median(
                r["parent_cpu"] + r["children_cpu"] for r in runs), 3),
            "waiting_for_children_median": median("waiting")}))
    print(f"content hashes: {len(hashes)} distinct; load average {os.getloadavg()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
