"""Stage 1: generate the miniature web, run the recall rounds with domain discovery (DeepSeekMath §2.1),
then mine the corpus by scoring every page through the classifier service with the last round's
model.

    mined = mine_web(config, run_dir, classifier_client, console)   # MinedWeb(rounds, corpus, ...)
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathforge.classifier.recall import RecallInputs, RecallResult, run_recall
from mathforge.classifier.recall_config import RecallConfig
from mathforge.classifier.web import generate_web
from mathforge.corpus import iter_records, list_shards, write_records_atomic
from mathforge.demo.config import DemoConfig
from mathforge.demo.console import Console
from mathforge.runtime.clients.classifier import ClassifierClient


@dataclass
class MinedWeb:
    """The recall rounds, the mined math corpus and the rest of the web (general text)."""

    rounds: list[dict[str, Any]]
    corpus: list[dict[str, str]]  # id, url, text of the pages the service kept
    other_texts: list[str]
    service: dict[str, Any] = field(default_factory=dict)  # the service-scored corpus's numbers


def _recall_with_progress(
    inputs: RecallInputs, out: Path, config: RecallConfig, console: Console
) -> RecallResult:
    """run_recall in a worker thread, its finished rounds (round-N/metrics.json) shown as a bar."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = run_recall(inputs, out, config)
        except BaseException as exc:  # handed to the main thread below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="recall", daemon=True)
    worker.start()
    with console.bar(config.max_rounds, "recall rounds", "round") as bar:
        while worker.is_alive():
            worker.join(0.5)
            bar.n = sum(
                1 for n in range(1, config.max_rounds + 1) if (out / f"round-{n}" / "metrics.json").exists()
            )
            bar.refresh()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def mine_web(config: DemoConfig, run_dir: Path, classifier: ClassifierClient, console: Console) -> MinedWeb:
    web = run_dir / "web"
    started = time.monotonic()
    manifest = generate_web(web, config.web.pages, seed=config.seed)
    console.line(
        f"   generated {manifest.pages} pages ({manifest.math_pages} math, {manifest.seed_pages} seed) over "
        f"{len(manifest.domains)} domains in {time.monotonic() - started:.1f}s"
    )
    recall_config = RecallConfig.from_file(
        config.web.recall_config, {"seed": config.seed, **config.web.recall_overrides}
    )
    if not recall_config.auto_approve:
        console.line("   the demo approves proposed URL prefixes itself (auto_approve)")
        recall_config.auto_approve = True
    inputs = RecallInputs(web / "pages", web / "seed" / "seed.jsonl", web / "truth.jsonl")
    result = _recall_with_progress(inputs, run_dir / "recall", recall_config, console)
    rounds = result.rounds
    console.table(
        ["round", "kept", "new", "new share", "math domains", "positives", "recall", "precision"],
        [
            [
                r["round"],
                r["kept"],
                r["new"],
                r["new_share"],
                len(r["math_domains"]),
                r["positives"],
                r.get("recall", float("nan")),
                r.get("precision", float("nan")),
            ]
            for r in rounds
        ],
    )
    last_model = run_dir / "recall" / f"round-{rounds[-1]['round']}" / "model.bin"
    reply = classifier.reload(str(last_model.resolve()), timeout_s=120.0)
    pages = [r for shard in list_shards(web / "pages") for r in iter_records(shard)]
    texts = [str(p["text"]) for p in pages]
    scores: list[float] = []
    with console.bar(len(texts), "scoring the web (classifier service)", "doc") as bar:
        for start in range(0, len(texts), config.web.score_batch):
            part = texts[start : start + config.web.score_batch]
            scores.extend(classifier.score(part, batch_size=config.web.score_batch, timeout_s=120.0))
            bar.update(len(part))
    threshold = recall_config.keep_threshold
    corpus = [
        {"id": str(p["id"]), "url": str(p["url"]), "text": str(p["text"])}
        for p, s in zip(pages, scores, strict=True)
        if s >= threshold
    ]
    other = [str(p["text"]) for p, s in zip(pages, scores, strict=True) if s < threshold]
    truth = {str(r["id"]): bool(r["is_math"]) for r in iter_records(web / "truth.jsonl")}
    hits = sum(truth[d["id"]] for d in corpus)
    math_pages = sum(truth.values())
    service = {
        "model_version": int(reply.model_version),
        "kept": len(corpus),
        "recall": round(hits / max(1, math_pages), 4),
        "precision": round(hits / max(1, len(corpus)), 4),
    }
    write_records_atomic(run_dir / "corpus" / "mined.jsonl", corpus)
    (run_dir / "recall" / "service_scoring.json").write_text(json.dumps(service, indent=2) + "\n")
    console.line(
        f"   classifier service (model version {service['model_version']}) kept {len(corpus)} of "
        f"{len(pages)} pages: recall {service['recall']:.4f}, precision {service['precision']:.4f}"
    )
    return MinedWeb(rounds, corpus, other, service)
