"""A fixed-size Bloom filter of strings: pure Python, no Django.

An import asks it which of a batch's ids and content keys may already be in the project,
and asks the database only about those (annotate/services/duplicate_filter.py). A filter
never answers "no" for a key it was given, so a copy is never missed; a "maybe" for a key
it was not given (a false positive) only costs that key a database lookup.

Memory is the bytearray and nothing else, however many keys go in: at the default
1 MiB (2**23 bits, 8 a key at a million keys) and 4 bit positions a key, a million keys
give about 2% false positives, ten million about 97% (then nearly every key is looked up,
as without a filter: slower, never wrong).
"""

from collections.abc import Iterable

DEFAULT_BYTES = 1 << 20
DEFAULT_HASHES = 4


class BloomFilter:
    """Keys added are always found; others are found with a small probability.

    >>> seen = BloomFilter(1024)
    >>> seen.add_all(["a", "b"])
    >>> seen.may_contain_any(["a", "c"]), "b" in seen
    (['a'], True)
    """

    def __init__(self, size_bytes: int = DEFAULT_BYTES, hashes: int = DEFAULT_HASHES):
        bits = size_bytes * 8
        if bits & (bits - 1):  # a power of two: a position is a mask, not a division
            raise ValueError("size_bytes must be a power of two")
        self._bits = bytearray(size_bytes)
        self._mask = bits - 1
        self._hashes = hashes

    # Python's own string hash (SipHash, cached on the string) is several times faster than
    # hashlib, and the filter lives in one process: its per-process seed does no harm. Its
    # 64 bits give two, and the positions are h1 + i*h2 (Kirsch and Mitzenmacher, 2006).

    def add(self, key: str) -> None:
        """Add `key`."""
        bits, mask, h = self._bits, self._mask, hash(key)
        h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
        for _ in range(self._hashes):
            position = h1 & mask
            bits[position >> 3] |= 1 << (position & 7)
            h1 += h2

    def add_all(self, keys: Iterable[str]) -> None:
        """Add each of `keys`."""
        for key in keys:
            self.add(key)

    def __contains__(self, key: str) -> bool:
        bits, mask, h = self._bits, self._mask, hash(key)
        h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
        for _ in range(self._hashes):
            position = h1 & mask
            if not bits[position >> 3] >> (position & 7) & 1:
                return False  # most keys of a new project stop at the first bit
            h1 += h2
        return True

    def may_contain_any(self, keys: Iterable[str]) -> list[str]:
        """The keys of `keys` that may have been added, in their order."""
        return [key for key in keys if key in self]
