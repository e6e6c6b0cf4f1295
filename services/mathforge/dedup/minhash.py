"""MinHash signatures over word shingles, LSH band keys, and the S-curve that sets bands x rows.

    hasher = MinHasher(num_perm=128, shingle_size=5, bands=16, rows=8)
    sigs = hasher.signatures([tokens_a, tokens_b])       # (2, 128) uint32, one numpy pass per batch
    keys = hasher.band_keys(sigs)                         # (2, 16) uint64 bucket keys
    estimated_jaccard(sigs[0], sigs[1])

Permutation k of a shingle's (well-mixed) 32-bit hash x is (a_k * x + b_k) mod 2^32 with odd a_k,
a bijection: one 32-bit multiply and add per (permutation, shingle), which numpy vectorises with
SIMD (64-bit products are about four times slower), and the signature is the minimum per
permutation. Because x is already a mixed hash, the minima are unbiased and close to independent
across permutations (checked by the near-duplicate tests against exact Jaccard).
A document with no tokens has no shingles and gets the EMPTY signature (all 0xFFFFFFFF); it takes
part in exact dedup only.

Two documents whose shingle sets have Jaccard s share all `rows` values of one band with
probability s^rows, so they become candidates with probability 1 - (1 - s^rows)^bands (the S-curve,
`candidate_probability`). The defaults (16 x 8 for 128 permutations, threshold 0.8) put the curve's
steep part below the threshold, which favours recall (0.994 at s = 0.85), and rely on verification
by estimated Jaccard >= threshold to drop the extra candidates (0.06 of pairs at s = 0.5 are
candidates, none survive verification). docs/dedup.md has the table.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from mathforge.dedup.hashing import U64, WindowHasher, mix64, token_hashes

EMPTY = np.uint32(0xFFFFFFFF)
# Shingles per numpy pass: bounds the (num_perm x shingles) temporary at 128 x 32768 x 4 B = 16 MB.
_CHUNK_SHINGLES = 32768
_CHUNK_DOCUMENTS = 256
_BAND_SALT = 0xD6E8FEB86659FD93


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that two documents with Jaccard `similarity` share at least one LSH band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def verified_probability(similarity: float, bands: int, rows: int, threshold: float) -> float:
    """Probability a pair is reported: candidate, then estimated Jaccard >= threshold (normal approx.)."""
    num_perm = bands * rows
    sd = math.sqrt(max(similarity * (1 - similarity), 1e-12) / num_perm)
    passes = 0.5 * math.erfc((threshold - similarity) / (sd * math.sqrt(2)))
    return candidate_probability(similarity, bands, rows) * passes


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of equal MinHash values: an unbiased estimate of the shingle sets' Jaccard."""
    if a[0] == EMPTY or b[0] == EMPTY:
        return 0.0
    return float(np.count_nonzero(a == b)) / len(a)


class MinHasher:
    """Computes MinHash signatures and LSH band keys for token sequences."""

    def __init__(
        self, num_perm: int = 128, shingle_size: int = 5, bands: int = 16, rows: int = 8, seed: int = 1
    ):
        if bands * rows != num_perm:
            raise ValueError(f"bands x rows = {bands} x {rows} = {bands * rows}, not num_perm {num_perm}")
        if shingle_size < 1:
            raise ValueError(f"shingle_size {shingle_size} must be at least 1")
        self.num_perm, self.shingle_size, self.bands, self.rows = num_perm, shingle_size, bands, rows
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._a = (rng.integers(0, 2**31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1))[:, None]
        self._b = rng.integers(0, 2**32, num_perm, dtype=np.uint32)[:, None]
        self._row_weights = np.cumprod(np.full(rows, 0x9FB21C651E98DF25, dtype=U64), dtype=U64)
        self._band_salts = np.arange(1, bands + 1, dtype=U64) * U64(_BAND_SALT)

    def batch_shingles(self, token_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """The shingle hashes of all documents, concatenated in order, and each document's count.

        All tokens of the batch are hashed in one pass; windows that straddle two documents are
        dropped. A document shorter than the shingle size is one shingle of all its tokens.
        """
        sizes = np.array([len(t) for t in token_lists], dtype=np.int64)
        hasher = WindowHasher(token_hashes(list(itertools.chain.from_iterable(token_lists))))
        k = self.shingle_size
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        windows = hasher.windows(k)
        doc_of = np.repeat(np.arange(len(sizes)), sizes)
        valid = np.flatnonzero(doc_of[: len(windows)] == doc_of[k - 1 :]) if len(windows) else windows
        counts = np.maximum(sizes - k + 1, 0)
        shingles = windows[valid] if len(windows) else np.empty(0, dtype=U64)
        short = np.flatnonzero((sizes > 0) & (sizes < k))
        if len(short):  # rare: splice in one whole-document shingle per short document
            pieces = np.split(shingles, np.cumsum(counts)[:-1])
            for i in short.tolist():
                pieces[i] = hasher.windows(int(sizes[i]))[starts[i] : starts[i] + 1]
                counts[i] = 1
            shingles = np.concatenate(pieces) if pieces else shingles
        return (mix64(shingles) >> U64(32)).astype(np.uint32), counts

    def signatures(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """A (documents, num_perm) uint32 matrix of MinHash signatures."""
        if len(token_lists) <= _CHUNK_DOCUMENTS:
            return self.sign(*self.batch_shingles(token_lists))
        # Hashing arrays of a few hundred documents stay in cache; much larger ones do not.
        return np.vstack(
            [
                self.sign(*self.batch_shingles(token_lists[start : start + _CHUNK_DOCUMENTS]))
                for start in range(0, len(token_lists), _CHUNK_DOCUMENTS)
            ]
        )

    def sign(self, shingles: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Signatures of documents given their concatenated shingle hashes and per-document counts."""
        out = np.full((len(counts), self.num_perm), EMPTY, dtype=np.uint32)
        ends = np.cumsum(counts)
        begins = ends - counts
        start = 0
        while start < len(counts):
            # Documents [start, stop) with at most _CHUNK_SHINGLES shingles (at least one document).
            stop = max(start + 1, int(np.searchsorted(ends, begins[start] + _CHUNK_SHINGLES, side="right")))
            group = start + np.flatnonzero(counts[start:stop] > 0)
            if len(group):
                joined = shingles[begins[start] : ends[stop - 1]]
                permuted = self._a * joined[None, :]
                permuted += self._b
                out[group] = np.minimum.reduceat(permuted, begins[group] - begins[start], axis=1).T
            start = stop
        return out

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """A (documents, bands) uint64 matrix: one bucket key per band, salted by the band number."""
        banded = signatures.astype(U64).reshape(len(signatures), self.bands, self.rows)
        combined = (banded * self._row_weights).sum(axis=2, dtype=U64) + self._band_salts
        return mix64(combined)
