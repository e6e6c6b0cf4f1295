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

import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mathforge.classifier.discovery import add_proposals, discover_domains, under_prefix
from mathforge.classifier.model import MathModel, train_classifier
from mathforge.classifier.recall_config import RecallConfig
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
    scores: np.ndarray
    tokens: np.ndarray


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
        if path is None or not path.exists():
            return None
        return {str(r["id"]): bool(r["is_math"]) for r in iter_records(path)}

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
        earlier_kept = self._kept_before(number)
        positives = self._positives(number)
        model_path = directory / "model.bin"
        if model_path.exists():
            model = MathModel.load(model_path, self.config.train.max_chars)
        else:
            negatives = self._negatives(number, len(positives), set(positives) | earlier_kept)
            log.info(
                "round %d: training on %d positives, %d negatives", number, len(positives), len(negatives)
            )
            model = train_classifier(positives.values(), negatives, model_path, self.config.train)
        kept_path = directory / "kept.jsonl"
        if kept_path.exists():
            kept = {str(r["id"]) for r in iter_records(kept_path)}
            scored = None
        else:
            scored = self._score_web(model)
            chosen = self._keep(scored)
            write_records_atomic(
                kept_path,
                (
                    {"id": scored.ids[i], "url": scored.urls[i], "score": round(float(scored.scores[i]), 5)}
                    for i in chosen
                ),
            )
            kept = {scored.ids[i] for i in chosen}
        report = discover_domains(
            self._collected_flags(kept),
            self.config.domain_share,
            self.config.prefix_depth,
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
        new_positives = self._grow_seed(directory, kept, set(positives), sorted(approvals.approved))
        new = len(kept - earlier_kept)
        metrics: dict[str, Any] = {
            "round": number,
            "kept": len(kept),
            "new": new,
            "new_share": round(new / max(1, len(kept)), 4),
            "positives": len(positives),
            "new_positives": new_positives,
            "math_domains": report.math_domains,
            "approved_prefixes": len(approvals.approved),
            "seconds": round(time.perf_counter() - started, 2),
        }
        metrics.update(self._accuracy(kept))
        _write_json(directory / "metrics.json", metrics)
        return metrics

    def _kept_before(self, number: int) -> set[str]:
        if number == 1:
            return set()
        return {str(r["id"]) for r in iter_records(self.round_dir(number - 1) / "kept.jsonl")}

    def _positives(self, number: int) -> dict[str, str]:
        """Seed texts plus every earlier round's new positives, by id."""
        positives: dict[str, str] = {}
        for i, record in enumerate(iter_texts(self.inputs.seed)):
            positives[str(record.get("id", f"seed-{i}"))] = str(record.get("text", ""))
        for earlier in range(1, number):
            for record in iter_records(self.round_dir(earlier) / "new_positives.jsonl"):
                positives[str(record["id"])] = str(record["text"])
        return positives

    def _negatives(self, number: int, count: int, excluded: set[str]) -> list[str]:
        """A uniform sample (reservoir) of `count` web pages that are neither positives nor already
        collected (ours: the paper samples CC at random, where math is rare; excluding what we know
        is math keeps it out of the negatives on a web where it is not rare)."""
        count = min(count, self.config.train.negatives)
        rng = random.Random(self.config.seed * 1000 + number)
        sample: list[str] = []
        seen = 0
        for record in iter_texts(self.inputs.web):
            if str(record.get("id")) in excluded:
                continue
            seen += 1
            if len(sample) < count:
                sample.append(str(record.get("text", "")))
            else:
                slot = rng.randrange(seen)
                if slot < count:
                    sample[slot] = str(record.get("text", ""))
        return sample

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
            tokens.append(len(text.split()))
            batch.append(text)
            if len(batch) >= self.config.score_batch:
                parts.append(model.score(batch))
                batch = []
        if batch:
            parts.append(model.score(batch))
        scores = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return _Scored(ids, urls, scores, np.asarray(tokens, dtype=np.int64))

    def _keep(self, scored: _Scored) -> list[int]:
        """Indexes of kept pages: the top pages by score within keep_tokens, else score >= threshold."""
        if self.config.keep_tokens:
            order = np.argsort(-scored.scores, kind="stable")
            within = np.cumsum(scored.tokens[order]) <= self.config.keep_tokens
            return sorted(order[within].tolist())
        return np.flatnonzero(scored.scores >= self.config.keep_threshold).tolist()

    def _collected_flags(self, kept: set[str]) -> Iterator[tuple[str, bool]]:
        for record in iter_texts(self.inputs.web):
            yield str(record.get("url", "")), str(record["id"]) in kept

    def _grow_seed(self, directory: Path, kept: set[str], positives: set[str], approved: list[str]) -> int:
        """Writes the uncollected pages under approved prefixes (not yet positives) as new positives."""
        path = directory / "new_positives.jsonl"
        if path.exists():
            return sum(1 for _ in iter_records(path))

        def chosen() -> Iterator[dict[str, Any]]:
            for record in iter_texts(self.inputs.web):
                page_id = str(record["id"])
                if page_id in kept or page_id in positives:
                    continue
                url = str(record.get("url", ""))
                if any(under_prefix(url, prefix) for prefix in approved):
                    yield {"id": page_id, "url": url, "text": record.get("text", "")}

        return write_records_atomic(path, chosen())

    def _accuracy(self, kept: set[str]) -> dict[str, float]:
        if self.truth is None:
            return {}
        math = {page for page, is_math in self.truth.items() if is_math}
        hits = len(kept & math)
        return {"recall": round(hits / max(1, len(math)), 4), "precision": round(hits / max(1, len(kept)), 4)}


def run_recall(inputs: RecallInputs, out: Path, config: RecallConfig) -> RecallResult:
    """Runs or resumes the recall pipeline in `out`; see RecallRun."""
    return RecallRun(inputs, out, config).run()
