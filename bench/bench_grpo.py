"""GRPO step time: our trainer (over the sampler and reward services) against TRL's GRPOTrainer.

    OMP_NUM_THREADS=1 python bench/bench_grpo.py [--steps 8] [--group 8] [--questions 8] [--max-tokens 48]

Both sides train the same randomly initialised tiny Llama (same tokenizer, same prompts: synthetic
arithmetic questions in the chat format) with the same G, outputs per step, completion length,
learning rate, beta 0.04 and one update per batch, on the CPU, TRL with use_cpu=True and no vLLM.
A random model rarely stops early, so both generate the full completion length. Ours runs as the
real thing: `python -m mathforge.training.grpo` against a sampler and a reward service started on
loopback, publishing a new weights version after every step. Each trainer runs in its own
subprocess so its peak RSS is its own (the services' peak RSS is reported beside ours).

Reported: median seconds per step over the steps after the first, the ratio TRL / ours (> 1 means
ours is faster), our split between sampling, scoring, updating and publishing, and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, MB; 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def run_watched(command: list[str], log: Path) -> tuple[str, float]:
    """Runs a command, sampling its peak RSS until it exits; returns its stdout and the peak (MB)."""
    out = log.with_suffix(".out")
    with open(log, "w") as err, open(out, "w") as stdout:
        process = subprocess.Popen(command, stdout=stdout, stderr=err, env=ENV, cwd=REPO)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, peak_rss_mb(process.pid))
            time.sleep(0.05)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed; see {log}")
    return out.read_text(), peak


def make_policy(directory: Path) -> Path:
    from mathforge.models.checkpoint import save_model
    from mathforge.models.presets import build_model
    from mathforge.models.tokenizer import default_tokenizer

    tokenizer = default_tokenizer()
    model = build_model(
        "tiny",
        vocab_size=len(tokenizer),
        seed=0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return save_model(model, tokenizer, directory / "policy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(name: str, port: int, *flags: str) -> list[str]:
    """`mathforge serve NAME` on a loopback port, without a metrics port, with a 1 s grace."""
    return [
        sys.executable, "-m", "mathforge", "serve", name,
        "--port", str(port), "--metrics-port", "-1", "--grace-s", "1", *flags,
    ]  # fmt: skip


def start_services(
    flags: dict[str, list[str]], env: dict[str, str]
) -> tuple[dict[str, int], dict[str, subprocess.Popen]]:
    """Each named service on a free port, its output discarded; (ports, processes) by name."""
    ports = {name: free_port() for name in flags}
    services = {
        name: subprocess.Popen(
            serve_command(name, port, *flags[name]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )
        for name, port in ports.items()
    }
    return ports, services


def run_ours(policy: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    ports, services = start_services({"sampler": ["--model-path", str(policy)], "reward": []}, ENV)
    try:
        command = [
            sys.executable,
            "-m",
            "mathforge.training.grpo",
            "--config",
            "configs/tiny/grpo.yaml",
            f"model.init_from={policy}",
            f"out_dir={work / 'ours'}",
            f"batch.steps={args.steps}",
            f"services.sampler=127.0.0.1:{ports['sampler']}",
            f"services.reward=127.0.0.1:{ports['reward']}",
            f"rollout.questions_per_step={args.questions}",
            f"rollout.group_size={args.group}",
            f"rollout.max_new_tokens={args.max_tokens}",
            f"rollout.prompts_per_call={args.questions}",
            f"batch.micro_batch_size={args.questions * args.group}",
            f"optim.lr={args.lr}",
            "objective.beta=0.04",
            "reward.kind=rule",
            f"checkpoint.every={10 * args.steps}",
            "eval.every=0",
            "metrics.progress_bar=off",
        ]
        stdout, peak = run_watched(command, work / "ours.log")
        service_peaks = {name: peak_rss_mb(p.pid) for name, p in services.items()}
    finally:
        for process in services.values():
            process.terminate()
            process.wait()
    steps = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"event": "step"')]
    later = steps[1:] or steps
    result = {
        key: statistics.median(s[key] for s in later)
        for key in (
            "step_seconds",
            "time_sampling_s",
            "time_scoring_s",
            "time_updating_s",
            "time_publishing_s",
            "response_length_mean",
        )
    }
    result.update(
        peak_mb=peak, sampler_peak_mb=service_peaks["sampler"], reward_peak_mb=service_peaks["reward"]
    )
    return result


TRL_SCRIPT = r"""
import json, sys, time
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from mathforge.training.grpo.questions import prompt_text, synthetic_questions
from mathforge.evaluator.grading import grade

