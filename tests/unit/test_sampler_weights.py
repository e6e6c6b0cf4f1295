"""Which weights a call samples from while new ones are swapped in, and the micro-batching worker."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from mathforge.sampler.backend import GenerationJob, SamplingSettings
from mathforge.sampler.batcher import DecodeWorker, PendingJob
from mathforge.sampler.weights import ServingWeights, WeightsGate


def _weights(version: int) -> ServingWeights:
    return ServingWeights(version, handle=f"model-{version}", path=f"/policy/{version}")


def test_without_drain_calls_in_flight_keep_old_weights_and_new_calls_get_new_at_once():
    async def scenario() -> list[int]:
        gate = WeightsGate(_weights(0), drains=False)
        seen: list[int] = []
        release = asyncio.Event()

        async def call() -> None:
            async with gate.use() as weights:
                await release.wait()
                seen.append(weights.version)

        slow = asyncio.ensure_future(call())
        await asyncio.sleep(0)

        async def activate() -> ServingWeights:
            return _weights(1)

        await gate.swap(activate)  # does not wait for the slow call
        async with gate.use() as weights:
            seen.append(weights.version)
        release.set()
        await slow
        return seen

    assert asyncio.run(scenario()) == [1, 0]


def test_with_drain_the_swap_waits_for_calls_in_flight_and_holds_new_ones_back():
    async def scenario() -> list[str]:
        gate = WeightsGate(_weights(0), drains=True)
        events: list[str] = []
        release = asyncio.Event()

        async def old_call() -> None:
            async with gate.use() as weights:
                await release.wait()
                events.append(f"old call done on {weights.version}")

        async def activate() -> ServingWeights:
            events.append("activate")
            return _weights(1)

        async def late_call() -> None:
            async with gate.use() as weights:
                events.append(f"late call on {weights.version}")

        first = asyncio.ensure_future(old_call())
        await asyncio.sleep(0)
        swap = asyncio.ensure_future(gate.swap(activate))
        await asyncio.sleep(0)
        late = asyncio.ensure_future(late_call())
        await asyncio.sleep(0.01)
        assert events == []  # the swap waits for the old call; the late call waits for the swap
        release.set()
        await asyncio.gather(first, swap, late)
        return events

    assert asyncio.run(scenario()) == ["old call done on 0", "activate", "late call on 1"]


def test_a_failed_activation_keeps_the_old_weights_and_lets_calls_through():
    async def scenario() -> int:
        gate = WeightsGate(_weights(3), drains=True)

        async def broken() -> ServingWeights:
            raise RuntimeError("corrupt checkpoint")

        with pytest.raises(RuntimeError):
            await gate.swap(broken)
        async with gate.use() as weights:
            return weights.version

    assert asyncio.run(scenario()) == 3


def _job(prompts: int, n: int) -> GenerationJob:
    return GenerationJob([[1]] * prompts, SamplingSettings(n=n))


def test_worker_batches_queued_jobs_on_the_same_weights_within_the_row_budget():
    batches: list[tuple[str, list[int]]] = []
    started, gate = threading.Event(), threading.Event()

    def run_batch(weights: str, jobs: list[PendingJob], take_more) -> None:
        started.set()
        gate.wait(5)
        batches.append((weights, [j.rows for j in jobs]))

    worker = DecodeWorker(run_batch, max_rows=8)
    try:
        futures = [worker.submit("a", _job(1, 1), print)]  # runs alone while the rest queue up
        assert started.wait(5)
        futures += [
            worker.submit("a", _job(2, 2), print),
            worker.submit("b", _job(1, 4), print),
            worker.submit("a", _job(1, 4), print),
            worker.submit("a", _job(1, 4), print),
        ]
        gate.set()
        for future in futures:
            future.result(5)
    finally:
        worker.close()
    assert batches == [("a", [1]), ("a", [4, 4]), ("b", [4]), ("a", [4])]


def test_worker_reports_a_failed_batch_to_each_caller_and_keeps_running():
    def run_batch(weights: str, jobs: list[PendingJob], take_more) -> None:
        if weights == "bad":
            raise RuntimeError("out of memory")

    worker = DecodeWorker(run_batch, max_rows=8)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            worker.submit("bad", _job(1, 1), print).result(5)
        assert worker.submit("good", _job(1, 1), print).result(5) is None
    finally:
        worker.close()


def test_a_job_queued_during_a_batch_joins_it_and_returns_before_the_batch_ends():
    started, joined, release = threading.Event(), threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def run_batch(weights: str, jobs: list[PendingJob], take_more) -> None:
        if weights == "b":
            return
        started.set()
        deadline = time.monotonic() + 5
        while not (more := take_more(8 - sum(j.rows for j in jobs))) and time.monotonic() < deadline:
            time.sleep(0.005)
        seen.append([j.rows for j in more])
        more[0].finish()  # its rows are done; the batch itself runs on
        joined.set()
        release.wait(5)

    worker = DecodeWorker(run_batch, max_rows=8)
    try:
        first = worker.submit("a", _job(1, 2), print)
        assert started.wait(5)
        worker.submit("b", _job(1, 1), print)  # other weights: never joins this batch
        late = worker.submit("a", _job(1, 4), print)
        assert joined.wait(5)
        assert late.result(5) is None and not first.done()
        release.set()
        assert first.result(5) is None
    finally:
        release.set()
        worker.close()
    assert seen == [[4]]
