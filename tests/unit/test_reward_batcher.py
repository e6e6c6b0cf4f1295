"""The dynamic batcher: concurrent requests share forward passes, each caller gets exactly its own
scores in order, models never mix in a batch, and a failed pass fails only its callers."""

from __future__ import annotations

import asyncio
import threading

from mathforge.reward.batcher import DynamicBatcher
from mathforge.reward.encoding import EncodedItem


class RecordingRun:
    """Scores an item by its ids (score = first id + 0.5 per extra read position), recording batches."""

    def __init__(self, delay_s: float = 0.01, fail_on: int | None = None):
        self.batches: list[tuple[str, list[int]]] = []
        self.delay = threading.Event()
        self.delay_s = delay_s
        self.fail_on = fail_on

    def __call__(self, model: str, items: list[EncodedItem]) -> list[list[float]]:
        self.batches.append((model, [item.input_ids[0] for item in items]))
        self.delay.wait(self.delay_s)
        if self.fail_on is not None and any(item.input_ids[0] == self.fail_on for item in items):
            raise RuntimeError("forward pass failed")
        return [[item.input_ids[0] + 0.5 * k for k in range(len(item.read_at))] for item in items]


def _item(key: int, reads: int = 1) -> EncodedItem:
    return EncodedItem([key, 7, 7], list(range(reads)))


async def _run_concurrently(batcher: DynamicBatcher, requests: list[tuple[str, list[EncodedItem]]]):
    async def one(model: str, items: list[EncodedItem]) -> list[list[float]]:
        with batcher.expecting():
            await asyncio.sleep(0)  # the request is "being tokenised"
            pending = batcher.submit(model, items)
        return await pending

    batcher.start()
    try:
        return await asyncio.gather(*(one(m, items) for m, items in requests))
    finally:
        await batcher.close()


def test_concurrent_requests_are_batched_and_each_gets_exactly_its_own_results() -> None:
    run = RecordingRun()
    batcher = DynamicBatcher(run, max_batch=16, max_wait_s=0.05)
    requests = [("m", [_item(100 * r + i, reads=1 + (i % 3)) for i in range(1 + r % 4)]) for r in range(32)]
    results = asyncio.run(_run_concurrently(batcher, requests))
    for (_, items), got in zip(requests, results, strict=True):
        assert got == [[it.input_ids[0] + 0.5 * k for k in range(len(it.read_at))] for it in items]
    sizes = [len(keys) for _, keys in run.batches]
    assert sum(sizes) == sum(len(items) for _, items in requests)
    assert max(sizes) <= 16
    assert len(run.batches) <= 8  # 80 items in batches of up to 16: merged, not one pass per request
    mixed = [keys for _, keys in run.batches if len({k // 100 for k in keys}) > 1]
    assert mixed, "no batch held items of more than one request"


def test_a_batch_never_mixes_models() -> None:
    run = RecordingRun()
    batcher = DynamicBatcher(run, max_batch=64, max_wait_s=0.05)
    requests = [("old" if r % 2 else "new", [_item(r)]) for r in range(20)]
    results = asyncio.run(_run_concurrently(batcher, requests))
    assert [r[0][0] for r in results] == [float(r) for r in range(20)]
    for model, keys in run.batches:
        assert all((k % 2 == 1) == (model == "old") for k in keys)


def test_without_merging_every_request_runs_alone() -> None:
    run = RecordingRun(delay_s=0.0)
    batcher = DynamicBatcher(run, max_batch=16, max_wait_s=0.05, merge=False)
    requests = [("m", [_item(10 * r), _item(10 * r + 1)]) for r in range(10)]
    asyncio.run(_run_concurrently(batcher, requests))
    assert sorted(keys for _, keys in run.batches) == [[10 * r, 10 * r + 1] for r in range(10)]


def test_large_requests_are_split_into_max_batch_chunks_in_order() -> None:
    run = RecordingRun(delay_s=0.0)
    batcher = DynamicBatcher(run, max_batch=4, max_wait_s=0.0)
    [got] = asyncio.run(_run_concurrently(batcher, [("m", [_item(i) for i in range(10)])]))
    assert got == [[float(i)] for i in range(10)]
    assert all(len(keys) <= 4 for _, keys in run.batches)


def test_a_failed_forward_pass_fails_its_callers_and_the_batcher_keeps_serving() -> None:
    run = RecordingRun(delay_s=0.0, fail_on=13)
    batcher = DynamicBatcher(run, max_batch=1, max_wait_s=0.0)

    async def scenario() -> tuple[BaseException | None, list[list[float]]]:
        batcher.start()
        try:
            failed = None
            try:
                await batcher.score("m", [_item(13)])
            except RuntimeError as exc:
                failed = exc
            return failed, await batcher.score("m", [_item(5)])
        finally:
            await batcher.close()

    failed, after = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError)
    assert after == [[5.0]]


def test_a_lone_caller_does_not_wait_for_max_wait() -> None:
    run = RecordingRun(delay_s=0.0)
    batcher = DynamicBatcher(run, max_batch=64, max_wait_s=5.0)

    async def scenario() -> float:
        batcher.start()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await batcher.score("m", [_item(1)])
            return loop.time() - started
        finally:
            await batcher.close()

    assert asyncio.run(scenario()) < 2.5
    assert len(run.batches) == 1


def test_batches_stay_within_the_padded_token_budget() -> None:
    run = RecordingRun()
    batcher = DynamicBatcher(run, max_batch=64, max_wait_s=0.05, max_batch_tokens=12)
    # Items are 3 tokens long: at most 4 rows of them fit 12 padded tokens.
    requests = [("m", [_item(10 * r + i) for i in range(1 + r % 3)]) for r in range(12)]
    results = asyncio.run(_run_concurrently(batcher, requests))
    assert [len(r) for r in results] == [len(items) for _, items in requests]
    assert all(len(keys) * 3 <= 12 for _, keys in run.batches)
    assert max(len(keys) for _, keys in run.batches) > 1
