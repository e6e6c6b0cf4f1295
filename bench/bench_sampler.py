"""Sampler benchmark: the service over gRPC against the same backend called in-process, on the
same prompts and settings, and the time LoadWeights takes to swap in a checkpoint.

    .venv/bin/python bench/bench_sampler.py                      # tiny model, CPU
    .venv/bin/python bench/bench_sampler.py --preset small --load-presets tiny,small,base-100m

Prints tokens/s both ways and their ratio (target: gRPC time / in-process time <= 1.1), our
decoding loop against transformers' `generate` on the same requests, then per preset the
LoadWeights time, the bytes read per second, and what that rate means for a 7B policy in bf16
(14 GB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from mathforge.models.checkpoint import save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.runtime.clients.sampler import SamplerClient, generate_request
from mathforge.runtime.server import ServerThread
from mathforge.sampler.backend import GenerationJob, Sample
from mathforge.sampler.limits import SamplerLimits, check_request
from mathforge.sampler.service import Config, create_service
from mathforge.sampler.transformers_backend import TransformersBackend

SEVEN_B_BF16_BYTES = 14e9
QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "What is the remainder when 2^10 is divided by 7?",
    "Solve for x: 3x + 5 = 20.",
    "A rectangle has perimeter 30 and width 5. What is its area?",
]


def save_policy(preset: str, seed: int, directory: Path) -> Path:
    tokenizer = default_tokenizer()
    special = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return save_model(build_model(preset, len(tokenizer), seed=seed, **special), tokenizer, directory)


def workload(args: argparse.Namespace) -> list:
    """The requests both sides run: the same prompts, n, max_tokens and seeds."""
    return [
        generate_request(
            [QUESTIONS[(i + j) % len(QUESTIONS)] for j in range(args.prompts)],
            n=args.n,
            temperature=1.0,
            max_tokens=args.max_tokens,
            seed=1000 + i,
        )
        for i in range(args.requests)
    ]


class InProcessSampler:
    """The backend the service uses, on its own event loop thread, called without gRPC."""

    def __init__(self, policy: Path, args: argparse.Namespace):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        wait_s = Config.batch_wait_ms / 1000  # the service's default, so both sides batch alike
        self.backend = TransformersBackend(str(policy), max_batch_rows=args.batch_rows, batch_wait_s=wait_s)
        self.model = self._run(self.backend.start())
        self.limits = SamplerLimits(
            args.prompts,
            args.n,
            1000,
            args.max_tokens,
            args.max_tokens,
            4,
            256,
            self.backend.max_model_len,
            self.backend.vocab_size,
        )

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _one(self, request) -> int:
        prompts, settings = check_request(request, self.limits, self.backend.tokenizer)
        samples: list[Sample] = []
        await self.backend.generate(GenerationJob(prompts, settings), self.model, samples.append)
        return sum(len(s.token_ids) for s in samples)

    def generate_tokens(self, request) -> int:
        return self._run(self._one(request))

    def close(self) -> None:
        self._run(self.backend.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def timed(generate_tokens, requests: list, concurrency: int) -> tuple[float, int]:
    """Seconds and tokens to run `requests` with `concurrency` callers, each a blocking call."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(generate_tokens, requests))
    return time.perf_counter() - started, tokens


class ServiceProcess:
    """`mathforge serve sampler` in its own process, as it runs in production."""

    def __init__(self, policy: Path, args: argparse.Namespace):
        command = [
            sys.executable,
            "-m",
            "mathforge",
            "serve",
            "sampler",
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--model-path",
            str(policy),
            "--max-n",
            str(args.n),
            "--max-batch",
            str(args.prompts),
            "--max-new-tokens",
            str(args.max_tokens),
            "--max-batch-rows",
            str(args.batch_rows),
            "--log-format",
            "json",
        ]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        port = 0
        for line in self.process.stderr:
            if line.startswith("{"):
                entry = json.loads(line)
                port = entry.get("port", port) if entry.get("msg") == "listening" else port
                if entry.get("msg") == "ready":
                    break
        if not port:
            raise RuntimeError("the sampler did not start")
        # Keep draining its log so the pipe never fills.
        threading.Thread(target=lambda: [None for _ in self.process.stderr or ()], daemon=True).start()
        self.target = f"127.0.0.1:{port}"

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def paired_runs(local_fn, remote_fn, requests: list, concurrency: int, rounds: int) -> dict:
    """Runs each group of `concurrency` requests in-process and over gRPC back to back (which side
    goes first alternates), so both sides of a pair see the same load from the rest of the
    machine; the median of the per-pair time ratios is the overhead estimate."""
    ratios: list[float] = []
    totals = {"local_s": 0.0, "remote_s": 0.0, "local_tokens": 0, "remote_tokens": 0}
    groups = [requests[i : i + concurrency] for i in range(0, len(requests), concurrency)]
    for pair in range(rounds * len(groups)):
        group = groups[pair % len(groups)]
        sides = [("local", local_fn), ("remote", remote_fn)]
        measured = {}
        for name, fn in sides if pair % 2 == 0 else sides[::-1]:
            measured[name] = timed(fn, group, concurrency)
        ratios.append(measured["remote"][0] / measured["local"][0])
        for name in ("local", "remote"):
            totals[f"{name}_s"] += measured[name][0]
            totals[f"{name}_tokens"] += measured[name][1]
    return {**totals, "ratio": statistics.median(ratios), "pairs": len(ratios)}


