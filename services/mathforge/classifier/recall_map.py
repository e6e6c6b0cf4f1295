"""The map side of a recall round: one task per web shard, the same code in a local process pool and
in a Kubernetes Indexed Job pod.

    mathforge data recall-map --task runs/r/round-2/score/task.json --index 7

A phase directory (OUT/round-N/<phase>/) holds task.json, written by the reduce, and per shard i
the output part-0000i.jsonl and, written last, part-0000i.done.json with the shard's small
results. A task whose done file exists is finished; a killed task leaves at most a hidden temporary
file, and running it again rewrites both. Phases:

- sample: the shard's eligible pages (not positives, not kept by the previous round) of lowest
  negative priority below `bound` (when set), at most `count`, sorted (recall_rules.negative_priority).
- score: every page scored with the round's model; the output holds the keep candidates (id, url,
  score step q >= floor); the done file the shard's token histogram over score steps and its page
  counts per URL prefix.
- grow: pages under approved prefixes that are neither kept nor positives (the seed growth); the
  done file counts kept pages the previous round did not keep.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mathforge.classifier.discovery import PrefixCounts, under_prefix
from mathforge.classifier.model import MathModel
from mathforge.classifier.recall_rules import negative_priority, page_tokens, quantize, token_histogram
from mathforge.corpus import iter_records, write_records_atomic

PHASES = ("sample", "score", "grow")


def part_path(phase_dir: Path, index: int) -> Path:
    return phase_dir / f"part-{index:05d}.jsonl"


def done_path(phase_dir: Path, index: int) -> Path:
    return phase_dir / f"part-{index:05d}.done.json"


def read_task(phase_dir: Path) -> dict[str, Any]:
    return json.loads((phase_dir / "task.json").read_text())


def write_json_atomic(path: Path, value: Any) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value) + "\n")
    temporary.replace(path)


def kept_ids(round_dir: Path, keep_at: int, index: int) -> set[str]:
    """Ids of shard `index`'s pages a finished round kept (its score candidates at or above keep_at)."""
    return {
        str(r["id"]) for r in iter_records(part_path(round_dir / "score", index)) if int(r["q"]) >= keep_at
    }


def _previous_kept(task: dict[str, Any], index: int) -> set[str]:
    previous = task.get("previous")
    return set() if previous is None else kept_ids(Path(previous["round_dir"]), previous["keep_at"], index)


def _positive_ids(task: dict[str, Any]) -> set[str]:
    return set(Path(task["positive_ids"]).read_text(encoding="utf-8").split("\n")) - {""}


def run_task(phase_dir: Path, index: int) -> dict[str, Any]:
    """Runs the task of shard `index` in `phase_dir` and returns its done record."""
    task = read_task(phase_dir)
    shards = task["shards"]
    if not 0 <= index < len(shards):
        raise ValueError(f"task index {index} is outside 0..{len(shards) - 1} ({phase_dir / 'task.json'})")
    shard = Path(shards[index])
    phase = task["phase"]
    if phase == "sample":
        done = _sample(task, shard, phase_dir, index)
    elif phase == "score":
        done = _score(task, shard, phase_dir, index)
    elif phase == "grow":
        done = _grow(task, shard, phase_dir, index)
    else:
        raise ValueError(f"{phase_dir / 'task.json'}: unknown phase {phase!r} (one of {', '.join(PHASES)})")
    write_json_atomic(done_path(phase_dir, index), done)
    return done


def _sample(task: dict[str, Any], shard: Path, phase_dir: Path, index: int) -> dict[str, Any]:
    excluded = _positive_ids(task) | _previous_kept(task, index)
    seed, number, bound = task["seed"], task["round"], task.get("bound")
    below = 0

    def eligible() -> Iterator[tuple[int, str, str]]:
        nonlocal below
        for r in iter_records(shard):
            page_id = str(r.get("id"))
            if page_id in excluded:
                continue
            priority = negative_priority(seed, number, page_id)
            if bound is None or priority < bound:
                below += 1
                yield priority, page_id, str(r.get("text", ""))

    lowest = heapq.nsmallest(task["count"], eligible())
    written = write_records_atomic(
        part_path(phase_dir, index), ({"p": p, "id": i, "text": t} for p, i, t in lowest)
    )
    return {"sampled": written, "below": below}


def _score(task: dict[str, Any], shard: Path, phase_dir: Path, index: int) -> dict[str, Any]:
    model = MathModel.load(task["model"], task["max_chars"])
    floor, depth, batch_size = task["floor"], task["prefix_depth"], task["batch"]
    histogram = np.zeros(0, dtype=np.int64)
    prefixes = PrefixCounts()
    pages = 0

    def candidates() -> Iterator[dict[str, Any]]:
        nonlocal histogram, pages
        batch: list[dict[str, Any]] = []

        def flush() -> Iterator[dict[str, Any]]:
            nonlocal histogram
            texts = [str(r.get("text", "")) for r in batch]
            q = quantize(model.score(texts))
            tokens = np.array([page_tokens(t) for t in texts], dtype=np.int64)
            part = token_histogram(q, tokens)
            histogram = part if not len(histogram) else histogram + part
            for record, step in zip(batch, q.tolist(), strict=True):
                if step >= floor:
                    yield {"id": str(record["id"]), "url": str(record.get("url", "")), "q": step}

        for record in iter_records(shard):
            pages += 1
            prefixes.add(str(record.get("url", "")), depth, False)
            batch.append(record)
            if len(batch) >= batch_size:
                yield from flush()
                batch = []
        if batch:
            yield from flush()

    kept = write_records_atomic(part_path(phase_dir, index), candidates())
    nonzero = np.flatnonzero(histogram).tolist() if len(histogram) else []
    return {
        "pages": pages,
        "candidates": kept,
        "histogram": [[q, int(histogram[q])] for q in nonzero],
        "prefixes": prefixes,
    }


def _grow(task: dict[str, Any], shard: Path, phase_dir: Path, index: int) -> dict[str, Any]:
    kept = kept_ids(Path(task["round_dir"]), task["keep_at"], index)
    positives = _positive_ids(task)
    approved = task["approved"]

    def chosen() -> Iterator[dict[str, Any]]:
        for record in iter_records(shard):
            page_id = str(record["id"])
            if page_id in kept or page_id in positives:
                continue
            url = str(record.get("url", ""))
            if any(under_prefix(url, prefix) for prefix in approved):
                yield {"id": page_id, "url": url, "text": record.get("text", "")}

    written = write_records_atomic(part_path(phase_dir, index), chosen())
    return {"new_positives": written, "new": len(kept - _previous_kept(task, index))}
