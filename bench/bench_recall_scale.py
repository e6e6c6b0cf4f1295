"""One recall round over a generated web of 1,000,000 pages with the local executor: pages/s, and the
peak memory of the reduce (the command's own process, not its workers) at 250,000 and 1,000,000
pages, which should stay flat as pages grow; then the in-process loop on the 250,000 pages, where
both can run, for the ratio.

    PYTHONPATH=services nice -n 10 .venv/bin/python bench/bench_recall_scale.py --pages 1000000 --workers 2

The web (10,000 pages a shard, ~700 MB at 1M pages) is written once under --dir and reused. Each
run is a child process, so its peak resident memory (ru_maxrss) is its own. The round trains on at
most --train-pages positives and negatives (the model and training texts are the same for every web
size), with the miniature preset's fastText settings. Last line: pages/s of the local executor over
the in-process loop at 250,000 pages.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARD_PAGES = 10_000


def write_web(directory: Path, pages: int, seed_pages: int) -> None:
    """Pages in shards of SHARD_PAGES, and a seed of math pages of the seeded sites (streamed)."""
    from mathforge.classifier.web import is_seed_candidate, iter_pages
    from mathforge.corpus import write_records_atomic

    if (directory / "done.json").exists() and json.loads((directory / "done.json").read_text())[
        "pages"
    ] == pages:
        return
    shard: list[dict[str, object]] = []
    seed: list[dict[str, object]] = []
    number = 0
    started = time.perf_counter()
    for record in iter_pages(pages, 0):
        shard.append({"id": record["id"], "url": record["url"], "text": record["text"]})
        if len(seed) < seed_pages and is_seed_candidate(record) and len(shard) % 2:
            seed.append(shard[-1])
        if len(shard) == SHARD_PAGES:
            write_records_atomic(directory / "pages" / f"part-{number:05d}.jsonl", shard)
            shard, number = [], number + 1
    if shard:
        write_records_atomic(directory / "pages" / f"part-{number:05d}.jsonl", shard)
    write_records_atomic(directory / "seed" / "seed.jsonl", seed)
    (directory / "done.json").write_text(json.dumps({"pages": pages}))
    print(f"generated {pages} pages in {time.perf_counter() - started:.0f}s")


def one_round(web: Path, shards: int, out: Path, executor: str, workers: int, train_pages: int) -> dict:
    """Runs one recall round (in this process, a child of main) and returns its numbers."""
    from mathforge.classifier.recall import RecallInputs, run_recall
    from mathforge.classifier.recall_config import RecallConfig
    from mathforge.classifier.recall_executor import LocalExecutor
    from mathforge.classifier.recall_sharded import run_recall_sharded

    pages_dir = out / "web"
    pages_dir.mkdir(parents=True, exist_ok=True)
    for shard in sorted((web / "pages").glob("part-*.jsonl"))[:shards]:
        (pages_dir / shard.name).symlink_to(shard)
    config = RecallConfig.from_file(
        REPO / "configs" / "tiny" / "recall.yaml",
        {"max_rounds": 1, "train.positives": train_pages, "train.negatives": train_pages},
    )
    inputs = RecallInputs(pages_dir, web / "seed" / "seed.jsonl")
    started = time.perf_counter()
    if executor == "local":
        with LocalExecutor(workers) as pool:
            result = run_recall_sharded(inputs, out / "run", config, pool)
    else:
        result = run_recall(inputs, out / "run", config)
    seconds = time.perf_counter() - started
    pages = shards * SHARD_PAGES
    return {
        "executor": executor,
        "pages": pages,
        "seconds": round(seconds, 1),
        "pages_per_s": round(pages / seconds),
        "reduce_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "kept": result.rounds[0]["kept"],
    }


def run_child(args: argparse.Namespace, shards: int, executor: str) -> dict:
    out = args.dir / f"run-{executor}-{shards}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    command = [sys.executable, __file__, "--child", executor, "--shards", str(shards), "--dir", str(args.dir)]
    command += ["--workers", str(args.workers), "--train-pages", str(args.train_pages)]
    child = subprocess.run(command, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise RuntimeError(f"{executor} run over {shards} shards failed:\n{child.stderr[-3000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train-pages", type=int, default=20_000, help="positives and negatives at most")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/mathforge-bench-recall-scale"))
    parser.add_argument("--child", choices=("local", "inprocess"), help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.child:
        out = args.dir / f"run-{args.child}-{args.shards}"
        print(
            json.dumps(
                one_round(args.dir / "web", args.shards, out, args.child, args.workers, args.train_pages)
            )
        )
        return 0
    if args.pages % SHARD_PAGES or args.pages < 4 * SHARD_PAGES:
        parser.error(f"--pages must be a multiple of {SHARD_PAGES} and at least {4 * SHARD_PAGES}")
    print(f"load before: {Path('/proc/loadavg').read_text().strip()}")
    write_web(args.dir / "web", args.pages, seed_pages=args.train_pages)
    quarter = args.pages // 4 // SHARD_PAGES
    results = []
    for shards, executor in (
        (quarter, "local"),
        (args.pages // SHARD_PAGES, "local"),
        (quarter, "inprocess"),
    ):
        result = run_child(args, shards, executor)
        results.append(result)
        print(
            f"{executor:>9} {result['pages']:>9} pages: {result['seconds']:>7.1f}s  "
            f"{result['pages_per_s']:>7} pages/s  "
            f"reduce peak {result['reduce_peak_mb']:>5} MB  kept {result['kept']}",
            flush=True,
        )
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")
    small, large, loop = results
    print(f"reduce peak memory 1M/250k pages: {large['reduce_peak_mb'] / small['reduce_peak_mb']:.2f}")
    print(f"in-process loop peak memory at 250k: {loop['reduce_peak_mb']} MB")
    ratio = small["pages_per_s"] / loop["pages_per_s"]
    print(f"ratio local/in-process pages/s at {small['pages']} pages: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "services"))
    sys.exit(main())
