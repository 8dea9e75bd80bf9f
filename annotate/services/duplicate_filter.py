"""Which of a batch's ids and content keys an import must look up in the database.

Each batch of an import looks up its ids and content keys among the project's prompts
(imports._duplicates_refused). On PostgreSQL that probes the (project, content_hash) index
once per row, at random, and at a million prompts that bent the import's rate (bench/README.md,
"Batched raw inserts"). A Bloom filter of the project's ids and keys answers "surely not
stored" for nearly all of them, so only the rest are looked up, and the lookup names the
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

from collections.abc import Collection

from ..bloom import DEFAULT_BYTES, BloomFilter
from ..models import Prompt

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
