"""Dynamic batching: items of concurrent Score requests share one forward pass.

    batcher = DynamicBatcher(run=score_encoded, max_batch=64, max_wait_s=0.005)
    batcher.start()
    with batcher.expecting():            # a request is on its way (being validated and tokenised)
        items = encode(...)
        pending = batcher.submit(model, items)     # queued at once
    scores = await pending

One worker takes the first queued chunk and adds later ones, of the same model, until the batch
holds `max_batch` items (or `max_batch_tokens` padded tokens: rows x longest row) or nothing more
can arrive within `max_wait_s`. It waits only while some
request is known to be on its way (`expecting`), so a lone caller never pays the wait. The forward
pass runs on a dedicated thread, off the event loop; while it runs, new requests queue up and form
the next batch. A batch never mixes models, so a request admitted before LoadModel is answered
entirely by the model it started with. With `merge=False` every request runs alone (the baseline
the benchmark compares against).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mathforge.reward.encoding import EncodedItem

#: run(model, items) -> one list of scores per item; called on the worker thread.
RunBatch = Callable[[Any, Sequence[EncodedItem]], list[list[float]]]
#: on_batch(model, items, queue_wait_s, forward_s) after every forward pass.
OnBatch = Callable[[Any, int, float, float], None]


@dataclass
class _Chunk:
    model: Any
    items: Sequence[EncodedItem]
    done: asyncio.Future[list[list[float]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    queued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Scores encoded items through a shared queue; start() on the serving loop, close() after."""

    def __init__(
        self,
        run: RunBatch,
        max_batch: int,
        max_wait_s: float,
        merge: bool = True,
        max_batch_tokens: int = 0,
        on_batch: OnBatch | None = None,
    ):
        self.run = run
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.merge = merge
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Chunk] = asyncio.Queue()
        self._held: _Chunk | None = None
        self._expected = 0
        self._worker: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reward-forward")

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._loop(), name="reward-batcher")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._thread.shutdown(wait=False, cancel_futures=True)

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Marks a request as on its way, so the worker waits for it (up to max_wait_s)."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1

    def submit(self, model: Any, items: Sequence[EncodedItem]) -> Awaitable[list[list[float]]]:
        """Queues `items` for `model` now (in chunks that fit one batch); await the result for their
        scores, in order."""
        chunks, start = [], 0
        while start < len(items):
            end = start + 1
            while end < len(items) and self._fits(
                end + 1 - start, max(len(i) for i in items[start : end + 1])
            ):
                end += 1
            chunks.append(_Chunk(model, items[start:end]))
            start = end
        for chunk in chunks:
            self._queue.put_nowait(chunk)
        return self._gather(chunks)

    async def score(self, model: Any, items: Sequence[EncodedItem]) -> list[list[float]]:
        """The scores of `items` on `model`, in order."""
        return await self.submit(model, items)

    @staticmethod
    async def _gather(chunks: list[_Chunk]) -> list[list[float]]:
        results: list[list[float]] = []
        for chunk in chunks:
            results.extend(await chunk.done)
        return results

    def _fits(self, rows: int, longest: int) -> bool:
        """Whether a batch of `rows` items padded to `longest` tokens is within both limits."""
        return rows <= self.max_batch and (
            not self.max_batch_tokens or rows * longest <= self.max_batch_tokens
        )

    async def _next(self, timeout: float) -> _Chunk | None:
        if not self._queue.empty():
            return self._queue.get_nowait()
        if timeout <= 0 or self._expected == 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _collect(self) -> list[_Chunk]:
        first = self._held or await self._queue.get()
        self._held = None
        batch, size, longest = [first], len(first.items), max(len(i) for i in first.items)
        if not self.merge:
            return batch
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_batch and self._fits(size + 1, longest):
            chunk = await self._next(deadline - time.perf_counter())
            if chunk is None:
                break
            chunk_longest = max(len(i) for i in chunk.items)
            if chunk.model is not first.model or not self._fits(
                size + len(chunk.items), max(longest, chunk_longest)
            ):
                self._held = chunk
                break
            batch.append(chunk)
            size += len(chunk.items)
            longest = max(longest, chunk_longest)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [c for c in batch if not c.done.done()]  # a cancelled caller's chunk is skipped
            if not live:
                continue
            items = [item for chunk in live for item in chunk.items]
            started = time.perf_counter()
            try:
                scores = await loop.run_in_executor(self._thread, self.run, live[0].model, items)
            except Exception as exc:  # a failed pass fails its callers, never the worker
                for chunk in live:
                    if not chunk.done.done():
                        chunk.done.set_exception(exc)
                continue
            finished = time.perf_counter()
            if self.on_batch is not None:
                wait = sum(started - c.queued_at for c in live) / len(live)
                self.on_batch(live[0].model, len(items), wait, finished - started)
            start = 0
            for chunk in live:
                end = start + len(chunk.items)
                if not chunk.done.done():
                    chunk.done.set_result(scores[start:end])
                start = end
