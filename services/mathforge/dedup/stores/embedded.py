"""The embedded index store: one process, durable on local disk, compact in memory.

On disk (`<path>/index.log`): a header with the MinHash settings, then one frame per acknowledged
batch: length, CRC32, and per document its exact key, id and signature. A batch is appended and
fsynced before the call that inserted it returns, so every acknowledged insert survives kill -9 or a
power cut. A crash mid-append leaves at most one torn frame at the end; opening the store finds it by
its length or CRC and cuts it off (it was never acknowledged: an fsynced frame cannot be torn later).

In memory: signatures in fixed-size numpy blocks (num_perm x 4 bytes per document), exact and band
keys in `CompactMultiMap`s (12 bytes per key), ids as Python strings; about 800 bytes per document
at the defaults (128 permutations, 16 bands). Rebuilt from the log on start.

A lock file (flock) keeps a second process from opening the same directory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import sys
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mathforge.dedup.compact_map import CompactMultiMap
from mathforge.dedup.fingerprint import Fingerprint, NearDuplicatePolicy
from mathforge.dedup.minhash import MinHasher
from mathforge.dedup.stores.base import DedupStore, StoreError, StoreSettings, StoreVerdict

log = logging.getLogger(__name__)

MAGIC = b"MFDEDUP1"
_HEADER = struct.Struct("<8sIIIIQ")  # magic, num_perm, bands, rows, shingle_size, seed
_FRAME = struct.Struct("<II")  # payload length, crc32(payload)
_DOC = struct.Struct("<QH")  # exact key, id length
_BLOCK = 4096  # documents per signature block
MAX_ID_BYTES = 65535


class EmbeddedStore(DedupStore):
    """An append-only log plus a compact in-memory index rebuilt from it on open."""

    kind = "embedded"

    def __init__(self, path: str | Path, hasher: MinHasher, policy: NearDuplicatePolicy, fsync: bool = True):
        settings = StoreSettings(hasher.num_perm, hasher.bands, hasher.rows, hasher.shingle_size, hasher.seed)
        super().__init__(settings, policy)
        self.path = Path(path)
        self.hasher = hasher
        self.fsync = fsync
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._id_bytes = 0
        self._blocks: list[np.ndarray] = []
        self._exact = CompactMultiMap()
        self._bands = CompactMultiMap()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path / ".lock", "a+b")  # noqa: SIM115 - held for the store's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(self._lock_file)
            self._lock_file.close()
            raise StoreError(f"dedup store {self.path} is in use by {holder}") from None
        # Who holds it, for the error a second process gets (the lock goes with this process).
        self._lock_file.truncate(0)
        self._lock_file.write(f"{os.getpid()} {' '.join(sys.argv)[:300]}\n".encode())
        self._lock_file.flush()
        self._log_path = self.path / "index.log"
        self._load()
        self._log = open(self._log_path, "ab")  # noqa: SIM115 - the log stays open for appends

    # ---- opening --------------------------------------------------------------------------
    def _header(self) -> bytes:
        s = self.settings
        return _HEADER.pack(MAGIC, s.num_perm, s.bands, s.rows, s.shingle_size, s.seed)

    def _load(self) -> None:
        if not self._log_path.exists() or self._log_path.stat().st_size == 0:
            with open(self._log_path, "wb") as new:
                new.write(self._header())
                new.flush()
                os.fsync(new.fileno())
            _fsync_dir(self.path)
            return
        data = self._log_path.read_bytes()
        if len(data) < _HEADER.size or data[:8] != MAGIC:
            raise StoreError(f"{self._log_path} is not a dedup index log (bad header)")
        _, *values = _HEADER.unpack_from(data)
        found = StoreSettings(*values)
        if found != self.settings:
            raise StoreError(
                f"{self._log_path} was built with {found.describe()}, but the service is "
                f"configured with {self.settings.describe()}; use another --store-path"
            )
        position, keys, signatures = _HEADER.size, [], []
        sig_bytes = self.settings.num_perm * 4
        while position < len(data):
            if position + _FRAME.size > len(data):
                break
            length, crc = _FRAME.unpack_from(data, position)
            payload = data[position + _FRAME.size : position + _FRAME.size + length]
            if len(payload) < length or zlib.crc32(payload) != crc:
                break
            offset = 0
            while offset < length:
                key, id_len = _DOC.unpack_from(payload, offset)
                offset += _DOC.size
                self._ids.append(payload[offset : offset + id_len].decode("utf-8"))
                self._id_bytes += sys.getsizeof(self._ids[-1])
                offset += id_len
                signatures.append(payload[offset : offset + sig_bytes])
                offset += sig_bytes
                keys.append(key)
            position += _FRAME.size + length
        if position < len(data):
            log.warning(
                "dedup log %s: cut %d bytes of an unacknowledged torn batch at offset %d",
                self._log_path,
                len(data) - position,
                position,
            )
            with open(self._log_path, "r+b") as torn:
                torn.truncate(position)
                os.fsync(torn.fileno())
        if keys:
            matrix = np.frombuffer(b"".join(signatures), dtype=np.uint32).reshape(len(keys), -1)
            numbers = np.arange(len(keys), dtype=np.uint32)
            self._exact.extend(np.array(keys, dtype=np.uint64), numbers)
            band_keys = self.hasher.band_keys(matrix)
            nonempty = matrix[:, 0] != np.uint32(0xFFFFFFFF)
            self._bands.extend(band_keys[nonempty].ravel(), np.repeat(numbers[nonempty], self.settings.bands))
            for start in range(0, len(keys), _BLOCK):
                block = np.empty((_BLOCK, self.settings.num_perm), dtype=np.uint32)
                part = matrix[start : start + _BLOCK]
                block[: len(part)] = part
                self._blocks.append(block)
        log.info("dedup store %s: %d documents", self.path, len(self._ids))

    # ---- lookups --------------------------------------------------------------------------
    def _signatures(self, numbers: np.ndarray) -> np.ndarray:
        """The signatures of many indexed documents, gathered block by block."""
        out = np.empty((len(numbers), self.settings.num_perm), dtype=np.uint32)
        blocks = numbers // _BLOCK
        for block in np.unique(blocks).tolist():
            rows = np.flatnonzero(blocks == block)
            out[rows] = self._blocks[block][numbers[rows] % _BLOCK]
        return out

    def _index_lookup(self, prints: Sequence[Fingerprint]) -> list[tuple[str, str, float]]:
        """For each document: (exact duplicate id, best LSH candidate id, its estimated Jaccard),
        against the index as it is, looked up and scored for the whole batch at once."""
        count = len(prints)
        exact_rows, exact_values = self._exact.lookup_pairs(
            np.array([[fp.exact_key] for fp in prints], dtype=np.uint64)
        )
        exact = np.full(count, -1, dtype=np.int64)
        first_rows, first_index = np.unique(exact_rows, return_index=True)
        exact[first_rows] = exact_values[first_index]  # the oldest document with that text
        best = np.full(count, -1, dtype=np.int64)
        best_score = np.full(count, -1.0)
        banded = np.array(
            [i for i, fp in enumerate(prints) if len(fp.band_keys) and exact[i] < 0], dtype=np.int64
        )
        if len(banded):
            rows, numbers = self._bands.lookup_pairs(np.stack([prints[i].band_keys for i in banded.tolist()]))
            if len(rows):
                rows = banded[rows]
                queries = np.stack([fp.signature for fp in prints])
                scores = (
                    np.count_nonzero(self._signatures(numbers) == queries[rows], axis=1)
                    / self.settings.num_perm
                )
                # Per document, the highest score; among equals the oldest document.
                order = np.lexsort((numbers, -scores, rows))
                top_rows, top_index = np.unique(rows[order], return_index=True)
                best[top_rows] = numbers[order][top_index]
                best_score[top_rows] = scores[order][top_index]
        ids = self._ids
        return [
            (ids[e] if e >= 0 else "", ids[b] if b >= 0 else "", s)
            for e, b, s in zip(exact.tolist(), best.tolist(), best_score.tolist(), strict=True)
        ]

    def _verdict(self, index_hit: tuple[str, str, float]) -> StoreVerdict:
        exact_id, near_id, score = index_hit
        if exact_id:
            return StoreVerdict(exact_duplicate_of=exact_id)
        if near_id and self.policy.accepts(score):
            return StoreVerdict(near_duplicate_of=near_id, jaccard=score)
        return StoreVerdict()

    def check(self, prints: Sequence[Fingerprint]) -> list[StoreVerdict]:
        with self._lock:
            return [self._verdict(hit) for hit in self._index_lookup(prints)] if prints else []

    def check_and_insert(self, prints: Sequence[Fingerprint]) -> list[StoreVerdict]:
        """As `check`, plus documents inserted earlier in the same batch count as indexed."""
        with self._lock:
            if not prints:
                return []
            verdicts: list[StoreVerdict] = []
            pending: list[Fingerprint] = []
            pending_exact: dict[int, int] = {}
            pending_bands: dict[int, list[int]] = {}
            for fp, (exact_id, near_id, score) in zip(prints, self._index_lookup(prints), strict=True):
                if not exact_id and fp.exact_key in pending_exact:
                    exact_id = pending[pending_exact[fp.exact_key]].id
                if not exact_id and pending_bands:
                    for slot in {s for key in fp.band_keys.tolist() for s in pending_bands.get(key, ())}:
                        other = (
                            np.count_nonzero(pending[slot].signature == fp.signature) / self.settings.num_perm
                        )
                        if other > score:
                            near_id, score = pending[slot].id, other
                verdict = self._verdict((exact_id, near_id, score))
                if not (verdict.exact_duplicate_of or verdict.near_duplicate_of):
                    verdict.inserted = True
                    pending_exact[fp.exact_key] = len(pending)
                    for key in fp.band_keys.tolist():
                        pending_bands.setdefault(key, []).append(len(pending))
                    pending.append(fp)
                verdicts.append(verdict)
            if pending:
                self._append(pending)  # durable first: memory changes only once the batch is on disk
                for fp in pending:
                    self._add(fp)
            return verdicts

    # ---- writing --------------------------------------------------------------------------
    def _append(self, prints: list[Fingerprint]) -> None:
        parts: list[bytes] = []
        for fp in prints:
            raw_id = fp.id.encode("utf-8")
            if len(raw_id) > MAX_ID_BYTES:
                raise StoreError(f"document id of {len(raw_id)} bytes is over the {MAX_ID_BYTES} byte limit")
            parts += [_DOC.pack(fp.exact_key, len(raw_id)), raw_id, fp.signature.astype(np.uint32).tobytes()]
        payload = b"".join(parts)
        start = self._log.tell()
        try:
            self._log.write(_FRAME.pack(len(payload), zlib.crc32(payload)) + payload)
            self._log.flush()
            if self.fsync:
                os.fsync(self._log.fileno())
        except OSError:
            # Leave no partial frame behind a failed write, so later frames stay readable.
            self._log.truncate(start)
            raise

    def _add(self, fp: Fingerprint) -> None:
        number = len(self._ids)
        self._ids.append(fp.id)
        self._id_bytes += sys.getsizeof(fp.id)
        if number % _BLOCK == 0:
            self._blocks.append(np.empty((_BLOCK, self.settings.num_perm), dtype=np.uint32))
        self._blocks[-1][number % _BLOCK] = fp.signature
        self._exact.add(np.array([fp.exact_key], dtype=np.uint64), number)
        if len(fp.band_keys):
            self._bands.add(fp.band_keys, number)

    # ---- sizes and lifetime ---------------------------------------------------------------
    def count(self) -> int:
        return len(self._ids)

    def stored_bytes(self) -> int:
        return self._log_path.stat().st_size

    def memory_bytes(self) -> int:
        """Signature blocks + key maps (12 bytes a key) + ids (strings and the list's pointers)."""
        with self._lock:
            blocks = sum(block.nbytes for block in self._blocks)
            maps = 12 * (len(self._exact) + len(self._bands))
            return blocks + maps + self._id_bytes + 8 * len(self._ids)

    def close(self) -> None:
        with self._lock:
            if not self._log.closed:
                self._log.close()
            if not self._lock_file.closed:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_holder(lock_file: Any) -> str:
    """'process PID (its command line)' as the holder wrote it in the lock file, or a generic phrase
    for a holder that wrote nothing."""
    lock_file.seek(0)
    text = lock_file.read(400).decode("utf-8", "replace").strip()
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    return f"process {pid} ({command})" if command else f"process {pid}"
