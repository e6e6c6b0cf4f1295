"""Stage 2: deduplicate the mined corpus (CheckAndInsert) and decontaminate it against the
benchmark-format fixtures (LoadBenchmarks, then Decontaminate with the paper's 10-gram rule), all
through the dedup service.

The miniature web quotes no benchmark, so the demo pastes `planted` benchmark questions into as
many mined pages first; decontamination must find every one of them.

    clean, counts = clean_corpus(config, mined.corpus, run_dir, dedup_client, console)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from mathforge.corpus import write_records_atomic
from mathforge.demo.config import DemoConfig
from mathforge.demo.console import Console
from mathforge.evaluator.benchmarks import load_benchmark
from mathforge.runtime.clients.dedup import DedupClient


def benchmark_files(directory: str) -> list[Path]:
    files = sorted(Path(directory).resolve().glob("*_test.jsonl"))
    if not files:
        raise FileNotFoundError(f"no *_test.jsonl benchmark files in {directory} (corpus.benchmark_dir)")
    return files


def plant_questions(
    corpus: list[dict[str, str]], files: list[Path], count: int, seed: int
) -> tuple[list[dict[str, str]], set[str]]:
    """A copy of the corpus with `count` benchmark questions appended to as many random pages.

    Only questions of at least 5 words are planted: texts under 3 grams after normalisation are
    below the paper's matching rule (DeepSeekMath §2.1), so a shorter question could not be found."""
    questions = [
        item.question for f in files for item in load_benchmark(f) if len(item.question.split()) >= 5
    ]
    rng = random.Random(seed)
    chosen = rng.sample(range(len(corpus)), min(count, len(corpus), len(questions)))
    planted = [dict(doc) for doc in corpus]
    for index, question in zip(chosen, rng.sample(questions, len(chosen)), strict=True):
        planted[index]["text"] += "\nSeen in a forum: " + question
    return planted, {planted[i]["id"] for i in chosen}


def clean_corpus(
    config: DemoConfig, corpus: list[dict[str, str]], run_dir: Path, dedup: DedupClient, console: Console
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The corpus without duplicates and with benchmark text cut out; and the counts."""
    size = config.corpus.batch
    unique: list[dict[str, str]] = []
    exact = near = 0
    with console.bar(len(corpus), "dedup CheckAndInsert", "doc") as bar:
        for start in range(0, len(corpus), size):
            part = corpus[start : start + size]
            verdicts = dedup.check_and_insert([(d["id"], d["text"]) for d in part], timeout_s=120.0)
            for doc, verdict in zip(part, verdicts, strict=True):
                exact += bool(verdict.exact_duplicate_of)
                near += bool(verdict.near_duplicate_of) and not verdict.exact_duplicate_of
                if verdict.inserted or verdict.already_inserted:  # already_inserted: a retried batch
                    unique.append(doc)
            bar.update(len(part))
    files = benchmark_files(config.corpus.benchmark_dir)
    loaded = dedup.load_benchmarks([str(f) for f in files], replace=True)
    planted_corpus, planted = plant_questions(unique, files, config.corpus.planted, config.seed)
    clean: list[dict[str, str]] = []
    contaminated: set[str] = set()
    with console.bar(len(planted_corpus), "decontaminate", "doc") as bar:
        for start in range(0, len(planted_corpus), size):
            part = planted_corpus[start : start + size]
            results = dedup.decontaminate([(d["id"], d["text"]) for d in part], cut=True, timeout_s=120.0)
            for doc, result in zip(part, results, strict=True):
                if result.contaminated:
                    contaminated.add(doc["id"])
                text = result.cleaned_text if result.contaminated else doc["text"]
                if text.strip():
                    clean.append({**doc, "text": text})
            bar.update(len(part))
    write_records_atomic(run_dir / "corpus" / "clean.jsonl", clean)
    counts: dict[str, Any] = {
        "mined": len(corpus),
        "exact_duplicates": exact,
        "near_duplicates": near,
        "unique": len(unique),
        "benchmark_items": int(sum(loaded.items.values())),
        "benchmark_ngrams": int(loaded.ngrams),
        "planted": len(planted),
        "contaminated": len(contaminated),
        "planted_found": len(planted & contaminated),
        "clean": len(clean),
    }
    console.table(
        ["mined", "exact dup", "near dup", "unique", "planted", "contaminated", "planted found", "clean"],
        [
            [
                counts[k]
                for k in (
                    "mined",
                    "exact_duplicates",
                    "near_duplicates",
                    "unique",
                    "planted",
                    "contaminated",
                    "planted_found",
                    "clean",
                )
            ]
        ],
    )
    console.line(
        f"   decontaminated against {counts['benchmark_items']} items of {len(files)} benchmark files "
        f"({counts['benchmark_ngrams']} 10-grams)"
    )
    return clean, counts
