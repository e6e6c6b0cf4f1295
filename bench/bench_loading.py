"""Host memory and start-up time of loading a >= 1B-parameter model for ZeRO-3 on 2 processes:
every process loading the whole model before DeepSpeed partitions it (old) against the model
created partitioned, each process reading only its share of the weights (new, sharded_load.py).

    OMP_NUM_THREADS=1 nice python bench/bench_loading.py [--layers 18] [--keep DIR]

A Llama model (hidden 2048, 18 layers, MLP 5504, vocabulary 32000, untied head: 1.04B parameters,
4.2 GB in fp32) is built from a config with seeded random weights and saved once as safetensors.
Then, each under `torchrun --nproc_per_node=2` (gloo, CPU), one after the other:

  old  `load_model` (transformers' from_pretrained: the whole fp32 model in every process), then
       `deepspeed.initialize` partitions it, then one forward pass of 32 tokens.
  new  `load_partitioned`: the model created under zero.Init without weight init, each process
       reading its partition's rows from the safetensors file, then the same initialize and
       forward pass.

With `--fresh`, two more sides start from random weights instead (a fresh preset: pretraining or
a reward model with no `model.init_from`), and print their own ratios before the last line:

  fresh-old  the whole model built with seeded random weights in every process, then partitioned.
  fresh-new  `fresh_partitioned` (partitioned_init.py): created under zero.Init, the same draws
             replayed one module at a time, each process keeping its partitions.

Measured per process: peak RSS (VmHWM, which counts the file pages a process read through mmap)
and its peak anonymous memory (RssAnon sampled every 10 ms: the process's own allocations, without
file pages), and the seconds from process start to the end of the first forward pass. Both sides
call deepspeed.initialize without an optimizer: on a CPU-only machine ZeRO-3's fp32 master copy,
gradients and AdamW moments of a 1B model would add about 8 GB per process on both sides alike
(on GPUs those live in GPU memory, and the host's peak is the load measured here), and this
machine is shared. Last line:
`ratio old/new peak memory per process: X` (the larger of the two processes on each side).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))

DS_CONFIG = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}


def model_config(layers: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5504,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=16,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        dtype="float32",
    )


def build_checkpoint(directory: Path, layers: int) -> int:
    """Writes the model with seeded random weights; returns its parameter count."""
    import torch
    from mathforge.models.checkpoint import save_model
    from mathforge.models.tokenizer import default_tokenizer
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config(layers), dtype=torch.float32)
    count = sum(p.numel() for p in model.parameters())
    save_model(model, default_tokenizer(), directory)
    return count


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class AnonPeak:
    """The highest RssAnon seen by a thread sampling /proc/self/status every 10 ms."""

    def __init__(self):
        self.peak_kb = 0
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            time.sleep(0.01)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.peak_kb / 1024


def worker(mode: str, model_dir: Path, layers: int) -> None:
    """One process of one side; prints a JSON line with its peak RSS and seconds to ready."""
    import psutil

    started = psutil.Process().create_time()
    anon = AnonPeak()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import torch
    from mathforge.training.distributed import init_distributed

    env = init_distributed("cpu", use_deepspeed=True)
    if mode == "old":
        from mathforge.models.checkpoint import load_model

        model, _ = load_model(model_dir, dtype="float32")
    elif mode == "fresh-old":
        from transformers import AutoModelForCausalLM

        config = model_config(layers)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    elif mode == "fresh-new":
        from mathforge.training.partitioned_init import fresh_partitioned
        from transformers import AutoModelForCausalLM

        model = fresh_partitioned(AutoModelForCausalLM, model_config(layers), DS_CONFIG, seed=0)
    else:
        from mathforge.training.sharded_load import load_partitioned

        model = load_partitioned(model_dir, DS_CONFIG)
    loaded_mb = peak_rss_mb()
    # No optimizer: ZeRO-3 then only partitions (the old side's model) and gathers for the forward.
    engine, *_ = deepspeed.initialize(model=model, config=DS_CONFIG)
    held = sum(p.ds_tensor.numel() for p in engine.module.parameters())
    with torch.no_grad():
        logits = engine.module(input_ids=torch.arange(32).unsqueeze(0)).logits
    ready = time.time() - started
    report = {
        "mode": mode,
        "rank": env.rank,
        "peak_rss_mb": peak_rss_mb(),
        "peak_anon_mb": anon.stop(),
        "rss_after_load_mb": loaded_mb,
        "seconds_to_first_forward": ready,
        "elements_held": held,
        "logits_sum": float(logits.double().sum()),
    }
    print("REPORT " + json.dumps(report), flush=True)
    torch.distributed.barrier()


def run_side(mode: str, model_dir: Path, layers: int) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", PYTHONPATH=str(REPO / "services"))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        __file__,
        "--worker",
        mode,
        "--model",
        str(model_dir),
        "--layers",
        str(layers),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} side failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    reports = [json.loads(line[7:]) for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    return sorted(reports, key=lambda r: r["rank"])


def _same_logits(results: dict[str, list[dict]], old: str, new: str) -> bool:
    first, second = results[old][0]["logits_sum"], results[new][0]["logits_sum"]
    return abs(first - second) <= 1e-3 * max(1.0, abs(first))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=18, help="decoder layers (18: 1.04B parameters)")
    parser.add_argument("--keep", default="", help="reuse/keep the saved model in this directory")
    parser.add_argument("--fresh", action="store_true", help="also measure a fresh (random-weight) start")
    parser.add_argument("--worker", choices=("old", "new", "fresh-old", "fresh-new"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.model), args.layers)
        return 0

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-loading-"))
    model_dir = work / "model"
    try:
        if not (model_dir / "config.json").exists():
            began = time.time()
            count = build_checkpoint(model_dir, args.layers)
            print(
                f"model: {count / 1e9:.3f}B parameters, saved in {time.time() - began:.0f} s to {model_dir}"
            )
        with open("/proc/loadavg") as load:
            print(f"load average before: {load.read().split()[:3]}")
        modes = ("old", "new", "fresh-old", "fresh-new") if args.fresh else ("old", "new")
        results = {mode: run_side(mode, model_dir, args.layers) for mode in modes}
        with open("/proc/loadavg") as load:
            print(f"load average after: {load.read().split()[:3]}")
        for mode, reports in results.items():
            for r in reports:
                print(
                    f"{mode} rank {r['rank']}: peak RSS {r['peak_rss_mb']:.0f} MB (anonymous "
                    f"{r['peak_anon_mb']:.0f} MB; after load {r['rss_after_load_mb']:.0f} MB), "
                    f"{r['seconds_to_first_forward']:.1f} s "
                    f"to the first forward, holds {r['elements_held'] / 1e6:.0f}M elements"
                )
        print(f"same logits on both sides: {_same_logits(results, 'old', 'new')}")
        if args.fresh:
            print(
                f"fresh start, same logits on both sides: {_same_logits(results, 'fresh-old', 'fresh-new')}"
            )
            for what, key in (
                ("seconds to the first forward", "seconds_to_first_forward"),
                ("peak memory per process", "peak_rss_mb"),
            ):
                old_value = max(r[key] for r in results["fresh-old"])
                new_value = max(r[key] for r in results["fresh-new"])
                print(f"fresh start, ratio old/new {what}: {old_value / new_value:.2f}")
        old_peak = max(r["peak_rss_mb"] for r in results["old"])
        new_peak = max(r["peak_rss_mb"] for r in results["new"])
        old_s = max(r["seconds_to_first_forward"] for r in results["old"])
        new_s = max(r["seconds_to_first_forward"] for r in results["new"])
        old_anon = max(r["peak_anon_mb"] for r in results["old"])
        new_anon = max(r["peak_anon_mb"] for r in results["new"])
        print(f"ratio old/new seconds to the first forward: {old_s / new_s:.2f}")
        print(f"ratio old/new peak anonymous memory per process: {old_anon / new_anon:.2f}")
        print(f"ratio old/new peak memory per process: {old_peak / new_peak:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
