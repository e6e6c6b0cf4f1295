"""The index store interface: exact and near-duplicate lookups, and an atomic check-and-insert.

Two implementations: `EmbeddedStore` (one process, durable files on local disk) and `RedisStore`
(shared by replicas; each check-and-insert is one Lua script, atomic on the Redis server).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from mathforge.dedup.fingerprint import Fingerprint, NearDuplicatePolicy


class StoreError(RuntimeError):
    """The store cannot be opened or used (corrupt file, settings mismatch, unreachable server)."""


class IndexLostError(StoreError):
    """The store answers, but not with our index: it came back empty, as another index, or with
    fewer documents than were acknowledged. Serving on would silently accept duplicates."""


@dataclass(frozen=True)
class StoreSettings:
    """The MinHash settings an index was built with; a store refuses to mix different ones."""

    num_perm: int
    bands: int
    rows: int
    shingle_size: int
    seed: int

    def describe(self) -> str:
        return (
            f"num_perm={self.num_perm} bands={self.bands} rows={self.rows} "
            f"shingle_size={self.shingle_size} seed={self.seed}"
        )


@dataclass
class StoreVerdict:
    """What the index says about one document."""

    exact_duplicate_of: str = ""
    near_duplicate_of: str = ""
    jaccard: float = 0.0
    inserted: bool = False
    #: The index holds this very document (same text under the same id): an earlier, retried
    #: insert. Not a duplicate; the caller keeps it (dedup.proto, CheckAndInsert).
    already_inserted: bool = False


def mark_retries(prints: Sequence[Fingerprint], verdicts: list[StoreVerdict]) -> list[StoreVerdict]:
    """The verdicts with "exact duplicate of itself" turned into already_inserted."""
    return [
        StoreVerdict(already_inserted=True) if verdict.exact_duplicate_of == fp.id else verdict
        for fp, verdict in zip(prints, verdicts, strict=True)
    ]


class DedupStore(abc.ABC):
    """An index of document fingerprints."""

    kind: str = ""

    def __init__(self, settings: StoreSettings, policy: NearDuplicatePolicy):
        self.settings = settings
        self.policy = policy

    @abc.abstractmethod
    def check(self, prints: Sequence[Fingerprint]) -> list[StoreVerdict]:
        """Looks each document up without changing the index."""

    @abc.abstractmethod
    def check_and_insert(self, prints: Sequence[Fingerprint]) -> list[StoreVerdict]:
        """In order, inserts each document that is neither an exact nor a near duplicate of an indexed
        one (first writer wins); every reported insert is durable when this returns."""

    @abc.abstractmethod
    def count(self) -> int:
        """Documents in the index."""

    @abc.abstractmethod
    def stored_bytes(self) -> int:
        """Bytes the index takes where it lives (disk for embedded, memory for Redis)."""

    def memory_bytes(self) -> int:
        """Bytes of process memory the index takes (0 when it lives elsewhere)."""
        return 0

    def close(self) -> None:
        """Releases files and connections."""
