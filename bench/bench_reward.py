"""Reward benchmark: ORM scoring throughput with dynamic batching against one request at a time, on
the same tiny model, at several concurrencies.

    .venv/bin/python bench/bench_reward.py                          # tiny ORM, CPU
    .venv/bin/python bench/bench_reward.py --concurrency 1,8,32,128 --seconds 5 --preset small

Two Reward servers run as separate processes from the same seed (so the same weights): one with
dynamic batching (--max-batch, --max-wait-ms), one with it off (every request its own forward pass).
An asyncio gRPC client keeps C requests of one (question, response) item each in flight, in short
slices that alternate between the two servers (a shared machine's load then drifts over both alike).
Per concurrency it prints requests/s, p50 and p99 latency, the servers' CPU milliseconds per request,
and the ratios batched/serial (target: >= 3x throughput at 32). Two workloads: full step-by-step
solutions (120-200 tokens) and bare answers to short questions (about 15 tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import grpc

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))

from mathforge.training.synthetic_math import generate_problems  # noqa: E402
from mathforge.v1 import reward_pb2, reward_pb2_grpc  # noqa: E402


class RewardServer:
    """`mathforge serve reward` in a subprocess with random-weight models; its port from the log."""

    def __init__(self, preset: str, *flags: str):
        command = [
            sys.executable,
            "-m",
            "mathforge",
            "serve",
            "reward",
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--random-model-preset",
            preset,
            "--log-format",
            "json",
            *flags,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO / "services"), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        assert self.process.stderr is not None
        self.port = 0
        for line in self.process.stderr:
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("msg") == "listening":
                self.port = int(entry["port"])
            if entry.get("msg") == "ready":
                break
        if not self.port:
            raise RuntimeError(f"reward server did not start: {' '.join(command)}")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def requests(n: int, workload: str) -> list[reward_pb2.RewardRequest]:
    """One-item ORM requests: full step-by-step solutions of word problems (about 120-200 tokens with
    the built-in tokenizer) or bare final answers to short questions (about 15 tokens)."""
    if workload == "solutions":
        pairs = [(p.question, p.solution) for p in generate_problems(n, seed=11, difficulty=2)]
    else:
        pairs = [(f"What is {i} + {i + 3}?", f"\\boxed{{{2 * i + 3}}}") for i in range(n)]
    return [
        reward_pb2.RewardRequest(
            kind=reward_pb2.REWARD_ORM, items=[reward_pb2.RewardItem(question=q, response=r)]
        )
        for q, r in pairs
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; nan elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port: int, concurrency: int, seconds: float, pool: list[reward_pb2.RewardRequest]) -> tuple:
    """Keeps `concurrency` calls in flight for `seconds`; returns (latencies, elapsed seconds)."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reward_pb2_grpc.RewardStub(channel)
        await stub.Score(pool[0], timeout=60)  # warm-up
        deadline = time.perf_counter() + seconds

        async def caller(index: int) -> None:
            k = index
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await stub.Score(pool[k % len(pool)], timeout=120)
                latencies.append(time.perf_counter() - started)
                k += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        return latencies, time.perf_counter() - began


def measure(
    servers: dict[str, RewardServer],
    concurrency: int,
    seconds: float,
    rounds: int,
    pool: list[reward_pb2.RewardRequest],
) -> dict[str, dict[str, float]]:
    """Alternates short slices between the servers (so drifting machine load hits both alike) and
    pools each server's calls: requests/s, p50/p99 latency, server CPU ms per request."""
    calls: dict[str, list[float]] = {name: [] for name in servers}
    elapsed = dict.fromkeys(servers, 0.0)
    cpu = dict.fromkeys(servers, 0.0)
    for _ in range(rounds):
        for name, server in servers.items():
            before = cpu_seconds(server.process.pid)
            latencies, took = asyncio.run(load(server.port, concurrency, seconds / rounds, pool))
            cpu[name] += cpu_seconds(server.process.pid) - before
            calls[name] += latencies
            elapsed[name] += took
    out = {}
    for name, latencies in calls.items():
        latencies.sort()
        out[name] = {
            "rps": len(latencies) / elapsed[name],
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "cpu_ms": 1000 * cpu[name] / max(1, len(latencies)),
        }
    return out


def _cells(m: dict[str, float], width: int) -> str:
    return f"{m['rps']:>{width}.1f} {m['p50_ms']:>7.1f} {m['p99_ms']:>7.1f} {m['cpu_ms']:>6.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="model preset of the random-weight ORM")
    parser.add_argument("--concurrency", default="1,8,32,128", help="comma-separated concurrencies")
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring time per point")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3, help="alternating slices per point")
    parser.add_argument(
        "--workload",
        default="solutions,answers",
        help="solutions (full CoT solutions) and/or answers (short question, boxed answer)",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    with ExitStack() as stack:
        batched = RewardServer(
            args.preset,
            *("--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)),
            *("--max-batch-tokens", str(args.max_batch_tokens)),
        )
        stack.callback(batched.close)
        serial = RewardServer(args.preset, "--dynamic-batching", "false")
        stack.callback(serial.close)
        print(
            f"ORM '{args.preset}' (random weights), one item per request, {args.seconds:.0f} s per point; "
            f"batching: max_batch {args.max_batch}, max_batch_tokens {args.max_batch_tokens}, "
            f"max_wait {args.max_wait_ms} ms"
        )
        servers = {"batched": batched, "serial": serial}
        for workload in args.workload.split(","):
            pool = requests(256, workload)
            print(f"\nworkload: {workload}")
            print(
                f"{'conc':>5} | {'batched req/s':>13} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>6} | "
                f"{'serial req/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>6} | ratio req/s (cpu/req)"
            )
            for concurrency in levels:
                m = measure(servers, concurrency, args.seconds, args.rounds, pool)
                b, s = m["batched"], m["serial"]
                print(
                    f"{concurrency:>5} | {_cells(b, 13)} | {_cells(s, 12)} | "
                    f"{b['rps'] / s['rps']:.2f}x ({s['cpu_ms'] / b['cpu_ms']:.2f}x)",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
