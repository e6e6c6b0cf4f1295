"""Weight publishing benchmark: one policy of about 0.31B parameters (built from a config, random
weights, bf16) published to two sampler replicas (`mathforge serve sampler` processes) through the
shared volume (safetensors written and fsynced, then LoadWeights with its path on both replicas at
once) and over the collective (gloo broadcast in buckets, services.weight_sync=collective), in turns,
in one run.

    .venv/bin/python bench/bench_weight_sync.py                  # 24 layers x 1024 hidden, 3 rounds
    .venv/bin/python bench/bench_weight_sync.py --layers 12 --rounds 2

Both paths end the same way: each replica serves the new version and reports the same CRC-32 of its
weights as the trainer computed (checked every round). Prints seconds and GB/s of each path per
round, their medians, and on the last line the ratio of the median publish times.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from mathforge.models.checkpoint import save_model
from mathforge.models.presets import ModelPreset, build_model, parameter_count
from mathforge.models.tokenizer import default_tokenizer
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.training.distributed import DistEnv
from mathforge.training.grpo.config import ServicesConfig
from mathforge.training.grpo.publish import WeightPublisher
from mathforge.training.grpo.services import ServiceLink
from mathforge.training.grpo.weight_sync import WeightStreamer

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sampler(model_dir: Path, log_dir: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "services"), "OMP_NUM_THREADS": "1"}
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "mathforge", "serve", "sampler", "--port", str(port)),
            *("--metrics-port", "-1", "--model-path", str(model_dir), "--dtype", "bfloat16"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )
    return process, f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bucket-mb", type=int, default=256)
    args = parser.parse_args()

    tokenizer = default_tokenizer()
    shape = ModelPreset(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64,
        intermediate_size=args.hidden * 11 // 4,
        max_position_embeddings=2048,
    )
    special = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    began = time.perf_counter()
    model = build_model(shape, len(tokenizer), seed=0, dtype="bfloat16", **special)
    params = parameter_count(model)
    state_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(
        f"model: {params / 1e6:.0f}M parameters, bf16, {state_bytes / 1e9:.2f} GB "
        f"(built in {time.perf_counter() - began:.1f}s)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-weight-sync-") as tmp:
        root = Path(tmp)
        start = save_model(model, tokenizer, root / "start")
        children = [start_sampler(start, root, name) for name in ("a", "b")]
        targets = [target for _, target in children]
        config = ServicesConfig(
            sampler=",".join(targets),
            reward=",".join(targets),
            weight_sync="collective",
            weight_sync_port=0,
            weight_sync_host="127.0.0.1",
            weight_sync_bucket_mb=args.bucket_mb,
            retry_budget_s=300,
            ready_timeout_s=300,
            load_timeout_s=600,
        )
        link = ServiceLink(config)
        try:
            for target in targets:
                SamplerClient(target).wait_ready(300)
            env = DistEnv(0, 0, 1, torch.device("cpu"))
            volume = WeightPublisher(root / "published", keep=2)
            streamer = WeightStreamer(link, config, env)
            rows: dict[str, list[float]] = {"volume": [], "collective": []}
            version = 0
            for round_index in range(args.rounds):
                for mode in ("volume", "collective"):
                    with torch.no_grad():  # every version differs from the one serving
                        next(model.parameters()).add_(1.0)
                    version += 1
                    began = time.perf_counter()
                    if mode == "volume":
                        path = volume.write(model, tokenizer, version)
                        link.load_policy(version, str(path))
                    else:
                        streamer.publish(model, version)
                    seconds = time.perf_counter() - began
                    rows[mode].append(seconds)
                    checksums = {SamplerClient(t).policy().checksum for t in targets}
                    versions = {SamplerClient(t).policy().version for t in targets}
                    if versions != {version} or len(checksums) != 1:
                        raise SystemExit(f"round {round_index}: replicas serve {versions} {checksums}")
                    print(
                        f"round {round_index + 1} {mode:>10}: {seconds:6.2f} s  "
                        f"{state_bytes / seconds / 1e9:5.2f} GB/s  (version {version}, {checksums.pop()})"
                    )
            medians = {mode: statistics.median(times) for mode, times in rows.items()}
            for mode, seconds in medians.items():
                print(
                    f"median {mode:>10}: {seconds:6.2f} s  {state_bytes / seconds / 1e9:5.2f} GB/s "
                    f"to 2 replicas"
                )
            with open("/proc/loadavg") as handle:
                print(f"load average at the end: {handle.read().strip()}")
            print(f"ratio volume/collective publish time: {medians['volume'] / medians['collective']:.2f}")
        finally:
            link.close()
            for process, _ in children:
                process.send_signal(signal.SIGTERM)
            for process, _ in children:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
