"""kill -9 the dedup service (embedded store) while it inserts; after a restart every acknowledged
insert is still in the index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.dedup import DedupClient

REPO = Path(__file__).resolve().parents[2]


def _start(store: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "services"), "MATHFORGE_LOG_FORMAT": "json"}
    log = open(log_path, "wb")  # noqa: SIM115 - the child writes to it
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mathforge",
            "serve",
            "dedup",
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--store-path",
            str(store),
        ],
        stdout=log,
        stderr=log,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            if '"msg": "ready"' in line:
                return process, f"127.0.0.1:{json.loads(line)['port']}"
        if process.poll() is not None:
            raise RuntimeError(f"service exited: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    process.kill()
    raise TimeoutError("dedup service did not become ready")


def _document(number: int) -> tuple[str, str]:
    return f"doc-{number}", " ".join(f"n{number}w{j}" for j in range(60))


def test_sigkill_during_inserts_loses_no_acknowledged_insert(tmp_path):
    store = tmp_path / "store"
    process, target = _start(store, tmp_path / "first.log")
    acknowledged: list[str] = []
    stop = threading.Event()

    def insert() -> None:
        with DedupClient(target, timeout_s=10, retry=NO_RETRY) as dedup:
            number = 0
            while not stop.is_set():
                batch = [_document(number + k) for k in range(8)]
                number += 8
                try:
                    verdicts = dedup.check_and_insert(batch)
                except grpc.RpcError:
                    return  # the server died mid-call: this batch was never acknowledged
                acknowledged.extend(v.id for v in verdicts if v.inserted)

    writer = threading.Thread(target=insert)
    writer.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stop.set()
    writer.join(timeout=30)
    assert len(acknowledged) >= 200

    process, target = _start(store, tmp_path / "restarted.log")
    try:
        with DedupClient(target, timeout_s=30) as dedup:
            assert dedup.stats().documents >= len(acknowledged)
            numbers = sorted(int(doc_id.split("-")[1]) for doc_id in acknowledged)
            for start in range(0, len(numbers), 256):
                chunk = [_document(n) for n in numbers[start : start + 256]]
                verdicts = dedup.check([(f"probe-{doc_id}", text) for doc_id, text in chunk])
                assert [v.exact_duplicate_of for v in verdicts] == [doc_id for doc_id, _ in chunk]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
