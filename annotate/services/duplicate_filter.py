"""Which rows of an import's batch are copies, and which of its ids and content keys the
import must look up in the database to tell.

duplicates_refused names each copy (services.imports calls it per batch): an id used on an
earlier line or already in the project, or the same content as a stored prompt or an
earlier line. It looks the batch's ids and content keys up among the project's prompts. On
PostgreSQL that probes the (project, content_hash) index once per row, at random, and at a
million prompts that bent the import's rate (bench/README.md, "Batched raw inserts"). A
Bloom filter of the project's ids and keys (DuplicateFilter) answers "surely not stored"
for nearly all of them, so only the rest are looked up, and the lookup names the
copies exactly as before.

The filter is seeded by streaming the project's ids and keys once, this import's earlier
batches included (they are in its transaction). Seeding costs about as much per stored
prompt as a lookup does per imported one, so it waits until the import has written at least
half as many prompts as the project held before it: a small import into a large project
never seeds, an import into a new project seeds at its second batch. Memory: two
bloom.DEFAULT_BYTES filters (2 MiB), whatever the number of prompts.

A prompt that another import commits after the seeding is not in the filter: as between two
imports running at once (neither sees the other's rows), its content is not refused as a
copy. Ids stay unique: the database's constraint refuses a taken one at insert.
"""

from array import array
from bisect import bisect_left
from collections.abc import Collection, Iterator

from ..bloom import DEFAULT_BYTES, BloomFilter
from ..importers import PromptRow, RowError
from ..models import Prompt, PromptImport
from . import bulk_insert

SEED_AFTER_FRACTION = 0.5  # of the prompts the project held before the import
SEED_CHUNK = 10_000  # rows a fetch


class DuplicateFilter:
    """The project's stored ids and content keys, once the import is large enough to seed."""

    def __init__(self, project_id: int, size_bytes: int = DEFAULT_BYTES):
        self.project_id = project_id
        self.size_bytes = size_bytes
        self.ids: BloomFilter | None = None
        self.keys: BloomFilter | None = None
        self._seed_at: float | None = None

    def candidates(self, ids: Collection[str], keys: Collection[str], written: int,
                   ) -> tuple[Collection[str], Collection[str]]:
        """The `ids` and `keys` that may be stored, to look up (all of them before seeding);
        `written`: the prompts this import has written so far."""
        if self.ids is None and written and self._should_seed(written):
            self._seed()
        if self.ids is None:
            return ids, keys
        return self.ids.may_contain_any(ids), self.keys.may_contain_any(keys)

    def add(self, ids: list[str], keys: list[str]) -> None:
        """Note a batch just written (before seeding, the seeding reads it back)."""
        if self.ids is not None:
            self.ids.add_all(ids)
            self.keys.add_all(keys)

    def _should_seed(self, written: int) -> bool:
        if self._seed_at is None:  # counted once: the prompts stored before this import
            stored = Prompt.objects.filter(project_id=self.project_id).count()
            self._seed_at = (stored - written) * SEED_AFTER_FRACTION
        return written >= self._seed_at

    def _seed(self) -> None:
        self.ids, self.keys = BloomFilter(self.size_bytes), BloomFilter(self.size_bytes)
        # Streamed (a server-side cursor on PostgreSQL): memory holds a chunk, not the project.
        stored = Prompt.objects.filter(project_id=self.project_id).values_list(
            "external_id", "content_hash").iterator(chunk_size=SEED_CHUNK)
        for external_id, key in stored:
            if external_id:
                self.ids.add(external_id)
            self.keys.add(key)


class Unwritten:
    """Rows this import read but did not write, for naming the first of two copies: the
    content keys of a refused file's rows (`keys`, "line N" each), and the ids of the rows
    refused or not yet written (`ids`, their lines): a batch, the refused rows (at most
    MAX_REPORTED_ERRORS once the file is imported without them) and a refused file's rows."""

    def __init__(self):
        self.keys: dict[str, str] = {}
        self.ids: dict[str, int] = {}


class WrittenLines:
    """The line of each prompt this import wrote, by id, in two arrays: 12 bytes a prompt
    (a dict of content hashes to lines held about 200), so that naming "the same prompt and
    completions as line N" costs no memory to speak of on a file of millions of prompts."""

    def __init__(self):
        self.ids = array("q")
        self.lines = array("I")

    def add(self, ids: list[int], rows: list[PromptRow]) -> None:
        self.ids.extend(ids)
        self.lines.extend(row.line for row in rows)

    def line_of(self, prompt_id: int) -> int:
        return self.lines[bisect_left(self.ids, prompt_id)]


def duplicates_refused(record: PromptImport, rows: list[PromptRow], written: WrittenLines,
                       known: DuplicateFilter, unwritten: Unwritten,
                        ) -> Iterator[tuple[str, PromptRow | RowError]]:
    """Each row's content key, with the row, or the error refusing it as a copy: an id used
    on an earlier line of the file (named by line) or already in the project, or the same
    content as a stored prompt (this import's earlier batches included, named by line), as
    a row not written, or as an earlier row of the batch. Only the ids and keys that `known`
    cannot rule out are looked up: the first line of an id used twice is found there (the
    earlier row was written) or in `unwritten`, so no id of the file is held in memory."""
    keys = [row.content_key for row in rows]
    project = {"project_id": record.project_id}
    lookup_ids, lookup_keys = known.candidates(
        {row.external_id for row in rows if row.external_id}, set(keys), len(written.ids))
    first_lines: dict[str, int] = {}
    taken_ids: set[str] = set()
    for external_id, source_import_id, prompt_id in bulk_insert.rows_where_in(
            Prompt, ["external_id", "source_import_id", "id"], "external_id", lookup_ids,
            **project):
        if source_import_id == record.pk:
            first_lines[external_id] = written.line_of(prompt_id)
        else:
            taken_ids.add(external_id)
    seen: dict[str, str] = {}
    for content_hash, source_import_id, prompt_id in bulk_insert.rows_where_in(
            Prompt, ["content_hash", "source_import_id", "id"], "content_hash", lookup_keys,
            **project):
        mine = source_import_id == record.pk
        seen.setdefault(content_hash, f"line {written.line_of(prompt_id)}" if mine
                        else "a prompt already in this project")
    for row, key in zip(rows, keys, strict=True):
        where = seen.get(key) or unwritten.keys.get(key)
        first_line = row.external_id and (unwritten.ids.get(row.external_id)
                                          or first_lines.get(row.external_id))
        if first_line:
            yield key, RowError(row.line, "id", f"duplicate id {row.external_id!r} "
                                                f"(first used on line {first_line})")
            continue
        if row.external_id:
            unwritten.ids[row.external_id] = row.line
        if row.external_id in taken_ids:
            yield key, RowError(row.line, "id",
                                f"id {row.external_id!r} is already in this project")
        elif where:
            yield key, RowError(row.line, "prompt",
                                f"the same prompt and completions as {where}")
        else:
            seen[key] = f"line {row.line}"
            yield key, row
