"""A compact uint64 -> uint32 multimap for the embedded index: about 12 bytes per entry.

Python dicts cost around 100 bytes per entry, too much for a corpus-scale index held in memory.
Entries here live in a few sorted numpy runs (keys and values side by side) plus a small dict of
recent inserts; when the dict fills, or before a lookup, it becomes a new run, and runs of similar
size are merged, so there are O(log n) runs and a batched lookup is one `searchsorted` per run.
"""

from __future__ import annotations

import numpy as np

_BUFFER_LIMIT = 4096


class CompactMultiMap:
    """Maps uint64 keys to one or more uint32 values; insert-only."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffer: dict[int, list[int]] = {}
        self._buffered = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes held by the sorted runs (the small recent-insert buffer is not counted)."""
        return sum(k.nbytes + v.nbytes for k, v in self._runs)

    def add(self, keys: np.ndarray, value: int) -> None:
        """Adds `value` under every key of `keys`."""
        for key in keys.tolist():
            self._buffer.setdefault(key, []).append(value)
        self._buffered += len(keys)
        self._size += len(keys)
        if self._buffered >= _BUFFER_LIMIT:
            self._flush()

    def extend(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Adds many (key, value) pairs at once (used when loading an index)."""
        if len(keys):
            self._flush()
            order = np.argsort(keys, kind="stable")
            self._runs.append((keys[order].astype(np.uint64), values[order].astype(np.uint32)))
            self._size += len(keys)
            self._compact()

    def get(self, keys: np.ndarray) -> list[int]:
        """All values stored under any of `keys`, without repeats, in ascending order."""
        return self.get_many(keys.reshape(1, -1))[0]

    def get_many(self, keys: np.ndarray) -> list[list[int]]:
        """For each row of a (rows, k) key matrix, the values under any of its keys (as `get`)."""
        rows, values = self.lookup_pairs(keys)
        found: list[list[int]] = [[] for _ in range(keys.shape[0])]
        for row, value in zip(rows.tolist(), values.tolist(), strict=True):
            found[row].append(value)
        return found

    def lookup_pairs(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All distinct (row, value) pairs where a key of row `row` of the (rows, k) key matrix maps
        to `value`, sorted by row then value: the batched LSH query, vectorised per run."""
        width = keys.shape[1] if keys.ndim == 2 else 1
        flat = keys.reshape(-1)
        self._flush()  # recent inserts become a (small) run, so every lookup is vectorised
        # Sorted queries make searchsorted walk each run forward instead of jumping around it.
        order = np.argsort(flat)
        queries = flat[order]
        rows_found: list[np.ndarray] = []
        values_found: list[np.ndarray] = []
        for keys_run, values_run in self._runs:
            position = np.minimum(np.searchsorted(keys_run, queries), len(keys_run) - 1)
            hit = np.flatnonzero(keys_run[position] == queries)
            position = position[hit]
            while len(hit):  # a key can hold several values: walk forward while it repeats
                rows_found.append(order[hit] // width)
                values_found.append(values_run[position])
                position = position + 1
                more = position < len(keys_run)
                hit, position = hit[more], position[more]
                more = keys_run[position] == queries[hit]
                hit, position = hit[more], position[more]
        if not rows_found:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        pairs = np.unique(np.concatenate(rows_found).astype(np.int64) << 32 | np.concatenate(values_found))
        return pairs >> 32, pairs & 0xFFFFFFFF

    def _flush(self) -> None:
        if not self._buffer:
            return
        keys = np.fromiter(
            (k for k, vs in self._buffer.items() for _ in vs), dtype=np.uint64, count=self._buffered
        )
        values = np.fromiter(
            (v for vs in self._buffer.values() for v in vs), dtype=np.uint32, count=self._buffered
        )
        self._buffer, self._buffered = {}, 0
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], values[order]))
        self._compact()

    def _compact(self) -> None:
        # Merge while the newest run is at least half the size of the one before (binary-counter style).
        while len(self._runs) >= 2 and 2 * len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            (k2, v2), (k1, v1) = self._runs.pop(), self._runs.pop()
            keys, values = np.concatenate([k1, k2]), np.concatenate([v1, v2])
            order = np.argsort(keys, kind="stable")
            self._runs.append((keys[order], values[order]))
