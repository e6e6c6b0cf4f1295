"""Classifier benchmark: documents per second through the Classifier service over gRPC (2 KB
documents, batches of 512) against in-process fastText predict on the same documents and the same
model, and documents per second per core of `mathforge data score`.

    .venv/bin/python bench/bench_classifier.py                    # 20,480 documents, paper dim 256
    .venv/bin/python bench/bench_classifier.py --documents 5120 --dim 64

The service runs in its own process (`mathforge serve classifier`), as in production; the client
streams batches over two concurrent ScoreStream calls so that transfer overlaps scoring. The
in-process peer is MathModel.score (text preparation + fastText predict) on one core; raw fastText
predict on already-prepared text is printed too. Target: service / in-process >= 0.7.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from mathforge.classifier.model import MathModel, TrainSettings, train_classifier
from mathforge.classifier.text import prepare_text
from mathforge.classifier.web import iter_pages
from mathforge.corpus import write_records_atomic
from mathforge.runtime.clients.classifier import ClassifierClient

BATCH = 512
DOC_CHARS = 2048


def two_kb_documents(count: int) -> list[str]:
    """Documents of 2 KB made of consecutive generated pages (math and other, in web proportions)."""
    documents, current = [], ""
    for page in iter_pages(count * 4, seed=11):
        current += str(page["text"]) + "\n"
        if len(current) >= DOC_CHARS:
            documents.append(current[:DOC_CHARS])
            current = ""
            if len(documents) == count:
                break
    return documents


def start_server(model: Path) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "mathforge",
        "serve",
        "classifier",
        "--model-path",
        str(model),
        "--port",
        "0",
        "--metrics-port",
        "-1",
        "--log-format",
        "text",
        "--max-items",
        str(BATCH),
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        match = re.search(r"listening.*?port[\"=: ]+(\d+)", line)
        if match:
            threading.Thread(target=lambda: process.stderr.read(), daemon=True).start()  # type: ignore[union-attr]
            return process, f"127.0.0.1:{match.group(1)}"
    raise RuntimeError("the classifier service did not report its port")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_rate(target: str, documents: list[str], server_pid: int) -> tuple[float, float]:
    """(docs per wall second, docs per CPU second of the server process)."""
    batches = [documents[i : i + BATCH] for i in range(0, len(documents), BATCH)]
    with ClassifierClient(target, timeout_s=600) as client:
        client.wait_ready(120)
        client.score(documents[:BATCH])  # warm-up
        halves = [batches[0::2], batches[1::2]]
        counts = [0, 0]

        def run(i: int) -> None:
            counts[i] = sum(len(s) for s in client.score_stream(iter(halves[i])))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        cpu_before = process_cpu_seconds(server_pid)
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        cpu = process_cpu_seconds(server_pid) - cpu_before
    assert sum(counts) == len(documents)
    return len(documents) / elapsed, len(documents) / cpu


def in_process_rate(model: MathModel, documents: list[str]) -> tuple[float, float, float]:
    """(docs per wall second, docs per CPU second, docs per CPU second of raw predict)."""
    model.score(documents[:BATCH])
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(0, len(documents), BATCH):
        model.score(documents[i : i + BATCH])
    wall = len(documents) / (time.perf_counter() - started)
    cpu = len(documents) / (time.process_time() - cpu_started)
    prepared = [prepare_text(d) for d in documents]
    cpu_started = time.process_time()
    for i in range(0, len(prepared), BATCH):
        model.model.predict(prepared[i : i + BATCH], k=1)
    raw = len(documents) / (time.process_time() - cpu_started)
    return wall, cpu, raw


def cli_rate_per_core(model: Path, documents: list[str], work: Path) -> float:
    corpus = work / "corpus"
    for i in range(4):
        part = documents[i::4]
        write_records_atomic(
            corpus / f"part-{i}.jsonl.zst", ({"id": f"{i}-{j}", "text": t} for j, t in enumerate(part))
        )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mathforge",
            "data",
            "score",
            "--input",
            str(corpus),
            "--model",
            str(model),
            "--shard",
            "0/1",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return len(documents) / cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=40 * BATCH)
    parser.add_argument("--dim", type=int, default=256, help="model dim (paper: 256)")
    args = parser.parse_args()
    documents = two_kb_documents(args.documents)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        pages = list(iter_pages(4000, seed=12))
        settings = TrainSettings(dim=args.dim, epoch=3)  # paper n-grams, min count and bucket count
        started = time.perf_counter()
        train_classifier(
            [str(p["text"]) for p in pages if p["is_math"]],
            [str(p["text"]) for p in pages if not p["is_math"]],
            work / "model.bin",
            settings,
        )
        size_mb = (work / "model.bin").stat().st_size / 2**20
        print(
            f"model: dim {args.dim}, bucket {settings.bucket}, {size_mb:.0f} MiB, "
            f"trained in {time.perf_counter() - started:.1f}s"
        )
        model = MathModel.load(work / "model.bin")
        local, local_cpu, raw = in_process_rate(model, documents)
        server, target = start_server(work / "model.bin")
        try:
            served, served_cpu = service_rate(target, documents, server.pid)
        finally:
            server.terminate()
            server.wait(30)
        per_core = cli_rate_per_core(work / "model.bin", documents, work)
    print(f"{len(documents)} documents of {DOC_CHARS} bytes, batches of {BATCH}")
    print(f"{'':48} {'docs/s wall':>12} {'docs/CPU-s':>12}")
    print(f"{'in-process MathModel.score (prepare + predict)':48} {local:12.0f} {local_cpu:12.0f}")
    print(f"{'in-process fastText predict (prepared text)':48} {'':>12} {raw:12.0f}")
    print(f"{'Classifier service over gRPC (server CPU)':48} {served:12.0f} {served_cpu:12.0f}")
    print(
        f"ratio service / in-process: {served / local:.2f} wall, {served_cpu / local_cpu:.2f} CPU "
        "(target >= 0.7)"
    )
    print(f"mathforge data score: {per_core:.0f} docs/s per core (CPU time of the command)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
