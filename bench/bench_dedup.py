"""Dedup benchmark: MinHash signatures and LSH queries against datasketch on the same documents,
num_perm and shingles; decontamination throughput; index memory per document for both stores.

    .venv/bin/python bench/bench_dedup.py                        # 20,000 documents of ~2 KB
    .venv/bin/python bench/bench_dedup.py --documents 5000 --benchmark-dir ../shared/benchmarks

Times are CPU seconds of this process (time.process_time), so they are per core and not inflated
by other load on the machine. Targets: >= 3x datasketch for signatures and LSH queries,
>= 10 MB/s per core for decontamination of 2 KB documents against GSM8K + MATH + CMATH,
<= 1 KB per document for the embedded store at the default settings.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import redis
from datasketch import MinHash, MinHashLSH
from mathforge.dedup.benchmark_sources import load_sources
from mathforge.dedup.config import Config
from mathforge.dedup.decontam import BenchmarkIndex
from mathforge.dedup.fingerprint import Fingerprinter
from mathforge.dedup.stores.embedded import EmbeddedStore
from mathforge.dedup.stores.redis_store import RedisStore

REPO = Path(__file__).resolve().parents[1]


def web_documents(count: int, size: int, seed: int = 0) -> list[str]:
    """Synthetic ~`size`-byte web pages: Zipf-distributed words with some math mixed in."""
    rng = random.Random(seed)
    vocab = [
        f"{rng.choice('bcdfghklmnprstvw')}{rng.choice('aeiou')}{rng.choice('nrstlm')}{i}"
        for i in range(30000)
    ]
    cumulative = np.cumsum([1 / (rank + 1) for rank in range(len(vocab))]).tolist()
    formulas = ["$x^2 + 1 = 0$", "(a+b)^2", "\\frac{1}{2}", "3 * 4 = 12", "f(x) = 2x - 5"]
    docs = []
    for _ in range(count):
        words = rng.choices(vocab, cum_weights=cumulative, k=size // 5)
        for position in rng.sample(range(len(words)), len(words) // 30):
            words[position] = rng.choice(formulas)
        text = " ".join(words)
        docs.append(text[: text.rfind(" ", 0, size)])
    return docs


def near_copies(docs: list[str], seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    out = []
    for doc in docs:
        words = doc.split(" ")
        for position in rng.sample(range(len(words)), max(1, len(words) // 100)):
            words[position] = "edited"
        out.append(" ".join(words))
    return out


def cpu(fn, *args):
    gc.collect()
    start = time.process_time()
    result = fn(*args)
    return result, time.process_time() - start


def bench_signatures(config: Config, docs: list[str]) -> None:
    normalizer, hasher = config.normalizer(), config.minhasher()
    token_lists = [normalizer.tokens(d) for d in docs]
    shingle_bytes = []
    for tokens in token_lists:
        values = [t.replace(" ", "") for t in tokens]
        k = min(config.shingle_size, len(values))
        shingle_bytes.append([" ".join(values[i : i + k]).encode() for i in range(len(values) - k + 1)])

    def ours_from_text():
        return hasher.signatures([normalizer.tokens(d) for d in docs])

    def datasketch_from_text():
        out = []
        for d in docs:
            values = normalizer.token_values(d)
            k = min(config.shingle_size, len(values))
            m = MinHash(num_perm=config.num_perm, seed=1)
            m.update_batch([" ".join(values[i : i + k]).encode() for i in range(len(values) - k + 1)])
            out.append(m)
        return out

    def datasketch_from_shingles():
        out = []
        for shingles in shingle_bytes:
            m = MinHash(num_perm=config.num_perm, seed=1)
            m.update_batch(shingles)
            out.append(m)
        return out

    shingle_hashes, counts = hasher.batch_shingles(token_lists)

    def best(fn, *args):  # best of three, to keep other load on the machine out
        return min(cpu(fn, *args)[1] for _ in range(3))

    ours_text, theirs_text = best(ours_from_text), best(datasketch_from_text)
    ours_sig, theirs_sig = best(hasher.sign, shingle_hashes, counts), best(datasketch_from_shingles)
    n = len(docs)
    print(f"MinHash signatures, {n} docs, num_perm {config.num_perm}, {config.shingle_size}-word shingles")
    print(
        f"  from text (tokenise + shingle + sign): ours {n / ours_text:9.0f} docs/s   datasketch "
        f"{n / theirs_text:8.0f} docs/s   ratio {theirs_text / ours_text:5.1f}x"
    )
    print(
        f"  from shingles (sign only):             ours {n / ours_sig:9.0f} docs/s   datasketch "
        f"{n / theirs_sig:8.0f} docs/s   ratio {theirs_sig / ours_sig:5.1f}x"
    )


def bench_lsh(config: Config, docs: list[str], queries: list[str]) -> None:
    normalizer, hasher = config.normalizer(), config.minhasher()
    fingerprinter = Fingerprinter(normalizer, hasher)
    prints = fingerprinter.fingerprints([(f"d{i}", d) for i, d in enumerate(docs)])
    query_prints = fingerprinter.fingerprints([(f"q{i}", d) for i, d in enumerate(queries)])
    lean = []
    for fp in [*prints, *query_prints]:
        m = MinHash(
            num_perm=config.num_perm, seed=1, hashvalues=fp.signature.astype(np.uint64), scheme="affine32"
        )
        lean.append(m)
    directory = Path(tempfile.mkdtemp())
    try:
        store = EmbeddedStore(directory, hasher, config.policy(), fsync=False)
        store.check_and_insert(prints)
        lsh = MinHashLSH(
            threshold=config.threshold, num_perm=config.num_perm, params=(config.bands, config.rows)
        )
        for i, m in enumerate(lean[: len(prints)]):
            lsh.insert(f"d{i}", m)
        batch = 256

        def ours_query() -> list:
            return [
                v
                for s in range(0, len(query_prints), batch)
                for v in store.check(query_prints[s : s + batch])
            ]

        def datasketch_query() -> list:
            return [lsh.query(m) for m in lean[len(prints) :]]

        # Best of three runs each, after a warm-up, to keep other load on the machine out.
        verdicts, ours = min((cpu(ours_query) for _ in range(3)), key=lambda r: r[1])
        found, theirs = min((cpu(datasketch_query) for _ in range(3)), key=lambda r: r[1])
        n = len(queries)
        hits = sum(1 for v in verdicts if v.near_duplicate_of or v.exact_duplicate_of)
        print(
            f"LSH query, index of {len(docs)} docs, {n} queries ({config.bands} bands x {config.rows} rows)"
        )
        print(
            f"  ours (batched by {batch}, with Jaccard verification) {n / ours:9.0f} q/s   datasketch query "
            f"{n / theirs:8.0f} q/s   ratio {theirs / ours:5.1f}x   (found {hits}, datasketch candidates "
            f"for {sum(1 for f in found if f)})"
        )
        store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def bench_memory(config: Config, docs: list[str]) -> None:
    fingerprinter = Fingerprinter(config.normalizer(), config.minhasher())
    prints = fingerprinter.fingerprints([(f"doc-{i:08d}", d) for i, d in enumerate(docs)])
    n = len(prints)
    directory = Path(tempfile.mkdtemp())
    try:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        store = EmbeddedStore(directory, fingerprinter.hasher, config.policy(), fsync=False)
        for start in range(0, n, 512):
            store.check_and_insert(prints[start : start + 512])
        traced = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        print(f"Index memory per document ({n} docs, ids like 'doc-00000001')")
        print(
            f"  embedded: {traced / n:6.0f} B/doc traced ({store.memory_bytes() / n:.0f} accounted), "
            f"{store.stored_bytes() / n:.0f} B/doc on disk"
        )
        store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    lean = [
        MinHash(
            num_perm=config.num_perm, seed=1, hashvalues=fp.signature.astype(np.uint64), scheme="affine32"
        )
        for fp in prints
    ]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm, params=(config.bands, config.rows))
    for fp, m in zip(prints, lean, strict=True):
        lsh.insert(fp.id, m)
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"  datasketch MinHashLSH (keys + band tables, signatures not kept): {traced / n:6.0f} B/doc")
    bench_redis_memory(config, prints)


def bench_redis_memory(config: Config, prints: list) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        print("  redis: redis-server not installed, skipped")
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = tempfile.mkdtemp()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--dir", directory, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        base = int(client.info("memory")["used_memory"])
        from mathforge.dedup.stores.base import StoreSettings

        settings = StoreSettings(config.num_perm, config.bands, config.rows, config.shingle_size, config.seed)
        store = RedisStore(f"redis://127.0.0.1:{port}/0", "bench", settings, config.policy())
        start = time.perf_counter()
        for s in range(0, len(prints), 512):
            store.check_and_insert(prints[s : s + 512])
        elapsed = time.perf_counter() - start
        used = int(client.info("memory")["used_memory"]) - base
        print(
            f"  redis: {used / len(prints):6.0f} B/doc (used_memory), check-and-insert "
            f"{len(prints) / elapsed:.0f} docs/s (Lua, pipelined)"
        )
        store.close()
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def bench_decontamination(config: Config, benchmark_dir: Path, docs: list[str]) -> None:
    if not benchmark_dir.is_dir():
        print(f"Decontamination: {benchmark_dir} not found, skipped (--benchmark-dir)")
        return
    index: BenchmarkIndex = config.benchmark_index()
    (_, build) = cpu(load_sources, index, ["gsm8k", "math", "cmath"], str(benchmark_dir))
    # 1% of the documents carry a planted benchmark question, so the offset path is timed too.
    rng = random.Random(4)
    docs = list(docs)
    for position in rng.sample(range(len(docs)), len(docs) // 100):
        benchmark, item = index.items[rng.randrange(len(index.items))]
        docs[position] = docs[position][:1000] + " " + _question(benchmark_dir, benchmark, item)
    megabytes = sum(len(d.encode()) for d in docs) / 1e6
    found, seconds = min((cpu(index.find_many, docs) for _ in range(2)), key=lambda r: r[1])
    print(
        f"Decontamination: index of GSM8K + MATH + CMATH ({len(index.items)} items, {index.ngrams} 10-grams, "
        f"built in {build:.1f} s)"
    )
    print(
        f"  {len(docs)} docs of ~2 KB: {megabytes / seconds:5.1f} MB/s per core "
        f"({sum(1 for f in found if f)} contaminated)"
    )


def _question(benchmark_dir: Path, benchmark: str, item_id: str) -> str:
    from mathforge.evaluator.benchmarks import KNOWN_BENCHMARKS, load_benchmark

    items = _ITEMS.setdefault(benchmark, load_benchmark(benchmark_dir / KNOWN_BENCHMARKS[benchmark]))
    return next(item.question for item in items if item.id == item_id)


_ITEMS: dict[str, list] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--benchmark-dir", default=str(REPO.parent / "shared" / "benchmarks"))
    args = parser.parse_args()
    config = Config()
    docs = web_documents(args.documents, 2000)
    queries = near_copies(docs[: args.queries // 2]) + web_documents(
        args.queries - args.queries // 2, 2000, seed=9
    )
    bench_signatures(config, docs[:5000])
    bench_lsh(config, docs, queries)
    bench_decontamination(config, Path(args.benchmark_dir), docs[:5000])
    bench_memory(config, docs)


if __name__ == "__main__":
    main()
