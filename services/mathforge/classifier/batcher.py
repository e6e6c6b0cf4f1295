"""Coalesces concurrent scoring requests into larger fastText batches, one batch at a time.

fastText's predict holds the GIL, so one worker thread is as fast as several; what pays is fewer,
larger predict calls. Each request is split into chunks of at most `batch_size` documents; chunks
of different requests that use the same model are merged into one batch. A batch never mixes
models, so a request admitted before a Reload is answered entirely by the model it started with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mathforge.classifier.model import MathModel


@dataclass
class _Chunk:
    model: MathModel
    texts: Sequence[str]
    done: asyncio.Future[np.ndarray] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ScoreBatcher:
    """Scores texts on a given model through a shared queue; start() before use, close() after."""

    def __init__(self, batch_size: int, on_batch: Callable[[int], None] | None = None):
        self.batch_size = batch_size
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Chunk] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._held: _Chunk | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="classifier-batcher")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def score(self, model: MathModel, texts: Sequence[str]) -> np.ndarray:
        """P(math) for `texts` on `model`, in order."""
        chunks = [
            _Chunk(model, texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)
        ]
        for chunk in chunks:
            self._queue.put_nowait(chunk)
        parts = [await chunk.done for chunk in chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    async def _run(self) -> None:
        while True:
            first = self._held or await self._queue.get()
            self._held = None
            batch = [first]
            size = len(first.texts)
            while not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt.model is not first.model or size + len(nxt.texts) > self.batch_size:
                    self._held = nxt
                    break
                batch.append(nxt)
                size += len(nxt.texts)
            texts = [t for chunk in batch for t in chunk.texts]
            try:
                scores = await asyncio.to_thread(first.model.score, texts)
            except Exception as exc:  # a scoring failure fails its callers, not the worker
                for chunk in batch:
                    if not chunk.done.done():
                        chunk.done.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(texts))
            start = 0
            for chunk in batch:
                end = start + len(chunk.texts)
                if not chunk.done.done():
                    chunk.done.set_result(scores[start:end])
                start = end
