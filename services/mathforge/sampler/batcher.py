"""A worker thread that runs generation jobs in micro-batches, off the event loop.

    worker = DecodeWorker(run_batch, max_rows=256)
    future = worker.submit(weights, job, on_sample)   # concurrent.futures.Future
    await asyncio.wrap_future(future)

A batch takes queued jobs in order, as many as fit in `max_rows` sample rows, provided they asked
for the same weights (a job admitted before a weight swap is never batched with one admitted after
it); a job larger than `max_rows` runs alone. While a batch runs, the runner may take more queued
jobs into it between steps (`take_more`), in the same order, so a job waits for a free row rather
than for the whole batch. A job that finds the worker idle waits up to `batch_wait_s` for company,
so requests sent together by several clients (a few hundred microseconds apart) start together.
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

    def finish(self) -> None:
        """Tells the caller its job is done (the batch may run on with other jobs)."""
        if not self.future.done():
            self.future.set_result(None)


TakeMore = Callable[[int], list[PendingJob]]
#: run_batch(weights, jobs, take_more): decodes `jobs`, calling each one's `finish` when it is done;
#: take_more(free_rows) hands over queued jobs on the same weights that fit in `free_rows`.
BatchRunner = Callable[[Any, list[PendingJob], TakeMore], None]


class DecodeWorker:
    """Owns one thread; `run_batch(weights, jobs, take_more)` is called there for each batch."""

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
            return [first, *self._take(first.weights, self.max_rows - first.rows)]

    def _take(self, weights: Any, free_rows: int) -> list[PendingJob]:
        """Queued jobs on `weights`, in order, while they fit in `free_rows` (caller holds the lock).
        Jobs on other weights are passed over; the first job that does not fit stops the taking,
        so a large job is not overtaken forever by small ones."""
        taken: list[PendingJob] = []
        for pending in list(self._queue):
            if pending.weights is not weights:
                continue
            if pending.rows > free_rows:
                break
            self._queue.remove(pending)
            taken.append(pending)
            free_rows -= pending.rows
        return taken

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [p for p in batch if p.future.set_running_or_notify_cancel()]
            if live:
                self._run(live)

    def _run(self, live: list[PendingJob]) -> None:
        """Runs one batch; jobs that join it are added to `live`, so a failure reaches them too."""
        weights = live[0].weights

        def take_more(free_rows: int) -> list[PendingJob]:
            with self._ready:
                taken = self._take(weights, free_rows)
            joining = [p for p in taken if p.future.set_running_or_notify_cancel()]
            live.extend(joining)
            return joining

        try:
            self._run_batch(weights, live, take_more)
        except BaseException as exc:  # every caller of the batch gets the error; the thread lives on
            log.exception("decode batch failed")
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        for pending in live:
            pending.finish()
