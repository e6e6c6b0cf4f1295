"""SFT step throughput: our trainer against transformers' Trainer on the same tiny model, data and batch.

    OMP_NUM_THREADS=1 python bench/bench_training.py [--steps 30] [--preset tiny]

Both sides train the same randomly initialised model (same seed) on the same packed rows of
synthetic CoT/PoT/tool examples, with the same micro-batch, accumulation, AdamW settings and
constant learning rate, in one process on the CPU. Each runs in its own subprocess so peak memory
(max RSS) is its own. Reported: median tokens/s over the steps after the first, the ratio
ours / Trainer (target >= 1.0), and both peak RSS figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))

SEQ_LEN = 256
MICRO = 4
ACCUMULATION = 2


def sft_config(out_dir: str, steps: int, preset: str):
    from mathforge.training.config import config_from_mapping
    from mathforge.training.sft import SftConfig

    return config_from_mapping(
        SftConfig,
        {
            "out_dir": out_dir,
            "seed": 0,
            "model": {"preset": preset, "dtype": "float32"},
            "optim": {"lr": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0},
            "schedule": {"kind": "constant", "warmup_steps": 0},
            "batch": {
                "seq_len": SEQ_LEN,
                "micro_batch_size": MICRO,
                "global_batch_tokens": SEQ_LEN * MICRO * ACCUMULATION,
                "steps": steps,
            },
            "engine": {"kind": "ddp", "device": "cpu"},
            "checkpoint": {"every": 10 * steps, "resume": False},
            "metrics": {"progress_bar": "off"},
            "data": {"synthetic_problems": 2000, "styles": ["cot", "pot", "tool"]},
        },
    )


def run_ours(steps: int, preset: str) -> dict[str, float]:
    from mathforge.models.tokenizer import default_tokenizer
    from mathforge.training.distributed import init_distributed
    from mathforge.training.sft import make_stream
    from mathforge.training.trainer import prepare_model, train

    with tempfile.TemporaryDirectory() as out:
        config = sft_config(out, steps, preset)
        env = init_distributed("cpu")
        tokenizer = default_tokenizer()
        model = prepare_model(config, tokenizer)
        stream = make_stream(config, tokenizer, env)
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            train(config, env, model, tokenizer, stream)
    events = [json.loads(line) for line in captured.getvalue().splitlines() if line.startswith('{"event"')]
    rates = [e["tokens_per_s"] for e in events if e["event"] == "step" and e["step"] > 1]
    return {"tokens_per_s": statistics.median(rates)}


def run_trainer(steps: int, preset: str) -> dict[str, float]:
    import torch
    from mathforge.models.tokenizer import default_tokenizer
    from mathforge.training.distributed import init_distributed
    from mathforge.training.packing import IGNORE
    from mathforge.training.sft import make_stream
    from mathforge.training.trainer import prepare_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    with tempfile.TemporaryDirectory() as out:
        config = sft_config(out, steps, preset)
        env = init_distributed("cpu")
        tokenizer = default_tokenizer()
        model = prepare_model(config, tokenizer)
        stream = make_stream(config, tokenizer, env)
        rows = []
        for _ in range(steps * MICRO * ACCUMULATION):
            batch = stream.next_batch(1)
            # Trainer's loss shifts labels itself: give it the unshifted targets of the same rows.
            labels = torch.full_like(batch["labels"][0], IGNORE)
            labels[1:] = batch["labels"][0][:-1]
            rows.append(
                {
                    "input_ids": batch["input_ids"][0],
                    "position_ids": batch["position_ids"][0],
                    "labels": labels,
                }
            )
        pad = tokenizer.pad_token_id
        tokens_per_step = [
            int(sum((r["input_ids"] != pad).sum() for r in rows[i : i + MICRO * ACCUMULATION]))
            for i in range(0, len(rows), MICRO * ACCUMULATION)
        ]

        class StepTimer(TrainerCallback):
            def __init__(self):
                self.began, self.durations = 0.0, []

            def on_step_begin(self, args, state, control, **kwargs):
                self.began = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                self.durations.append(time.perf_counter() - self.began)

        timer = StepTimer()
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=MICRO,
            gradient_accumulation_steps=ACCUMULATION,
            max_steps=steps,
            learning_rate=1e-3,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            adam_beta1=0.9,
            adam_beta2=0.95,
            max_grad_norm=1.0,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_steps=10 * steps,
            dataloader_num_workers=0,
            seed=0,
            remove_unused_columns=False,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[timer])
        trainer.train()
    rates = [t / d for t, d in zip(tokens_per_step[1:], timer.durations[1:], strict=False)]
    return {"tokens_per_s": statistics.median(rates)}


def child(impl: str, steps: int, preset: str) -> None:
    result = (run_ours if impl == "ours" else run_trainer)(steps, preset)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--child", choices=["ours", "trainer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.preset)
        return 0
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    results = {}
    for impl in ("ours", "trainer"):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", impl, "--steps", str(args.steps), "--preset", args.preset],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{impl} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[impl] = json.loads(lines[-1].removeprefix("RESULT "))
    ours, peer = results["ours"], results["trainer"]
    print(
        f"SFT step, preset {args.preset}, {args.steps} steps, {MICRO} x {SEQ_LEN} tokens x {ACCUMULATION} "
        f"accumulation, 1 CPU process"
    )
    print(f"{'':<22}{'tokens/s':>12}{'peak RSS MB':>14}")
    print(f"{'mathforge':<22}{ours['tokens_per_s']:>12.0f}{ours['peak_rss_mb']:>14.0f}")
    print(f"{'transformers Trainer':<22}{peer['tokens_per_s']:>12.0f}{peer['peak_rss_mb']:>14.0f}")
    print(f"ratio (ours / Trainer): {ours['tokens_per_s'] / peer['tokens_per_s']:.2f}  (target >= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