policy, out, steps, group, questions, max_tokens, lr = sys.argv[1:8]
steps, group, questions, max_tokens, lr = int(steps), int(group), int(questions), int(max_tokens), float(lr)
tokenizer = AutoTokenizer.from_pretrained(policy)
model = AutoModelForCausalLM.from_pretrained(policy)
pool = synthetic_questions(2000, 0, 1)
instruction = "Please reason step by step, and put your final answer within \\boxed{}."
rows = [{"prompt": prompt_text(tokenizer, q.question, instruction), "answer": q.answer} for q in pool]

def rule_reward(completions, answer, **kwargs):
    return [1.0 if grade(c, a).equivalent else 0.0 for c, a in zip(completions, answer)]

class StepTimes(TrainerCallback):
    def __init__(self):
        self.times, self.last = [], None
    def on_step_begin(self, args, state, control, **kw):
        self.last = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.last)

config = GRPOConfig(
    output_dir=out, use_cpu=True, bf16=False, max_steps=steps, learning_rate=lr, beta=0.04,
    loss_type="grpo", scale_rewards="group", num_generations=group,
    per_device_train_batch_size=group * questions, gradient_accumulation_steps=1, num_iterations=1,
    max_completion_length=max_tokens, temperature=1.0, top_p=1.0, logging_steps=1, report_to=[],
    save_strategy="no", seed=0, use_vllm=False, dataloader_num_workers=0, lr_scheduler_type="constant",
    adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0,
)
times = StepTimes()
trainer = GRPOTrainer(model=model, reward_funcs=rule_reward, args=config,
                      train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[times])
trainer.train()
print(json.dumps({"step_seconds": times.times}))
"""


def run_trl(policy: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    script = work / "trl_grpo.py"
    script.write_text(TRL_SCRIPT)
    command = [
        sys.executable,
        str(script),
        str(policy),
        str(work / "trl"),
        str(args.steps),
        str(args.group),
        str(args.questions),
        str(args.max_tokens),
        str(args.lr),
    ]
    stdout, peak = run_watched(command, work / "trl.log")
    times = json.loads(stdout.strip().splitlines()[-1])["step_seconds"]
    later = times[1:] or times
    return {"step_seconds": statistics.median(later), "peak_mb": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--group", type=int, default=8, help="G")
    parser.add_argument("--questions", type=int, default=8, help="questions per step")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        work = Path(tmp)
        policy = make_policy(work)
        ours = run_ours(policy, work, args)
        trl = run_trl(policy, work, args)
    outputs = args.group * args.questions
    print(
        f"GRPO step, tiny Llama, G={args.group}, {outputs} outputs/step, {args.max_tokens} new tokens, CPU, "
        f"median of steps 2..{args.steps}"
    )
    print(
        f"  ours (sampler + reward services): {ours['step_seconds']:.2f} s/step "
        f"(mean output {ours['response_length_mean']:.0f} tokens)"
    )
    split = {k: ours[f"time_{k}_s"] for k in ("sampling", "scoring", "updating", "publishing")}
    total = sum(split.values()) or 1.0
    print("    split: " + ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in split.items()))
    print(f"  TRL GRPOTrainer (use_cpu, no vLLM): {trl['step_seconds']:.2f} s/step")
    print(f"  ratio TRL / ours: {trl['step_seconds'] / ours['step_seconds']:.2f}x (>1: ours is faster)")
    print(
        f"  peak RSS: ours trainer {ours['peak_mb']:.0f} MB (+ sampler {ours['sampler_peak_mb']:.0f} MB, "
        f"reward {ours['reward_peak_mb']:.0f} MB), TRL {trl['peak_mb']:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
