"""datatrove as the peer, on the same generated corpus: its fastText filter against our shard scoring
(same model), its MinHash dedup pipeline against ours (docs/s per core and planted near-duplicate
pairs found), and its n-gram decontamination against ours (recall on planted benchmark passages and
false positives on novel math prose, when the real GSM8K and MATH files are present).

    make bench-peers         # once: .venv-bench with datatrove 0.10.1 (never a runtime dependency)
    PYTHONPATH=services .venv/bin/python bench/bench_datatrove.py --documents 20000

datatrove runs in .venv-bench, in a child process running this file with --peer; ours runs here.
Times are CPU seconds of the process doing the work (and its children), so per core. Both dedup
pipelines use 5-gram shingles; datatrove its defaults (14 bands x 8 hashes, no verification: its
LSH admits 36% of pairs at Jaccard 0.65 and 92% at 0.8); ours 128 permutations as 32 bands x 4
rows with the estimated Jaccard verified at 0.65, set so that our recall of planted pairs is at
least datatrove's (the service defaults, 16 x 8 verified at 0.8, find fewer pairs at 4% edits).
Planted near-duplicates are copies of earlier documents with 1%, 2% or 4% of the words replaced;
a planted pair is found when the copy or the original is dropped. Last line:
`ratio datatrove/ours dedup time: X` (target >= 2 at equal or better recall of planted pairs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEER_PYTHON = REPO / ".venv-bench" / "bin" / "python"
EDIT_RATES = (0.01, 0.02, 0.04)


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# ---- the corpus (ours, in .venv) ----------------------------------------------------------------
def write_corpus(directory: Path, documents: int, planted: int, seed: int) -> dict[str, str]:
    """JSONL shards of generated web pages with planted near-duplicates; returns {copy id: original id}."""
    from mathforge.classifier.web import iter_pages
    from mathforge.corpus import write_records_atomic

    rng = random.Random(seed)
    pages = [
        {"id": str(p["id"]), "url": str(p["url"]), "text": str(p["text"])}
        for p in iter_pages(documents, seed)
    ]
    truth: dict[str, str] = {}
    for number in range(planted):
        original = pages[rng.randrange(len(pages) // 2)]
        words = original["text"].split(" ")
        for _ in range(max(1, int(len(words) * EDIT_RATES[number % len(EDIT_RATES)]))):
            words[rng.randrange(len(words))] = rng.choice(["alpha", "beta", "gamma", "delta", "omega"])
        copy = {"id": f"copy{number:05d}", "url": original["url"] + "?copy", "text": " ".join(words)}
        pages.insert(rng.randrange(len(pages) // 2 + 1, len(pages) + 1), copy)
        truth[copy["id"]] = original["id"]
    for start in range(0, len(pages), 5000):
        write_records_atomic(
            directory / "corpus" / f"part-{start // 5000:05d}.jsonl", pages[start : start + 5000]
        )
    (directory / "truth.json").write_text(json.dumps(truth))
    return truth


def pairs_found(truth: dict[str, str], kept: set[str]) -> dict[str, float]:
    """Share of planted pairs with the copy or the original dropped, per edit rate and overall."""
    found: dict[str, list[bool]] = {}
    for number, (copy, original) in enumerate(sorted(truth.items())):
        rate = f"{EDIT_RATES[int(copy[4:]) % len(EDIT_RATES)]:.0%}"
        found.setdefault(rate, []).append(not (copy in kept and original in kept))
        del number
    shares = {rate: sum(v) / len(v) for rate, v in sorted(found.items())}
    shares["all"] = sum(sum(v) for v in found.values()) / sum(len(v) for v in found.values())
    return shares


def train_model(directory: Path) -> Path:
    from mathforge.classifier.model import TrainSettings, train_classifier
    from mathforge.classifier.web import iter_pages

    pages = list(iter_pages(6000, 99))
    model = directory / "model.bin"
    train_classifier(
        [p["text"] for p in pages if p["is_math"]],
        [p["text"] for p in pages if not p["is_math"]],
        model,
        TrainSettings(dim=32, epoch=10, bucket=1 << 17, min_count=2),
    )
    return model


def ours_score(directory: Path, model: Path) -> dict[str, float]:
    """The recall round's score phase (recall_map.py) over every shard, in this process."""
    from mathforge.classifier.recall_map import read_task, run_task, write_json_atomic
    from mathforge.corpus import list_shards

    phase = directory / "ours-score"
    phase.mkdir()
    shards = [str(p) for p in list_shards(directory / "corpus")]
    task = {
        "phase": "score",
        "round": 1,
        "seed": 0,
        "shards": shards,
        "model": str(model),
        "max_chars": 100_000,
    }
    write_json_atomic(phase / "task.json", {**task, "batch": 4096, "floor": 50_000, "prefix_depth": 1})
    read_task(phase)
    started = cpu_seconds()
    done = [run_task(phase, i) for i in range(len(shards))]
    seconds = cpu_seconds() - started
    documents = sum(d["pages"] for d in done)
    return {"docs": documents, "kept": sum(d["candidates"] for d in done), "cpu_s": seconds}