def compare(policy: Path, args: argparse.Namespace, requests: list) -> None:
    """The workload in-process and through the service, in pairs (see paired_runs)."""
    local = InProcessSampler(policy, args)
    server = ServiceProcess(policy, args)
    with SamplerClient(server.target, timeout_s=600) as client:

        def remote_tokens(request) -> int:
            response = client.call("Generate", request)
            return sum(len(c.token_ids) for result in response.results for c in result.completions)

        local.generate_tokens(requests[0]), remote_tokens(requests[0])  # warm-up both
        print(
            f"workload: {args.requests} requests x {args.prompts} prompts x n={args.n}, max_tokens "
            f"{args.max_tokens}, preset {args.preset}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
            f"{args.rounds} rounds; the service runs in its own process"
        )
        for concurrency in (1, args.concurrency):
            run = paired_runs(local.generate_tokens, remote_tokens, requests, concurrency, args.rounds)
            same = "same tokens" if run["local_tokens"] == run["remote_tokens"] else "TOKEN COUNTS DIFFER"
            print(
                f"  {concurrency} in flight: in-process {run['local_tokens'] / run['local_s']:6.0f} tok/s"
                f"   gRPC {run['remote_tokens'] / run['remote_s']:6.0f} tok/s"
                f"   time ratio gRPC / in-process, median of {run['pairs']} pairs: {run['ratio']:.3f}"
                f" (target <= 1.1; {same})"
            )
    server.close()
    local.close()


def decoding_loop_vs_generate(policy: Path, args: argparse.Namespace, requests: list) -> None:
    """Our decoding loop against transformers' own `generate` (sampling, n return sequences, the
    logits kept so the sampled tokens' logprobs can be computed, as ours returns them), one request
    at a time, same prompts and settings."""
    local = InProcessSampler(policy, args)
    model, tokenizer = local.model, local.backend.tokenizer
    tokenizer.padding_side = "left"

    def hf_tokens(request) -> int:
        prompts, settings = check_request(request, local.limits, tokenizer)
        width = max(map(len, prompts))
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
        mask = (
            torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]
        ).long()
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                temperature=settings.temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=settings.max_tokens,
                num_return_sequences=settings.n,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
            new = out.sequences[:, width:]
            # What our loop hands back with every sample: the sampled tokens' raw logprobs.
            torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1).gather(2, new[:, :, None])
        return int((new != tokenizer.pad_token_id).sum())

    run = paired_runs(local.generate_tokens, hf_tokens, requests, 1, args.rounds)
    ours_rate, theirs_rate = run["local_tokens"] / run["local_s"], run["remote_tokens"] / run["remote_s"]
    print(
        f"decoding loop, 1 in flight: ours {ours_rate:6.0f} tok/s   transformers generate "
        f"{theirs_rate:6.0f} tok/s   speed-up {ours_rate / theirs_rate:.2f}x"
    )
    local.close()


def load_weights_rate(preset: str, root: Path) -> tuple[float, float, int]:
    """(RPC seconds, server-side load seconds, bytes) of one LoadWeights for `preset`."""
    old, new = save_policy(preset, 0, root / f"{preset}-v0"), save_policy(preset, 1, root / f"{preset}-v1")
    config = Config(port=0, metrics_port=-1, model_path=str(old), preset=preset)
    with (
        ServerThread(create_service(config)) as running,
        SamplerClient(running.target, timeout_s=600) as client,
    ):
        started = time.perf_counter()
        reply = client.load_weights(1, str(new))
        wall = time.perf_counter() - started
    return wall, reply.load_seconds, reply.bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="model preset sampled from")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per request")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--batch-rows", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5, help="times the workload runs on each side")
    parser.add_argument(
        "--load-presets", default="tiny,small,base-100m", help="presets to time LoadWeights on"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        policy = save_policy(args.preset, 0, root / "policy")
        compare(policy, args, workload(args))
        decoding_loop_vs_generate(policy, args, workload(args))
        print()
        header = f"{'preset':<10} {'bytes':>12} {'RPC s':>8} {'server s':>9} {'MB/s':>8}"
        print(f"{header}  7B bf16 (14 GB) at that rate")
        for preset in [p for p in args.load_presets.split(",") if p]:
            wall, server_s, size = load_weights_rate(preset, root)
            rate = size / server_s
            print(
                f"{preset:<10} {size:>12d} {wall:>8.3f} {server_s:>9.3f} {rate / 1e6:>8.1f}  "
                f"{SEVEN_B_BF16_BYTES / rate:.1f} s"
            )


if __name__ == "__main__":
    main()
