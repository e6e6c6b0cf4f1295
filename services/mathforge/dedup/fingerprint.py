"""What the index stores of a document: its exact-text key, MinHash signature and LSH band keys.

fingerprinter = Fingerprinter(TextNormalizer(), MinHasher())
prints = fingerprinter.fingerprints([("doc-1", text1), ("doc-2", text2)])
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mathforge.dedup.minhash import EMPTY, MinHasher
from mathforge.dedup.normalize import TextNormalizer


@dataclass(frozen=True)
class Fingerprint:
    """One document as the index sees it."""

    id: str
    #: 64-bit BLAKE2b of the exact normal form (normalised, whitespace collapsed).
    exact_key: int
    #: MinHash signature, uint32[num_perm]; all EMPTY for a text without tokens.
    signature: np.ndarray
    #: LSH bucket keys, uint64[bands]; empty when the signature is EMPTY (no near-dup search).
    band_keys: np.ndarray

    @property
    def exact_bytes(self) -> bytes:
        return self.exact_key.to_bytes(8, "little")


@dataclass(frozen=True)
class NearDuplicatePolicy:
    """When a candidate counts as a near duplicate: estimated Jaccard >= threshold if `verify`."""

    threshold: float = 0.8
    verify: bool = True

    def accepts(self, jaccard: float) -> bool:
        return jaccard >= self.threshold if self.verify else True


class Fingerprinter:
    """Turns texts into fingerprints, a batch at a time."""

    def __init__(self, normalizer: TextNormalizer, hasher: MinHasher):
        self.normalizer = normalizer
        self.hasher = hasher

    def exact_key(self, text: str) -> int:
        digest = hashlib.blake2b(self.normalizer.exact_form(text).encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    def fingerprints(self, documents: Sequence[tuple[str, str]]) -> list[Fingerprint]:
        """Fingerprints of (id, text) pairs, in order."""
        signatures = self.hasher.signatures([self.normalizer.tokens(text) for _, text in documents])
        band_keys = self.hasher.band_keys(signatures)
        empty_keys = np.empty(0, dtype=np.uint64)
        return [
            Fingerprint(
                doc_id,
                self.exact_key(text),
                signatures[i],
                empty_keys if signatures[i][0] == EMPTY else band_keys[i],
            )
            for i, (doc_id, text) in enumerate(documents)
        ]