def ours_dedup(directory: Path, settings: list[str]) -> tuple[dict[str, float], set[str]]:
    from mathforge.cli import main
    from mathforge.corpus import iter_records, list_shards

    out = directory / "ours-dedup"
    argv = ["data", "dedup", "--input", str(directory / "corpus"), "--output-dir", str(out)]
    started = cpu_seconds()
    with open(os.devnull, "w") as quiet:
        saved, sys.stdout = sys.stdout, quiet
        try:
            index = ["--store", "embedded", "--store-path", str(directory / "ours-index")]
            code = main([*argv, *index, *settings])
        finally:
            sys.stdout = saved
    seconds = cpu_seconds() - started
    if code != 0:
        raise RuntimeError(f"mathforge data dedup exited {code}")
    kept = {str(r["id"]) for shard in list_shards(out) for r in iter_records(shard)}
    documents = sum(1 for shard in list_shards(directory / "corpus") for _ in iter_records(shard))
    return {"docs": documents, "kept": len(kept), "cpu_s": seconds}, kept


def decontam_documents(
    benchmark_dir: Path, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]] | None:
    files = [benchmark_dir / name for name in ("gsm8k_test.jsonl", "math_test.jsonl")]
    if not all(f.is_file() for f in files):
        return None
    sys.path.insert(0, str(REPO / "bench"))
    import bench_decontam
    from mathforge.evaluator.benchmarks import load_benchmark

    rng = random.Random(seed)
    items = [item for f in files for item in load_benchmark(f)]
    return bench_decontam.planted_documents(items, 1000, rng), bench_decontam.negative_documents(1000, rng)


def ours_decontam(benchmark_dir: Path, planted: list, negatives: list) -> dict[str, float]:
    from mathforge.dedup.benchmark_sources import load_sources
    from mathforge.dedup.decontam import BenchmarkIndex

    index = BenchmarkIndex()
    load_sources(index, ["gsm8k", "math"], benchmark_dir=str(benchmark_dir))
    started = cpu_seconds()
    found = [bool(m) for m in index.find_many([d for _, d in planted])]
    flagged = [bool(m) for m in index.find_many([d for _, d in negatives])]
    seconds = cpu_seconds() - started
    return {"recall": sum(found) / len(found), "fp_rate": sum(flagged) / len(flagged), "cpu_s": seconds}


# ---- the peer (datatrove, in .venv-bench) ---------------------------------------------------------
def peer(directory: Path, model: Path, benchmark_dir: Path) -> dict[str, object]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.pipeline.filters import FastTextClassifierFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    results: dict[str, object] = {}
    corpus = str(directory / "corpus")
    work = directory / "datatrove"

    def run(pipeline: list, tasks: int = 1) -> None:
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / "logs" / str(time.time()))
        ).run()

    started = cpu_seconds()
    run(
        [
            JsonlReader(corpus),
            FastTextClassifierFilter(str(model), keep_labels=("math", 0.5), newline_replacement=" "),
            JsonlWriter(str(work / "math")),
        ]
    )
    results["score"] = {"cpu_s": cpu_seconds() - started, "kept": _count(work / "math")}

    config = MinhashConfig()
    started = cpu_seconds()
    run([JsonlReader(corpus), MinhashDedupSignature(output_folder=str(work / "sigs"), config=config)])
    run(
        [
            MinhashDedupBuckets(
                input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config
            )
        ],
        tasks=config.num_buckets,
    )
    run(
        [
            MinhashDedupCluster(
                input_folder=str(work / "buckets"), output_folder=str(work / "remove_ids"), config=config
            )
        ]
    )
    run(
        [
            JsonlReader(corpus),
            MinhashDedupFilter(input_folder=str(work / "remove_ids")),
            JsonlWriter(str(work / "deduped")),
        ]
    )
    results["dedup"] = {"cpu_s": cpu_seconds() - started, "kept_ids": sorted(_ids(work / "deduped"))}

    planted_path = directory / "decontam.json"
    if planted_path.exists():
        results["decontam"] = _peer_decontam(json.loads(planted_path.read_text()), benchmark_dir)
    return results


def _peer_decontam(documents: dict, benchmark_dir: Path) -> dict[str, float]:
    """datatrove's NGramsDecontFilter at 10-grams; its index (normally built from lighteval tasks,
    which download their data) is built here with its own indexer's hashing from the same files."""
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter, NGramsDecontIndexer
    from datatrove.utils.hashing import create_hash_func

    config = NGramsDecontConfig(n_grams=10, find_overlap_ngrams=False)
    index_dir = Path(tempfile.mkdtemp())
    decont = NGramsDecontFilter(str(index_dir), config=config)
    helper = type(
        "Indexer",
        (),
        {"config": config, "tokenizer": decont.tokenizer, "hash_func": create_hash_func(config.hash_config)},
    )
    hashes: set[int] = set()
    for name, fields in (
        ("gsm8k_test.jsonl", ("question", "answer")),
        ("math_test.jsonl", ("problem", "solution")),
    ):
        for line in (benchmark_dir / name).read_text().splitlines():
            row = json.loads(line)
            for field in fields:
                hashes.update(NGramsDecontIndexer.compute_hashes(helper, row[field]))
    import numpy as np

    np.array(sorted(hashes), dtype=config.hash_config.np_descr).tofile(index_dir / "benchmarks.index.hashes")
    started = cpu_seconds()
    found = [
        decont.filter(Document(text=t, id=str(i))) is not True for i, t in enumerate(documents["planted"])
    ]
    flagged = [
        decont.filter(Document(text=t, id=str(i))) is not True for i, t in enumerate(documents["negatives"])
    ]
    seconds = cpu_seconds() - started
    return {"recall": sum(found) / len(found), "fp_rate": sum(flagged) / len(flagged), "cpu_s": seconds}


