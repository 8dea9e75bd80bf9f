"""An export built in parts (issue 19: child processes each writing a range of prompts) has
the bytes, manifest and content hash of one built in one process."""

import io
import json
import random
import shutil
import time

import pytest
from django.db import connection

from annotate import exporters, services
from annotate.models import Export
from annotate.services import export_parts
from tests.annotate.test_export_bytes import (
    AWKWARD,
    assert_export_matches_reference,
    build,
    rank,
)
from tests.factories import jsonl_bytes, prompt_record

# The suite's SQLite test database is in the run's memory (tests/settings.py): a forked child
# reads a copy of it, which the export never relies on (it builds in one process there).
IN_MEMORY = connection.vendor == "sqlite"


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    settings.EXPORT_WORKERS_MIN_RANKINGS = 0


@pytest.fixture
def children_see_the_rows(monkeypatch):
    """On PostgreSQL a committed row is there for any process; a forked child of SQLite in
    memory has its copy of the database."""
    if IN_MEMORY:
        monkeypatch.setattr(export_parts, "_children_see_the_rows", lambda: True)


@pytest.fixture
def mixed_project(project, make_user):
    """30 prompts (one retired), awkward texts, ties, flags, copies of one prompt (one split
    for both), two gold prompts that one careless labeler gets wrong, 4 labelers."""
    records = [prompt_record(i, prompt=f"{AWKWARD[i % 5]} #{i % 27}",
                             completions=[f"{AWKWARD[(i + j) % 5]}{j}" for j in range(4)])
               for i in range(30)]
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes(records)))
    labelers = [make_user(name) for name in ("ann", "ben", "cat", "dan")]
    prompts = list(project.prompts.order_by("id"))
    for prompt in prompts[:2]:
        ids = list(prompt.completions.order_by("position").values_list("id", flat=True))
        prompt.gold_tiers = [[ids[0]], [ids[1]], [ids[2]], [ids[3]]]
        prompt.gold_mode = "ranking"
        prompt.save(update_fields=["gold_tiers", "gold_mode"])
    rng = random.Random(7)
    for index, prompt in enumerate(prompts):
        for labeler in labelers[:3 + index % 2]:
            order = list(range(4)) if index < 2 and labeler.username != "dan" else \
                rng.sample(range(4), 4)
            if index < 2 and labeler.username == "dan":
                order = [3, 2, 1, 0]
            tiers = [[order[0], order[1]], [order[2]], [order[3]]] if rng.random() < 0.4 else \
                [[p] for p in order]
            rank(prompt, labeler, tiers, flags={"x": ["off-topic"]} if rng.random() < 0.3 else {},
                 time_spent_ms=rng.choice([None, 1234]), revision=rng.choice([1, 2]))
    services.prompt_retire(project=project, prompt_id=prompts[11].id)
    return project


class InProcessPart:
    """A part built in this process when the parent waits for it: the merge of parts, on a
    database a child could not open (SQLite in memory, a test's transaction)."""

    def __init__(self, number, ids, folder):
        self.number, self.ids, self.folder, self.job = number, ids, folder, None

    def send(self, job):
        self.job = {**job, "ids": list(self.ids), "folder": str(self.folder)}

    def wait(self):
        result = export_parts.export_part_build(self.job)
        return self.folder, result["counts"], result["keys"]

    def stop(self):
        shutil.rmtree(self.folder, ignore_errors=True)


WITH_PARQUET = ("trl-jsonl", "parquet")  # read back from the appended JSONL
PARAMS = [
    {"min_votes": 2, "min_agreement": 0.66, "test_fraction": 0.3, "seed": 2},
    {"min_votes": 1, "min_agreement": 0.5, "tie_policy": "abstain", "test_fraction": 0.5,
     "exclude_flagged": True, "weight_by_reliability": True},
]


def built_in(workers: int, project, settings, **params) -> Export:
    settings.EXPORT_WORKERS = workers
    return build(project, **params)


def assert_same_export(one: Export, other: Export) -> None:
    assert one.content_hash == other.content_hash and one.counts == other.counts
    first = services.export_file_path(one, None).with_suffix("")
    second = services.export_file_path(other, None).with_suffix("")
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second).as_posix()
                           for p in second.rglob("*") if p.is_file())
    assert not [name for name in names if ".part-" in name]
    for name in names:  # the card and the manifest too: nothing in them names the build
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_ranges_are_contiguous_and_cover_every_prompt(mixed_project):
    ranges = export_parts.id_ranges(mixed_project, 3)
    assert len(ranges) == 3 and ranges[0][0] is None and ranges[-1][1] is None
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert export_parts.id_ranges(mixed_project, 1) == [(None, None)]


def test_a_transaction_or_a_small_project_builds_in_one_process(mixed_project, settings):
    settings.EXPORT_WORKERS = 2
    params = services.ExportParams()
    assert export_parts.export_workers(mixed_project, params) == 1  # the test's transaction
    settings.EXPORT_WORKERS_MIN_RANKINGS = 10_000
    assert export_parts.export_workers(mixed_project, params) == 1


