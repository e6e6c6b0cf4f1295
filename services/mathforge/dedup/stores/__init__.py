"""Index stores behind one interface: embedded (durable local files) and Redis (shared)."""

from mathforge.dedup.stores.base import (
    DedupStore,
    IndexLostError,
    StoreError,
    StoreSettings,
    StoreVerdict,
    mark_retries,
)

__all__ = ["DedupStore", "IndexLostError", "StoreError", "StoreSettings", "StoreVerdict", "mark_retries"]