def _ids(folder: Path) -> set[str]:
    import gzip

    ids: set[str] = set()
    for path in folder.glob("*.jsonl.gz"):
        with gzip.open(path, "rt") as lines:
            ids.update(str(json.loads(line)["id"]) for line in lines)
    return ids


def _count(folder: Path) -> int:
    return len(_ids(folder))


# ---- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--planted", type=int, default=1500, help="planted near-duplicate copies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.65,
        help="our near-duplicate Jaccard threshold (service default 0.8)",
    )
    parser.add_argument("--bands", type=int, default=32, help="our LSH bands (x --rows = 128 permutations)")
    parser.add_argument("--rows", type=int, default=4, help="our LSH rows per band")
    parser.add_argument("--benchmark-dir", type=Path, default=REPO.parent / "shared" / "benchmarks")
    parser.add_argument("--peer", type=Path, help=argparse.SUPPRESS)  # the child: a work directory
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.peer:
        print(json.dumps(peer(args.peer, args.peer / "model.bin", args.benchmark_dir)))
        return 0
    if not PEER_PYTHON.exists():
        print(f"skipped: {PEER_PYTHON} not found; `make bench-peers` creates it (datatrove 0.10.1)")
        return 0
    sys.path.insert(0, str(REPO / "services"))
    print(f"load before: {Path('/proc/loadavg').read_text().strip()}")
    with tempfile.TemporaryDirectory(prefix="bench-datatrove-") as scratch:
        directory = Path(scratch)
        truth = write_corpus(directory, args.documents, args.planted, args.seed)
        model = train_model(directory)
        decontam = decontam_documents(args.benchmark_dir, args.seed)
        if decontam is not None:
            planted, negatives = decontam
            texts = {"planted": [d for _, d in planted], "negatives": [d for _, d in negatives]}
            (directory / "decontam.json").write_text(json.dumps(texts))
        environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        child = subprocess.run(
            [
                str(PEER_PYTHON),
                __file__,
                "--peer",
                str(directory),
                "--benchmark-dir",
                str(args.benchmark_dir),
            ],
            capture_output=True,
            text=True,
            env={**environment, "HF_HUB_OFFLINE": "1"},
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"datatrove run failed:\n{child.stderr[-4000:]}")
        theirs = json.loads(child.stdout.strip().splitlines()[-1])
        score = ours_score(directory, model)
        settings = ["--threshold", str(args.threshold), "--bands", str(args.bands), "--rows", str(args.rows)]
        dedup, kept = ours_dedup(directory, settings)
        documents = score["docs"]
        print(
            f"{documents} documents ({args.planted} planted near-duplicates), load after: "
            f"{Path('/proc/loadavg').read_text().strip()}"
        )
        their_score = theirs["score"]
        print(
            f"fastText filter  datatrove {documents / their_score['cpu_s']:>9.0f} docs/s/core "
            f"(kept {their_score['kept']})"
            f"   ours {documents / score['cpu_s']:>9.0f} docs/s/core (kept {score['kept']})"
        )
        print(f"ratio ours/datatrove scoring docs/s: {their_score['cpu_s'] / score['cpu_s']:.2f}")
        ours_found = pairs_found(truth, kept)
        their_found = pairs_found(truth, set(theirs["dedup"]["kept_ids"]))
        print(
            f"MinHash dedup    datatrove {documents / theirs['dedup']['cpu_s']:>9.0f} docs/s/core "
            f"(kept {len(theirs['dedup']['kept_ids'])}, planted pairs found {their_found})"
        )
        print(
            f"                 ours      {documents / dedup['cpu_s']:>9.0f} docs/s/core "
            f"(kept {dedup['kept']}, planted pairs found {ours_found})"
        )
        if decontam is not None and "decontam" in theirs:
            ours_d = ours_decontam(args.benchmark_dir, *decontam)
            their_d = theirs["decontam"]
            for name, d, count in (("datatrove", their_d, 2000), ("ours", ours_d, 2000)):
                print(
                    f"decontamination  {name:<9} recall {d['recall']:.3f}  "
                    f"false-positive rate {d['fp_rate']:.3f}  "
                    f"{count / d['cpu_s']:.0f} docs/s/core"
                )
        else:
            print(f"decontamination: skipped (GSM8K and MATH files not found under {args.benchmark_dir})")
        print(f"ratio datatrove/ours dedup time: {theirs['dedup']['cpu_s'] / dedup['cpu_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
