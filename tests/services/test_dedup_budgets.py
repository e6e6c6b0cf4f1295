"""Byte budgets before work, measured on a real dedup server process: its peak resident memory
(VmHWM) barely moves when a 60 MB or a 20 MB Check is refused, and an accepted multi-megabyte Check
is fingerprinted a slice at a time instead of all at once."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time

import grpc
import pytest
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.dedup import DedupClient

MB = 1 << 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peak_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _megabyte_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(50_000)]
    texts = []
    for n in range(count):
        text = " ".join(rng.choices(words, k=MB // 6))
        texts.append(f"doc{n} " + text[: MB - 200])
    return texts


@pytest.fixture(scope="module")
def dedup(tmp_path_factory):
    port = _free_port()
    process = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "mathforge",
                "serve",
                "dedup",
                "--port",
                str(port),
                "--metrics-port",
                "-1",
            ),
            *("--store-path", str(tmp_path_factory.mktemp("index")), "--fsync", "false"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = DedupClient(f"127.0.0.1:{port}", retry=NO_RETRY, timeout_s=120, max_message_bytes=128 * MB)
        client.wait_ready(60)
        yield process, client
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_big_checks_are_refused_before_memory_grows_and_accepted_ones_stay_bounded(dedup):
    process, client = dedup
    texts = _megabyte_texts(4)
    # Accepted first, from the baseline: 12 MB of text, under the 16 MB budget. Shingled all at
    # once this took ~57x the text (458 MB for 8 MB); a slice at a time it stays far under that.
    before = _peak_mb(process.pid)
    verdicts = client.check([(f"ok-{i}", f"{i} {texts[i % 4]}") for i in range(12)])
    assert len(verdicts) == 12 and not any(v.exact_duplicate_of for v in verdicts)
    accepted_growth = _peak_mb(process.pid) - before
    assert accepted_growth < 25 * 12, f"a 12 MB Check raised peak memory by {accepted_growth:.0f} MB"

    # 60 MB: over the 32 MB message limit, refused by gRPC before a byte is parsed.
    before = _peak_mb(process.pid)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        client.check([(f"big-{i}", texts[i % 4]) for i in range(60)])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert time.monotonic() - started < 30
    assert _peak_mb(process.pid) - before < 16

    # 20 MB: parsed, then refused by max_request_bytes before any text is read or shingled.
    before = _peak_mb(process.pid)
    with pytest.raises(grpc.RpcError) as err:
        client.check([(f"mid-{i}", texts[i % 4]) for i in range(20)])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over the 16777216-byte limit (--max-request-bytes)" in err.value.details()
    growth = _peak_mb(process.pid) - before
    assert growth < 6 * 20, f"a refused 20 MB Check raised peak memory by {growth:.0f} MB"
    assert client.health() == "SERVING"
