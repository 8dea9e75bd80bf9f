"""Imports written in batches by annotate/services/bulk_insert.py: across batch boundaries
they import exactly what the file holds, or nothing, as one transaction always did.

Run on SQLite and on PostgreSQL (DATABASE_URL): the writers have a branch for each."""

import io
import json

import pytest
from django.db import IntegrityError, connection, transaction

from annotate import services
from annotate.content import content_key
from annotate.models import Completion, Prompt, PromptImport, Ranking
from annotate.services import bulk_insert
from annotate.services import imports as import_services
from tests.factories import hh_record, jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db

PROMPTS = 2_501  # three batches of 1,000: full, full, and one of 501


@pytest.fixture
def batches(monkeypatch):
    """Batches of 1,000 prompts; the list of the sizes written."""
    monkeypatch.setattr(import_services, "IMPORT_BATCH_SIZE", 1_000)
    sizes = []
    write_batch = import_services._write_batch

    def counting_write_batch(record, rows):
        sizes.append(len(rows))
        write_batch(record, rows)

    monkeypatch.setattr(import_services, "_write_batch", counting_write_batch)
    return sizes


def import_records(project, records, **options):
    return services.prompts_import(project=project, binary=io.BytesIO(jsonl_bytes(records)),
                                   filename="many.jsonl", **options)


def without_id(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "id"}


def nothing_written() -> bool:
    return not (Prompt.objects.exists() or Completion.objects.exists()
                or Ranking.objects.exists() or PromptImport.objects.exists())


def test_2501_prompts_in_batches_of_1000_import_exactly_in_file_order(project, batches):
    records = [prompt_record(i, metadata={"n": i}) for i in range(PROMPTS)]
    for i in (999, 1_000, 2_500):  # the last of a batch, the first of the next, the very last
        records[i]["gold"] = {"tiers": [[2], [0, 1], [3]], "mode": "ranking"}
    record = import_records(project, records)
    assert batches == [1_000, 1_000, 501]
    assert (record.prompt_count, record.completion_count, record.ranking_count) == (
        PROMPTS, 4 * PROMPTS, 0)
    prompts = list(Prompt.objects.order_by("id"))
    assert [p.external_id for p in prompts] == [f"p{i}" for i in range(PROMPTS)]
    assert all(p.source_import_id == record.id and p.ranking_count == 0 and p.created_at
               for p in prompts)
    assert [p.metadata for p in prompts[998:1001]] == [{"n": 998}, {"n": 999}, {"n": 1000}]
    texts = {}
    for prompt_id, position, text in Completion.objects.values_list("prompt_id", "position",
                                                                    "text"):
        texts.setdefault(prompt_id, {})[position] = text
    for i, prompt in enumerate(prompts):
        assert texts[prompt.id] == {j: f"Answer {i}.{j}" for j in range(4)}
        assert prompt.content_hash == content_key(f"Question number {i}?", None,
                                                  [f"Answer {i}.{j}" for j in range(4)])
    gold = Prompt.objects.exclude(gold_tiers=None).order_by("id")
    assert [p.external_id for p in gold] == ["p999", "p1000", "p2500"]
    for prompt in gold:
        by_position = dict(prompt.completions.values_list("position", "id"))
        assert prompt.gold_tiers == [[by_position[2]], [by_position[0], by_position[1]],
                                     [by_position[3]]]
        assert prompt.gold_mode == "ranking"


def test_an_error_in_the_last_batch_writes_nothing(project, batches):
    records = [prompt_record(i) for i in range(PROMPTS)]
    records[-1] = prompt_record(PROMPTS - 1, completions=["only", "two"])
    with pytest.raises(services.ImportRejected) as caught:
        import_records(project, records)
    assert batches == [1_000, 1_000]  # written, then rolled back with the transaction
    assert [(e.line, e.field) for e in caught.value.errors] == [(PROMPTS, "completions")]
    assert nothing_written()


def test_copies_inside_the_file_and_in_the_project_are_refused_across_batches(project,
                                                                               batches):
    earlier = import_records(project, [without_id(prompt_record(100_000)),
                                       prompt_record(100_001, id="p7")])
    records = [without_id(prompt_record(i)) for i in range(PROMPTS)]
    records[1_499] = records[2]  # batch 2 copies line 3 of batch 1
    records[2_399] = without_id(prompt_record(100_000))  # batch 3 copies the project's
    records[2_449] = prompt_record(2_449, id="p7")  # an id the project holds
    expected = [
        (1_500, "prompt", "the same prompt and completions as line 3"),
        (2_400, "prompt", "the same prompt and completions as a prompt already in this project"),
        (2_450, "id", "id 'p7' is already in this project"),
    ]
    with pytest.raises(services.ImportRejected) as caught:
        import_records(project, records)
    assert [(e.line, e.field, e.message) for e in caught.value.errors] == expected
    assert Prompt.objects.count() == 2 and PromptImport.objects.get() == earlier

    skipped = import_records(project, records, skip_invalid=True)
    assert [(s["line"], s["field"], s["message"]) for s in skipped.skipped] == expected
    assert skipped.prompt_count == PROMPTS - 3 and batches[-3:] == [1_000, 999, 499]
    assert Prompt.objects.filter(source_import=skipped).count() == PROMPTS - 3


