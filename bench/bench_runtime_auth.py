"""Runtime benchmark: what bearer-token auth costs per call. The same dedup service (a Check of one
short document) is called in `local` mode (metrics, error mapping and request decoding) and in
`token` mode (the same plus the auth interceptor: metadata lookup, constant-time comparison against
the caller and administrator tokens, the token files' stat). Both servers run in this process
(ServerThread), so they share its conditions, and the rounds alternate so load drifts hit both
alike.

    .venv/bin/python bench/bench_runtime_auth.py                  # 5 rounds of 400 calls each
    .venv/bin/python bench/bench_runtime_auth.py --rounds 3 --calls 200

Prints the median latency of each mode per round and, last, token / local (target <= 1.1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from mathforge.dedup.service import Config, create_service
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.dedup import DedupClient
from mathforge.runtime.server import ServerThread

DOCUMENT = [("probe", "The sum of the first n odd numbers is n squared, by induction on n.")]


def _serve(work: Path, mode: str) -> tuple[ServerThread, DedupClient]:
    fields: dict[str, Any] = {"auth": "local"}
    token = ""
    if mode == "token":
        (work / "caller").write_text("caller-token-for-the-benchmark\n")
        (work / "admin").write_text("admin-token-for-the-benchmark\n")
        fields = {"auth": "token", "caller_token_file": str(work / "caller")}
        fields["admin_token_file"] = str(work / "admin")
        token = "caller-token-for-the-benchmark"
    config = Config(port=0, metrics_port=-1, store_path=str(work / f"index-{mode}"), fsync=False, **fields)
    server = ServerThread(create_service(config)).start()
    client = DedupClient(server.target, retry=NO_RETRY, token=token)
    client.wait_ready(120)
    return server, client


def _median_ms(client: DedupClient, calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        client.check(DOCUMENT)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        servers = {mode: _serve(Path(tmp), mode) for mode in ("local", "token")}
        try:
            for _, client in servers.values():
                _median_ms(client, 50)  # warm both connections and code paths
            medians: dict[str, list[float]] = {"local": [], "token": []}
            for round_index in range(args.rounds):
                for mode, (_, client) in servers.items():
                    medians[mode].append(_median_ms(client, args.calls))
                print(
                    f"round {round_index + 1}: local {medians['local'][-1]:.3f} ms, "
                    f"token {medians['token'][-1]:.3f} ms",
                    flush=True,
                )
        finally:
            for server, client in servers.values():
                client.close()
                server.stop(0)
    local, token = statistics.median(medians["local"]), statistics.median(medians["token"])
    print(f"median per call: local {local:.3f} ms, token {token:.3f} ms (load {os.getloadavg()[0]:.1f})")
    print(f"token / local latency: {token / local:.3f}")


if __name__ == "__main__":
    main()
