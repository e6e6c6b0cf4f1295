"""Index stores behind one interface: embedded (durable local files) and Redis (shared)."""

from mathforge.dedup.stores.base import DedupStore, StoreError, StoreSettings, StoreVerdict

__all__ = ["DedupStore", "StoreError", "StoreSettings", "StoreVerdict"]