def test_copies_after_an_error_are_still_named_by_line(project, batches):
    """Once an error refuses the file, no batch is written: a copy is found among the rows
    read, by line, across batches all the same."""
    records = [without_id(prompt_record(i)) for i in range(PROMPTS)]
    records[9] = "not json"
    records[1_499] = records[4]
    records[2_199] = records[1_799]
    with pytest.raises(services.ImportRejected) as caught:
        import_records(project, records)
    errors = caught.value.errors
    assert [(e.line, e.field) for e in errors] == [(10, "line"), (1_500, "prompt"),
                                                   (2_200, "prompt")]
    assert [e.message for e in errors[1:]] == [
        "the same prompt and completions as line 5",
        "the same prompt and completions as line 1800"]
    assert batches == [] and nothing_written()


def test_preference_rows_import_their_rankings_across_batches(other_project, batches):
    records = [hh_record(f"Question {i}?", f"Good {i}.", f"Bad {i}.") for i in range(PROMPTS)]
    record = import_records(other_project, records)
    assert batches == [1_000, 1_000, 501]
    assert (record.prompt_count, record.ranking_count) == (PROMPTS, PROMPTS)
    for ranking in Ranking.objects.select_related("prompt").order_by("prompt_id")[998:1_002]:
        chosen, rejected = ranking.prompt.completions.order_by("position")
        assert ranking.source == "imported" and ranking.labeler_id is None
        assert ranking.tiers == [[chosen.id], [rejected.id]]
        assert (chosen.text, rejected.text) == tuple(
            ranking.prompt.messages[-1]["content"].replace("Question", word).replace("?", ".")
            for word in ("Good", "Bad"))


def test_an_imported_ranking_still_passes_the_tiers_trigger(other_project):
    """Migration 0002's trigger checks every ranking's ids, the bulk-written ones too."""
    import_records(other_project, [hh_record("Q?", "Yes.", "No.")])
    prompt = Prompt.objects.get()
    Ranking.objects.all().delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_insert.rows_insert(Ranking, ["prompt_id", "source", "tiers"],
                                [(prompt.id, "imported", [[999_999], [999_998]])])
    with transaction.atomic():
        first, second = prompt.completions.order_by("position").values_list("id", flat=True)
        bulk_insert.rows_insert(Ranking, ["prompt_id", "source", "tiers"],
                                [(prompt.id, "imported", [[second], [first]])])
    assert Ranking.objects.get().tiers == [[second], [first]]


def test_the_writers_refuse_to_run_outside_a_transaction(project):
    """SQLite's ids are only safe under the transaction's write lock: no transaction, no ids.
    (pytest-django wraps each test in a transaction; the flag is lowered to show the check.)"""
    atomic, connection.in_atomic_block = connection.in_atomic_block, False
    try:
        with pytest.raises(RuntimeError, match="inside the import's transaction"):
            bulk_insert.ids_reserve(Prompt, 3)
        with pytest.raises(RuntimeError, match="inside the import's transaction"):
            bulk_insert.rows_insert(Ranking, ["prompt_id", "source", "tiers"], [])
    finally:
        connection.in_atomic_block = atomic


def test_reserved_ids_are_new_and_increasing(project):
    import_records(project, [prompt_record(1)])
    stored = Prompt.objects.get().id
    with transaction.atomic():
        ids = bulk_insert.ids_reserve(Prompt, 5)
    assert ids == sorted(ids) and len(set(ids)) == 5 and min(ids) > stored


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ANALYZE runs on PostgreSQL only")
def test_a_large_import_analyzes_the_rankings_table_only_if_it_wrote_rankings(
        project, other_project, monkeypatch):
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(import_services, "ANALYZE_AFTER_PROMPTS", 2)
    with CaptureQueriesContext(connection) as queries:
        import_records(project, [prompt_record(i) for i in range(3)])
        import_records(other_project, [hh_record(f"Q {i}?", "Good.", "Bad.") for i in range(3)])
    analyzed = [q["sql"] for q in queries if q["sql"].startswith("ANALYZE")]
    prompts = "annotate_prompt (id, project_id, source_import_id, external_id, content_hash, " \
              "ranking_count, extra_rankings, gold_tiers, retired_at)"
    completions = "annotate_completion (id, prompt_id, position)"
    assert analyzed == [
        f"ANALYZE {prompts}, {completions}",
        f"ANALYZE {prompts}, {completions}, annotate_ranking (id, prompt_id, labeler_id, "
        "source, idempotency_key, created_at)"]


def test_the_columns_analyzed_after_an_import_are_the_tables_columns():
    """A renamed or dropped column fails here, not in the ANALYZE after a large import."""
    for model, columns in import_services.PLANNER_COLUMNS.items():
        stored = {field.column for field in model._meta.concrete_fields}
        assert set(columns) <= stored, (model.__name__, set(columns) - stored)


@pytest.mark.parametrize("value", [
    {"batch": 1}, {"t": 0.7, "top_p": 1e-300, "n": 10**30, "s": "é 😀 \u2028 \"\\"},
    [[1, 2], [3]], {"a": {"b": [None, True, False, -0.0]}}, {"nan": float("nan")}, "x", 5,
])
def test_json_columns_are_written_as_json_dumps_writes_them(value):
    assert bulk_insert._json(value) == json.dumps(value)
