"""The recall rounds as map and reduce over web shards: the same rounds, files and numbers as the
in-process loop (recall.py), with the passes over the web run as shard tasks by an executor.

    run_recall_sharded(RecallInputs(web, seed), Path("runs/r"), config, LocalExecutor(workers=8))

Per round, three map phases (recall_map.py) and their reduces, here:

    sample -> merge the shards' lowest-priority pages into the negatives; train the round's model
    score  -> sum the token histograms -> the keep threshold (the token budget); stream the
              candidates at or above it into kept.jsonl and per-prefix kept counts; discovery
    grow   -> concatenate the shards' new positives; count kept pages new to this round

What the reduce holds is bounded by the histogram (100,001 counters), the per-prefix counters and
the training texts, never by the pages: kept pages are streamed, not collected. (The ground truth,
when given for recall and precision, is a set of the math page ids: an evaluation aid.)
OUT/round-N/selection.json holds the threshold of a finished score phase; the phase directories
hold each shard's output and done file, so a resumed run redoes only unfinished shards.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mathforge.classifier.discovery import PrefixCounts
from mathforge.classifier.recall import Growth, RecallInputs, RecallResult, RecallRun, Selection
from mathforge.classifier.recall_config import RecallConfig
from mathforge.classifier.recall_executor import MapExecutor
from mathforge.classifier.recall_map import done_path, part_path, write_json_atomic
from mathforge.classifier.recall_rules import BINS, candidate_floor, keep_step, score_value
from mathforge.corpus import iter_records, list_shards, write_records_atomic


class ShardedRecallRun(RecallRun):
    """RecallRun whose passes over the web are map tasks run by `executor`."""

    def __init__(self, inputs: RecallInputs, out: Path, config: RecallConfig, executor: MapExecutor):
        super().__init__(inputs, out, config)
        self.executor = executor
        self.shards = [str(p.resolve()) for p in list_shards(inputs.web)]

    # ---- phases ---------------------------------------------------------------------------
    def _phase(self, number: int, phase: str, task: dict[str, Any], directory: str = "") -> Path:
        """Writes the phase's task (once: a resumed phase keeps its task) and runs its map tasks."""
        phase_dir = self.round_dir(number) / (directory or phase)
        phase_dir.mkdir(parents=True, exist_ok=True)
        if not (phase_dir / "task.json").exists():
            write_json_atomic(
                phase_dir / "task.json",
                {"phase": phase, "round": number, "seed": self.config.seed, "shards": self.shards, **task},
            )
        self.executor.run(phase_dir, len(self.shards))
        return phase_dir

    def _done(self, phase_dir: Path) -> Iterator[dict[str, Any]]:
        for index in range(len(self.shards)):
            yield json.loads(done_path(phase_dir, index).read_text())

    def _positive_ids_file(self, number: int, positives: set[str]) -> str:
        path = self.round_dir(number) / "positive_ids.txt"
        if not path.exists():
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_text("".join(f"{i}\n" for i in sorted(positives)), encoding="utf-8")
            temporary.replace(path)
        return str(path.resolve())

    def _previous(self, number: int) -> dict[str, Any] | None:
        if number < 2:
            return None
        round_dir = self.round_dir(number - 1)
        keep_at = json.loads((round_dir / "selection.json").read_text())["keep_at"]
        return {"round_dir": str(round_dir.resolve()), "keep_at": keep_at}

    # ---- the round's passes ---------------------------------------------------------------
    def _negatives(self, number: int, count: int, positives: set[str]) -> list[str]:
        """The global `count` lowest-priority eligible pages. Shards send only pages below a priority
        bound set a few times above the expected cut-off, so sampling does not copy the web; when the
        shards together hold fewer than `count` pages below it, the bound was too low and the phase
        runs again without one, so the sample is exactly the in-process loop's either way."""
        task = {
            "count": count,
            "positive_ids": self._positive_ids_file(number, positives),
            "previous": self._previous(number),
            "bound": self._sample_bound(number, count),
        }
        phase_dir = self._phase(number, "sample", task)
        if task["bound"] is not None and sum(done["below"] for done in self._done(phase_dir)) < count:
            task["bound"] = None
            phase_dir = self._phase(number, "sample", task, directory="sample-all")
        streams = [
            ((r["p"], r["id"], r["text"]) for r in iter_records(part_path(phase_dir, i)))
            for i in range(len(self.shards))
        ]
        return [text for _, _, text in itertools.islice(heapq.merge(*streams), count)]

    def _sample_bound(self, number: int, count: int) -> int | None:
        """A priority bound 4x the expected cut-off, from the page count (the previous round's, or one
        estimated from the shards' sizes); None (no bound) when that would keep most pages anyway."""
        if number > 1:
            pages = sum(done["pages"] for done in self._done(self.round_dir(number - 1) / "score"))
        else:
            first = Path(self.shards[0])
            per_byte = sum(1 for _ in iter_records(first)) / max(1, first.stat().st_size)
            pages = int(per_byte * sum(Path(s).stat().st_size for s in self.shards))
        share = 4.0 * count / max(1, pages)
        return None if share >= 0.5 else int(share * 2**64)

    def _select(self, number: int, model_path: Path) -> Selection:
        floor = candidate_floor(
            self.config.keep_tokens, self.config.keep_threshold, self.config.candidate_floor
        )
        task = {
            "model": str(model_path.resolve()),
            "max_chars": self.config.train.max_chars,
            "batch": self.config.score_batch,
            "floor": floor,
            "prefix_depth": self.config.prefix_depth,
        }
        phase_dir = self._phase(number, "score", task)
        histogram = np.zeros(BINS, dtype=np.int64)
        prefixes = PrefixCounts()
        for done in self._done(phase_dir):
            if done["histogram"]:
                steps, tokens = np.asarray(done["histogram"], dtype=np.int64).T
                histogram[steps] += tokens
            prefixes.merge(done["prefixes"])
        keep_at = keep_step(histogram, self.config.keep_tokens, floor)
        del histogram
        math = self.truth
        kept = math_kept = 0

        def kept_records() -> Iterator[dict[str, Any]]:
            nonlocal kept, math_kept
            for index in range(len(self.shards)):
                for record in iter_records(part_path(phase_dir, index)):
                    if int(record["q"]) < keep_at:
                        continue
                    kept += 1
                    if math is not None:
                        math_kept += math.get(str(record["id"]), False)
                    prefixes.add(str(record["url"]), self.config.prefix_depth, True, pages=0)
                    yield {"id": record["id"], "url": record["url"], "score": score_value(int(record["q"]))}

        kept_path = self.round_dir(number) / "kept.jsonl"
        if kept_path.exists():
            for _ in kept_records():
                pass
        else:
            write_records_atomic(kept_path, kept_records())
        write_json_atomic(self.round_dir(number) / "selection.json", {"keep_at": keep_at, "kept": kept})
        return Selection(kept, prefixes, None if math is None else math_kept)

    def _grow(self, number: int, positives: set[str], approved: list[str]) -> Growth:
        task = {
            "round_dir": str(self.round_dir(number).resolve()),
            "keep_at": json.loads((self.round_dir(number) / "selection.json").read_text())["keep_at"],
            "previous": self._previous(number),
            "positive_ids": self._positive_ids_file(number, positives),
            "approved": approved,
        }
        phase_dir = self._phase(number, "grow", task)
        new = sum(done["new"] for done in self._done(phase_dir))
        path = self.round_dir(number) / "new_positives.jsonl"
        if not path.exists():
            parts = (iter_records(part_path(phase_dir, i)) for i in range(len(self.shards)))
            write_records_atomic(path, itertools.chain.from_iterable(parts))
        return Growth(sum(done["new_positives"] for done in self._done(phase_dir)), new)


def run_recall_sharded(
    inputs: RecallInputs, out: Path, config: RecallConfig, executor: MapExecutor
) -> RecallResult:
    """Runs or resumes the recall rounds in `out` with map tasks on `executor`."""
    return ShardedRecallRun(inputs, out, config, executor).run()