@pytest.mark.parametrize("workers", [2, 3, 7])
@pytest.mark.parametrize("params", PARAMS)
def test_parts_merged_in_process_give_the_same_bytes(mixed_project, settings, tmp_path,
                                                     monkeypatch, workers, params):
    single = built_in(1, mixed_project, settings, **params)
    monkeypatch.setattr(export_parts, "_children_see_the_rows", lambda: True)
    monkeypatch.setattr(export_parts, "Part", InProcessPart)
    parted = built_in(workers, mixed_project, settings, **params)
    assert parted.status == "succeeded"
    assert single.counts["prompts_in_both"] == 0 and single.counts["pairs"]["test"] > 0
    assert_same_export(single, parted)
    if not params.get("weight_by_reliability"):
        assert_export_matches_reference(parted, mixed_project, tmp_path)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("params", PARAMS)
def test_child_processes_write_the_same_bytes(mixed_project, settings, children_see_the_rows,
                                              params):
    settings.EXPORT_WORKERS = 3
    assert export_parts.export_workers(mixed_project, services.ExportParams()) == 3
    settings.EXPORT_WORKERS_MIN_RANKINGS = 10_000
    assert export_parts.export_workers(mixed_project, services.ExportParams()) == 1
    settings.EXPORT_WORKERS_MIN_RANKINGS = 0
    single = built_in(1, mixed_project, settings, formats=WITH_PARQUET, **params)
    parted = built_in(3, mixed_project, settings, formats=WITH_PARQUET, **params)
    assert parted.status == "succeeded"
    assert_same_export(single, parted)
    manifest = json.loads((services.export_file_path(parted, exporters.MANIFEST)).read_text())
    assert manifest["content_hash"] == single.content_hash


@pytest.mark.django_db(transaction=True)
def test_a_failing_child_fails_the_export_and_leaves_no_files(mixed_project, settings,
                                                              children_see_the_rows,
                                                              monkeypatch):
    """The child is real and fails (no such export in the database)."""
    real_job = export_parts.export_part_job
    monkeypatch.setattr("annotate.services.exports.export_part_job",
                        lambda *a, **k: {**real_job(*a, **k), "export_id": -1})
    settings.EXPORT_WORKERS = 2
    with pytest.raises(RuntimeError, match=r"export part 1 \(prompt ids \d+ to end\) failed "
                                           r"with exit code 1: .*DoesNotExist"):
        build(mixed_project, min_votes=1)
    export = Export.objects.get(project=mixed_project)
    assert export.status == "failed" and export.error.startswith(
        "Export failed: RuntimeError: export part 1 (prompt ids")
    folder = settings.VAR_DIR / "exports" / mixed_project.slug
    assert not folder.exists() or not any(folder.rglob("*"))  # nor .partial, nor a part


@pytest.mark.django_db(transaction=True)
def test_a_child_that_hangs_fails_the_export_at_the_deadline(mixed_project, settings,
                                                             children_see_the_rows,
                                                             monkeypatch):
    """A child stuck after the fork (say, on a lock another thread held) is killed."""
    monkeypatch.setattr(export_parts, "export_part_build", lambda job: time.sleep(60))
    settings.EXPORT_WORKERS = 2
    settings.EXPORT_PART_TIMEOUT_SECONDS = 1
    with pytest.raises(RuntimeError, match=r"export part 1 \(prompt ids \d+ to end\) did not "
                                           r"finish in 1 s"):
        build(mixed_project, min_votes=1)
    export = Export.objects.get(project=mixed_project)
    assert export.status == "failed"
    folder = settings.VAR_DIR / "exports" / mixed_project.slug
    assert not folder.exists() or not any(folder.rglob("*"))


def test_every_part_adds_its_prompts_to_the_exports_progress(mixed_project, settings,
                                                             monkeypatch):
    """Parts in other processes report side by side: each adds what it wrote, so the count
    of prompts done covers every range, not only the parent's."""
    monkeypatch.setattr("annotate.services.exports.PROGRESS_EVERY", 1)
    export = build(mixed_project, min_votes=1)
    Export.objects.filter(id=export.id).update(prompts_done=0)
    low, high = export_parts.id_ranges(mixed_project, 2)
    folders = []
    for number, ids in enumerate((low, high)):
        part = InProcessPart(number, ids, settings.VAR_DIR / f"progress-{number}")
        part.send(export_parts.export_part_job(export, services.ExportParams(min_votes=1),
                                               conversational=False, excluded=set(),
                                               weights={}))
        folders.append(part.wait())
        part.stop()
    export.refresh_from_db()
    assert export.prompts_done == export.prompts_total == sum(
        counts["prompts"] for _, counts, _ in folders) > 0
