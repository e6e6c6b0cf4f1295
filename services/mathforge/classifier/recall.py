"""The iterative math recall pipeline (DeepSeekMath §2.1): train on the seed, score the corpus, keep the
top pages, discover math domains, grow the seed from approved URL paths, retrain, until a round
adds almost nothing.

    run_recall(RecallInputs(web=Path("web/pages"), seed=Path("web/seed/seed.jsonl")), Path("runs/r"), cfg)

Each round writes OUT/round-N/: model.bin, kept.jsonl (id, url, score), domains.json (the domain
report), new_positives.jsonl (the seed growth) and, last, metrics.json, which marks the round done.
OUT/rounds.json lists the metrics of finished rounds. A run that stopped (killed, or waiting for a
person to review proposals in OUT/approvals.txt) resumes at the round it was in, reusing the steps
that round already finished.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mathforge.classifier.discovery import PrefixCounts, add_proposals, discover_from_counts, under_prefix
from mathforge.classifier.model import MathModel, train_classifier
from mathforge.classifier.recall_config import RecallConfig
from mathforge.classifier.recall_rules import (
    candidate_floor,
    keep_step,
    negative_priority,
    page_tokens,
    quantize,
    score_value,
    token_histogram,
)
from mathforge.corpus import iter_records, list_shards, write_records_atomic

log = logging.getLogger(__name__)


@dataclass
class RecallInputs:
    web: Path  # shard file, directory or glob of pages (id, url, text)
    seed: Path  # shard of seed positives (text; id when they are also web pages)
    truth: Path | None = None  # JSONL of (id, is_math), for recall and precision
    approvals: Path | None = None  # default OUT/approvals.txt


@dataclass
class RecallResult:
    rounds: list[dict[str, Any]]
    waiting_for_review: Path | None = None  # the approvals file, when the run stopped for review


@dataclass
class _Scored:
    ids: list[str]
    urls: list[str]
    q: np.ndarray  # score steps (recall_rules.quantize)
    tokens: np.ndarray


@dataclass
class Selection:
    """What a round's keep step tells the rest of the round."""

    kept: int
    prefixes: PrefixCounts  # pages and kept pages per URL prefix
    math_kept: int | None  # kept pages that are math by the ground truth, when there is one


@dataclass
class Growth:
    new_positives: int  # pages added to the seed
    new: int  # kept pages the previous round did not keep


def iter_texts(path: Path) -> Iterator[dict[str, Any]]:
    for shard in list_shards(path):
        yield from iter_records(shard)


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    temporary.replace(path)


