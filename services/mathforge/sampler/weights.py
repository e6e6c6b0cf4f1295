"""Versioned policy weights: which weights a call samples from, and swapping in a new version.

    gate = WeightsGate(ServingWeights(0, handle, path), drains=backend.swap_drains)
    async with gate.use() as weights:          # a call: weights.version tags its completions
        ...
    await gate.swap(activate)                   # LoadWeights, after the checkpoint was staged
    line = PolicyLine("run-a", gate, StreamReceiver())   # one policy line of the service

A call keeps the weights it was admitted with until it ends. For a backend that can hold two models
(transformers) the swap is one reference assignment: later calls get the new weights at once. For a
backend with one engine (vLLM) the swap first stops admitting calls, waits for the ones in flight
to finish, activates the new weights, then lets the waiting calls in, so no call mixes versions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServingWeights:
    """Weights a backend serves: their version, the backend's handle and where they came from."""

    version: int
    handle: Any
    path: str
    loaded_at: float = field(default_factory=time.time)
    #: Checksum of the weights (models/transfer.py); empty when the backend computes none.
    checksum: str = ""


class WeightsGate:
    """Hands the current weights to calls and swaps them, draining first when the backend needs it."""

    def __init__(self, initial: ServingWeights, drains: bool):
        self.current = initial
        self.drains = drains
        self._in_flight = 0
        self._swapping = False
        self._changed = asyncio.Condition()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @asynccontextmanager
    async def use(self) -> AsyncIterator[ServingWeights]:
        """Admits a call (waiting while a draining swap runs) and yields the weights it must use."""
        if self._swapping:
            async with self._changed:
                await self._changed.wait_for(lambda: not self._swapping)
        weights = self.current
        self._in_flight += 1
        try:
            yield weights
        finally:
            self._in_flight -= 1
            if self._swapping:
                async with self._changed:
                    self._changed.notify_all()

    async def swap(self, activate: Callable[[], Awaitable[ServingWeights]]) -> ServingWeights:
        """Makes the weights `activate` returns current. If it raises, the old weights stay."""
        if not self.drains:
            new = await activate()
            self.current = new
            return new
        async with self._changed:
            self._swapping = True
            try:
                await self._changed.wait_for(lambda: self._in_flight == 0)
                new = await activate()
                self.current = new
                return new
            finally:
                self._swapping = False
                self._changed.notify_all()


@dataclass
class PolicyLine:
    """One policy line of the service (the default line "" or a named one): its weights gate, the
    lock that orders its loads and the receiver that keeps its collective transfer group."""

    name: str
    gate: WeightsGate
    receiver: Any
    load_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def busy(self) -> bool:
        """A call samples from it or a load into it runs: not to be evicted now."""
        return self.gate.in_flight > 0 or self.load_lock.locked()
