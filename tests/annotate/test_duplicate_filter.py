"""The Bloom filter an import asks before looking up copies (annotate/bloom.py,
annotate/services/duplicate_filter.py): copies are refused with the same words as without
it, within a batch, across batches, against stored prompts, by id and by content; a false
positive only costs a lookup.

Run on SQLite and on PostgreSQL (DATABASE_URL)."""

import io

import pytest

from annotate import services
from annotate.bloom import BloomFilter
from annotate.models import Prompt
from annotate.services import bulk_insert, duplicate_filter
from annotate.services import imports as import_services
from tests.factories import jsonl_bytes, prompt_record

PROMPTS = 2_501  # batches of 1,000: full, full, and one of 501


def test_a_key_added_is_always_found_and_others_seldom():
    seen = BloomFilter(1 << 12)  # 32,768 bits
    added = [f"key {i}" for i in range(2_000)]  # 16 bits a key
    seen.add_all(added)
    assert seen.may_contain_any(added) == added
    others = [f"other {i}" for i in range(10_000)]
    assert len(seen.may_contain_any(others)) < 100  # about 0.1% expected


def test_a_filter_size_must_be_a_power_of_two():
    with pytest.raises(ValueError):
        BloomFilter(1000)


@pytest.fixture
def lookups(monkeypatch):
    """Batches of 1,000 prompts; each lookup's column and how many values it asked about."""
    monkeypatch.setattr(import_services, "IMPORT_BATCH_SIZE", 1_000)
    asked = []
    rows_where_in = bulk_insert.rows_where_in

    def counting(model, select, column, values, **equal):
        asked.append((column, len(values)))
        return rows_where_in(model, select, column, values, **equal)

    monkeypatch.setattr(bulk_insert, "rows_where_in", counting)
    return asked


def import_records(project, records, **options):
    return services.prompts_import(project=project, binary=io.BytesIO(jsonl_bytes(records)),
                                   filename="many.jsonl", **options)


@pytest.mark.django_db
def test_copies_by_id_and_content_are_refused_at_batch_boundaries_as_before(project, lookups):
    import_records(project, [prompt_record(100_000, id="stored-1"),
                             prompt_record(100_001, id="stored-2")])
    records = [prompt_record(i) for i in range(PROMPTS)]
    records[5] = {**records[3], "id": "p5"}  # within batch 1
    records[1_000] = {**records[999], "id": "p1000"}  # first of batch 2 copies last of 1
    records[1_999] = prompt_record(1_999, id="stored-1")  # last of batch 2: a stored id
    records[2_000] = {**records[1_998], "id": "p2000"}  # first of batch 3 copies batch 2
    records[2_500] = prompt_record(100_001, id="p2500")  # very last: stored content
    expected = [
        (6, "prompt", "the same prompt and completions as line 4"),
        (1_001, "prompt", "the same prompt and completions as line 1000"),
        (2_000, "id", "id 'stored-1' is already in this project"),
        (2_001, "prompt", "the same prompt and completions as line 1999"),
        (2_501, "prompt",
         "the same prompt and completions as a prompt already in this project"),
    ]
    lookups.clear()
    with pytest.raises(services.ImportRejected) as caught:
        import_records(project, records)
    assert [(e.line, e.field, e.message) for e in caught.value.errors] == expected
    lookups.clear()
    skipped = import_records(project, records, skip_invalid=True)
    assert [(s["line"], s["field"], s["message"]) for s in skipped.skipped] == expected
    assert skipped.prompt_count == PROMPTS - 5
    # Batch 1 looks every id and key up; then the filter (seeded at batch 2) leaves the
    # copies and the rare false positive.
    assert lookups[:2] == [("external_id", 1_000), ("content_hash", 999)]
    assert all(count <= 5 for _, count in lookups[2:]), lookups


@pytest.mark.django_db
def test_a_copy_of_a_row_refused_earlier_in_a_refused_file_is_named_by_line(project, lookups):
    records = [prompt_record(i) for i in range(PROMPTS)]
    records[9] = "not json"
    records[2_199] = {**records[1_200], "id": "p2199"}
    with pytest.raises(services.ImportRejected) as caught:
        import_records(project, records)
    assert [(e.line, e.message) for e in caught.value.errors[1:]] == [
        (2_200, "the same prompt and completions as line 1201")]


@pytest.mark.django_db
def test_a_false_positive_is_looked_up_and_still_imported(project, lookups, monkeypatch):
    monkeypatch.setattr(BloomFilter, "__contains__", lambda self, key: True)
    records = [prompt_record(i) for i in range(PROMPTS)]
    record = import_records(project, records)
    assert record.prompt_count == PROMPTS and Prompt.objects.count() == PROMPTS
    assert lookups[-1] == ("content_hash", 501)  # every key of the last batch "maybe"


@pytest.mark.django_db
def test_a_small_import_into_a_large_project_looks_up_instead_of_seeding(project, lookups,
                                                                        monkeypatch):
    import_records(project, [prompt_record(i, id=f"old{i}") for i in range(3_000)])
    seeded = []
    seed = duplicate_filter.DuplicateFilter._seed
    monkeypatch.setattr(duplicate_filter.DuplicateFilter, "_seed",
                        lambda self: seeded.append(1) or seed(self))
    records = [prompt_record(i) for i in range(10_000, 12_500)]
    records[2_400] = prompt_record(5, id="x")  # a stored prompt's content
    with pytest.raises(services.ImportRejected) as caught:
        import_records(project, records)
    assert [e.line for e in caught.value.errors] == [2_401]
    # 3,000 stored: seeded once 1,500 are written, so before batch 3, not batch 2.
    assert seeded == [1]


@pytest.mark.django_db
def test_an_id_used_twice_in_a_file_names_its_first_line_wherever_that_is(project, lookups):
    import_records(project, [prompt_record(100_000, id="stored")])
    records = [prompt_record(i) for i in range(PROMPTS)]
    records[2] = prompt_record(2, id=7)  # an integer id is the string "7"
    records[4] = prompt_record(4, id="7")  # same batch
    records[1_500] = prompt_record(1_500, id="p1")  # batch 2: line 2 was written
    records[10] = prompt_record(10, id="stored")  # refused: the project holds it
    records[2_300] = prompt_record(2_300, id="stored")  # batch 3: line 11 was refused
    records[20] = {**records[21], "id": "p20"}  # line 22 is then a copy of line 21
    records[2_400] = {**records[21], "id": "p20"}  # content of line 22, id of line 21
    expected = [
        (5, "id", "duplicate id '7' (first used on line 3)"),
        (11, "id", "id 'stored' is already in this project"),
        (22, "prompt", "the same prompt and completions as line 21"),
        (1_501, "id", "duplicate id 'p1' (first used on line 2)"),
        (2_301, "id", "duplicate id 'stored' (first used on line 11)"),
        (2_401, "id", "duplicate id 'p20' (first used on line 21)"),
    ]
    for skip_invalid in (False, True):  # the file refused: nothing written, all the same
        if skip_invalid:
            record = import_records(project, records, skip_invalid=True)
            found = [(s["line"], s["field"], s["message"]) for s in record.skipped]
            assert record.prompt_count == PROMPTS - len(expected)
        else:
            with pytest.raises(services.ImportRejected) as caught:
                import_records(project, records)
            found = [(e.line, e.field, e.message) for e in caught.value.errors]
        assert found == expected