class RecallRun:
    """One run over an output directory; `run()` continues from wherever the directory stands."""

    def __init__(self, inputs: RecallInputs, out: Path, config: RecallConfig):
        config.validate()
        self.inputs, self.out, self.config = inputs, out, config
        self.approvals_path = inputs.approvals or out / "approvals.txt"
        self.truth = self._load_truth(inputs.truth)

    @staticmethod
    def _load_truth(path: Path | None) -> dict[str, bool] | None:
        """The math pages of the ground truth ({id: True}; other pages are left out)."""
        if path is None or not path.exists():
            return None
        return {str(r["id"]): True for r in iter_records(path) if r["is_math"]}

    def round_dir(self, number: int) -> Path:
        return self.out / f"round-{number}"

    def finished_rounds(self) -> list[dict[str, Any]]:
        rounds = []
        number = 1
        while (self.round_dir(number) / "metrics.json").exists():
            rounds.append(json.loads((self.round_dir(number) / "metrics.json").read_text()))
            number += 1
        return rounds

    def run(self) -> RecallResult:
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(self.out / "config.json", self.config.as_dict())
        rounds = self.finished_rounds()
        while not rounds or not self._should_stop(rounds):
            number = len(rounds) + 1
            metrics = self.recall_round(number, rounds)
            if metrics is None:
                return RecallResult(rounds, waiting_for_review=self.approvals_path)
            rounds.append(metrics)
            _write_json(self.out / "rounds.json", rounds)
        _write_json(self.out / "rounds.json", rounds)
        return RecallResult(rounds)

    def _should_stop(self, rounds: list[dict[str, Any]]) -> bool:
        last = rounds[-1]
        if len(rounds) >= self.config.max_rounds:
            return True
        return len(rounds) > 1 and last["new_share"] < self.config.stop_new_share

    # ---- one round ------------------------------------------------------------------------
    def recall_round(self, number: int, previous: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Runs (or resumes) round `number`; None when it stopped for a person to review proposals."""
        started = time.perf_counter()
        directory = self.round_dir(number)
        directory.mkdir(parents=True, exist_ok=True)
        positives = self._positives(number)
        model_path = directory / "model.bin"
        if not model_path.exists():
            count = min(len(positives), self.config.train.negatives)
            negatives = self._negatives(number, count, set(positives))
            log.info(
                "round %d: training on %d positives, %d negatives", number, len(positives), len(negatives)
            )
            train_classifier(positives.values(), negatives, model_path, self.config.train)
        selection = self._select(number, model_path)
        report = discover_from_counts(
            selection.prefixes,
            self.config.domain_share,
            self.config.min_prefix_pages,
            self.config.min_prefix_share,
        )
        _write_json(directory / "domains.json", report.as_dict())
        approvals = add_proposals(self.approvals_path, number, report.proposals, self.config.auto_approve)
        if approvals.pending:
            log.info(
                "round %d: %d proposals wait for review in %s",
                number,
                len(approvals.pending),
                self.approvals_path,
            )
            return None
        growth = self._grow(number, set(positives), sorted(approvals.approved))
        metrics: dict[str, Any] = {
            "round": number,
            "kept": selection.kept,
            "new": growth.new,
            "new_share": round(growth.new / max(1, selection.kept), 4),
            "positives": len(positives),
            "new_positives": growth.new_positives,
            "math_domains": report.math_domains,
            "approved_prefixes": len(approvals.approved),
            "seconds": round(time.perf_counter() - started, 2),
        }
        if self.truth is not None and selection.math_kept is not None:
            math = sum(self.truth.values())
            metrics["recall"] = round(selection.math_kept / max(1, math), 4)
            metrics["precision"] = round(selection.math_kept / max(1, selection.kept), 4)
        _write_json(directory / "metrics.json", metrics)
        return metrics

    # ---- the passes over the web (in this process; recall_sharded.py runs them as shard tasks) ----
    def _kept_ids(self, number: int) -> set[str]:
        if number < 1:
            return set()
        return {str(r["id"]) for r in iter_records(self.round_dir(number) / "kept.jsonl")}

    def _positives(self, number: int) -> dict[str, str]:
        """Seed texts plus every earlier round's new positives, by id."""
        positives: dict[str, str] = {}
        for i, record in enumerate(iter_texts(self.inputs.seed)):
            positives[str(record.get("id", f"seed-{i}"))] = str(record.get("text", ""))
        for earlier in range(1, number):
            for record in iter_records(self.round_dir(earlier) / "new_positives.jsonl"):
                positives[str(record["id"])] = str(record["text"])
        return positives

    def _negatives(self, number: int, count: int, positives: set[str]) -> list[str]:
        """The `count` web pages of lowest negative priority (recall_rules.py) that are neither
        positives nor kept by the previous round (ours: the paper samples CC at random, where math is
        rare; excluding what we know is math keeps it out of the negatives on a web where it is not)."""
        excluded = positives | self._kept_ids(number - 1)
        eligible = (
            (
                negative_priority(self.config.seed, number, str(r.get("id"))),
                str(r.get("id")),
                str(r.get("text", "")),
            )
            for r in iter_texts(self.inputs.web)
            if str(r.get("id")) not in excluded
        )
        return [text for _, _, text in heapq.nsmallest(count, eligible)]

    def _select(self, number: int, model_path: Path) -> Selection:
        """Scores every page, keeps the top ones (recall_rules.keep_step) and writes kept.jsonl."""
        kept_path = self.round_dir(number) / "kept.jsonl"
        scored = self._score_web(MathModel.load(model_path, self.config.train.max_chars))
        floor = candidate_floor(
            self.config.keep_tokens, self.config.keep_threshold, self.config.candidate_floor
        )
        keep_at = keep_step(token_histogram(scored.q, scored.tokens), self.config.keep_tokens, floor)
        chosen = np.flatnonzero(scored.q >= keep_at).tolist()
        if not kept_path.exists():
            write_records_atomic(
                kept_path,
                (
                    {"id": scored.ids[i], "url": scored.urls[i], "score": score_value(int(scored.q[i]))}
                    for i in chosen
                ),
            )
        kept = {scored.ids[i] for i in chosen}
        counts = PrefixCounts()
        for page_id, url in zip(scored.ids, scored.urls, strict=True):
            counts.add(url, self.config.prefix_depth, page_id in kept)
        math_kept = None if self.truth is None else sum(self.truth.get(i, False) for i in kept)
        return Selection(len(kept), counts, math_kept)

    def _score_web(self, model: MathModel) -> _Scored:
        ids: list[str] = []
        urls: list[str] = []
        parts: list[np.ndarray] = []
        tokens: list[int] = []
        batch: list[str] = []
        for record in iter_texts(self.inputs.web):
            text = str(record.get("text", ""))
            ids.append(str(record["id"]))
            urls.append(str(record.get("url", "")))
            tokens.append(page_tokens(text))
            batch.append(text)
            if len(batch) >= self.config.score_batch:
                parts.append(model.score(batch))
                batch = []
        if batch:
            parts.append(model.score(batch))
        scores = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return _Scored(ids, urls, quantize(scores), np.asarray(tokens, dtype=np.int64))

    def _grow(self, number: int, positives: set[str], approved: list[str]) -> Growth:
        """Writes the uncollected pages under approved prefixes (not yet positives) as new positives."""
        path = self.round_dir(number) / "new_positives.jsonl"
        kept = self._kept_ids(number)
        new = len(kept - self._kept_ids(number - 1))
        if path.exists():
            return Growth(sum(1 for _ in iter_records(path)), new)

        def chosen() -> Iterator[dict[str, Any]]:
            for record in iter_texts(self.inputs.web):
                page_id = str(record["id"])
                if page_id in kept or page_id in positives:
                    continue
                url = str(record.get("url", ""))
                if any(under_prefix(url, prefix) for prefix in approved):
                    yield {"id": page_id, "url": url, "text": record.get("text", "")}

        return Growth(write_records_atomic(path, chosen()), new)


def run_recall(inputs: RecallInputs, out: Path, config: RecallConfig) -> RecallResult:
    """Runs or resumes the recall pipeline in `out`; see RecallRun."""
    return RecallRun(inputs, out, config).run()
