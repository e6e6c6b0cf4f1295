"""A worker thread that runs generation jobs in micro-batches, off the event loop.

    worker = DecodeWorker(run_batch, max_rows=256)
    future = worker.submit(weights, job, on_sample)   # concurrent.futures.Future
    await asyncio.wrap_future(future)

Jobs that arrive while a batch runs wait and then go together into the next one, as many as fit in
`max_rows` sample rows, provided they asked for the same weights (a job admitted before a weight
swap is never batched with one admitted after it). A job larger than `max_rows` runs alone. A job
that finds the worker idle waits up to `batch_wait_s` for company, so requests sent together by
several clients (which arrive a few hundred microseconds apart) share one batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from mathforge.sampler.backend import GenerationJob, SampleCallback

log = logging.getLogger(__name__)


@dataclass
class PendingJob:
    """A job waiting for (or in) a batch, with the future its caller awaits."""

    weights: Any
    job: GenerationJob
    on_sample: SampleCallback
    future: Future[None] = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> int:
        return len(self.job.prompts) * self.job.settings.n


BatchRunner = Callable[[Any, list[PendingJob]], None]


class DecodeWorker:
    """Owns one thread; `run_batch(weights, jobs)` is called there for each micro-batch."""

    def __init__(
        self, run_batch: BatchRunner, max_rows: int, batch_wait_s: float = 0.0, name: str = "sampler-decode"
    ):
        self._run_batch = run_batch
        self.max_rows = max_rows
        self.batch_wait_s = batch_wait_s
        self._queue: deque[PendingJob] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, weights: Any, job: GenerationJob, on_sample: SampleCallback) -> Future[None]:
        pending = PendingJob(weights, job, on_sample)
        with self._ready:
            if self._closed:
                raise RuntimeError("the decode worker is closed")
            self._queue.append(pending)
            self._ready.notify()
        return pending.future

    def queued_prompts(self) -> int:
        with self._ready:
            return sum(len(p.job.prompts) for p in self._queue)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stops taking jobs; queued ones fail, the batch running now finishes."""
        with self._ready:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._ready.notify_all()
        for pending in left:
            if pending.future.set_running_or_notify_cancel():
                pending.future.set_exception(RuntimeError("the sampler is shutting down"))
        self._thread.join(timeout_s)

    def _next_batch(self) -> list[PendingJob] | None:
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            deadline = self._queue[0].queued_at + self.batch_wait_s if self._queue else 0.0
            while not self._closed and sum(p.rows for p in self._queue) < self.max_rows:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            if self._closed:
                return None
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            # Skip over jobs on other weights rather than stop at them: they keep their place.
            for pending in list(self._queue):
                if pending.weights is first.weights and rows + pending.rows <= self.max_rows:
                    self._queue.remove(pending)
                    batch.append(pending)
                    rows += pending.rows
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [p for p in batch if p.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                self._run_batch(live[0].weights, live)
            except BaseException as exc:  # every caller of the batch gets the error; the thread lives on
                log.exception("decode batch failed")
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            for pending in live:
                if not pending.future.done():
                    pending.future.set_result(None)
