"""The GPU path measured in one command: the card's bf16 rate, bf16 SFT steps (DDP, and DeepSpeed
ZeRO-2 when it imports), the reward service's dynamic batching, the sampler service against
transformers `generate`, and a short GRPO run with trainer, sampler and reward on one GPU.

    python3 bench/gpu_check.py --out "$OUT"                  # a CUDA node: full sizes, about 8 minutes
    python3 bench/gpu_check.py --dry-run --out /tmp/gpu      # CPU: tiny sizes, the same code paths

scripts/gpu-check.sh installs the wheels the GPU image lacks and runs this. Every section runs in
its own subprocess with its own time limit, so one failure is reported and the rest still run.
Writes <out>/gpu-check.json (every figure) and <out>/gpu-check.md (a short summary); docs/gpu.md
says how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))
sys.path.insert(0, str(REPO / "bench"))

import bench_grpo  # noqa: E402
from bench_grpo import free_port  # noqa: E402

# Sizes per profile. "gpu" fits one H100/H200 within about 8 minutes; "dry" is the CPU rehearsal.
PROFILES = {
    "gpu": {
        "preset": "base-500m",
        "matmul_n": 8192,
        "sft_steps": 12,
        "seq_len": 2048,
        "micro_batch": 4,
        "reward_concurrency": [1, 8, 32, 128],
        "reward_seconds": 3.0,
        "sampler_concurrency": [1, 8, 32],
        "sampler_tokens": 128,
        "grpo_steps": 4,
        "grpo_questions": 8,
        "grpo_group": 8,
        "grpo_tokens": 128,
        "logprob_tolerance": 1e-2,
        "deepspeed": True,
    },
    "dry": {
        "preset": "tiny",
        "matmul_n": 256,
        "sft_steps": 3,
        "seq_len": 128,
        "micro_batch": 2,
        "reward_concurrency": [1, 8],
        "reward_seconds": 0.4,
        "sampler_concurrency": [1, 4],
        "sampler_tokens": 8,
        "grpo_steps": 2,
        "grpo_questions": 2,
        "grpo_group": 2,
        "grpo_tokens": 8,
        "logprob_tolerance": 1e-3,
        # The suite tests ZeRO-2 on the CPU elsewhere; the rehearsal keeps to the DDP path's cost.
        "deepspeed": False,
    },
}
SECTIONS = ("matmul", "sft", "reward", "sampler", "grpo")


def child_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO / "services"), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class PeakMemory:
    """Polls a process tree's peak memory while it runs: GPU memory from nvidia-smi on a GPU node
    (what the processes hold, CUDA context included), else the peak resident set (VmHWM)."""

    def __init__(self, pid: int, gpu: bool):
        self.pid, self.gpu, self.peak_mb = pid, gpu, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _sample(self) -> float:
        if self.gpu:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            return sum(float(x) for x in out.split() if x.strip())
        try:
            match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{self.pid}/status").read_text())
        except OSError:
            return 0.0
        return int(match.group(1)) / 1024 if match else 0.0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._sample())
            self._stop.wait(0.1)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def events(stdout: str, name: str) -> list[dict]:
    prefix = f'{{"event": "{name}"'
    return [json.loads(line) for line in stdout.splitlines() if line.startswith(prefix)]


# ---------------------------------------------------------------- sections (each in a subprocess)


def section_matmul(profile: dict, device: str, work: Path) -> dict:
    """The card's dense rate: an n^3 matmul in bf16 on CUDA (fp32 on CPU), best of several."""
    import torch

    n = profile["matmul_n"]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    (a @ b).sum().item()  # warm-up: kernels chosen, memory allocated
    best = float("inf")
    for _ in range(6):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - started)
    return {
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "seconds": best,
        "tflops": 2 * n**3 / best / 1e12,
    }


def section_sft(profile: dict, device: str, work: Path, peak_tflops: float) -> dict:
    """bf16 SFT steps through the real entrypoint (`python -m mathforge.training.sft`), per engine."""
    from mathforge.models.presets import build_model, parameter_count
    from mathforge.models.tokenizer import default_tokenizer

    parameters = parameter_count(build_model(profile["preset"], len(default_tokenizer()), dtype=None))
    engines = {"ddp": []}
    try:
        if not profile["deepspeed"]:
            raise ImportError("not in this profile")
        import deepspeed  # noqa: F401

        engines["deepspeed-zero2"] = [
            "engine.kind=deepspeed",
            f"engine.deepspeed_config={REPO / 'configs/deepspeed/zero2.json'}",
        ]
    except ImportError:
        pass
    seq, micro = profile["seq_len"], profile["micro_batch"]
    results: dict[str, dict] = {"parameters": parameters}
    for engine, overrides in engines.items():
        command = [
            sys.executable,
            "-m",
            "mathforge.training.sft",
            "--config",
            str(REPO / "configs/tiny/sft.yaml"),
            f"out_dir={work / ('sft-' + engine)}",
            f"model.preset={profile['preset']}",
            "model.dtype=auto",
            f"engine.device={device}",
            f"batch.seq_len={seq}",
            f"batch.micro_batch_size={micro}",
            f"batch.global_batch_tokens={seq * micro}",
            f"batch.steps={profile['sft_steps']}",
            "optim.lr=1e-4",
            f"checkpoint.every={10 * profile['sft_steps']}",
            "metrics.progress_bar=off",
            *overrides,
        ]
        env = {**child_env(), "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        watch = PeakMemory(process.pid, device == "cuda")
        stdout, stderr = process.communicate()
        peak_mb = watch.stop()
        if process.returncode:
            results[engine] = {"error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
            continue
        steps = events(stdout, "step")
        later = steps[1:] or steps
        tokens_per_s = statistics.median(s["tokens_per_s"] for s in later)
        losses = [s["loss"] for s in steps]
        results[engine] = {
            "tokens_per_s": tokens_per_s,
            "peak_memory_mb": peak_mb,
            "losses": losses,
            "losses_finite_and_falling": all(map(_finite, losses)) and losses[-1] < losses[0],
            # 6 N FLOPs per trained token (forward + backward; attention's share left out).
            "mfu": 6 * parameters * tokens_per_s / (peak_tflops * 1e12) if peak_tflops else None,
        }
    if "deepspeed-zero2" not in engines:
        reason = (
            "not in this profile"
            if not profile["deepspeed"]
            else "deepspeed does not import (carry its wheel)"
        )
        results["deepspeed-zero2"] = {"skipped": reason}
    return results


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def section_reward(profile: dict, device: str, work: Path) -> dict:
    """The reward service with a random-weight ORM of the preset: requests/s with dynamic batching
    against one forward pass per request, at each concurrency (bench_reward's harness)."""
    import bench_reward

    flags = ("--device", device)
    batched = bench_reward.RewardServer(profile["preset"], *flags, "--max-batch", "64", "--max-wait-ms", "5")
    serial = None
    try:
        serial = bench_reward.RewardServer(profile["preset"], *flags, "--dynamic-batching", "false")
        pool = bench_reward.requests(256, "solutions")
        points = {}
        for concurrency in profile["reward_concurrency"]:
            m = bench_reward.measure(
                {"batched": batched, "serial": serial}, concurrency, profile["reward_seconds"], 2, pool
            )
            points[str(concurrency)] = {**m, "ratio": m["batched"]["rps"] / m["serial"]["rps"]}
    finally:
        batched.close()
        if serial is not None:
            serial.close()
    key = "32" if "32" in points else str(profile["reward_concurrency"][-1])
    return {"points": points, "ratio_at": int(key), "ratio": points[key]["ratio"], "target": 3.0}


def section_sampler(profile: dict, device: str, work: Path) -> dict:
    """The sampler service (transformers backend) on the device: output tokens/s with 1..32 requests
    in flight against transformers `generate` over the same prompts one request at a time; and the
    sampler's log-probabilities against the trainer's for the same tokens."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from mathforge.models.checkpoint import load_model, save_model
    from mathforge.models.presets import build_model
    from mathforge.models.tokenizer import default_tokenizer
    from mathforge.runtime.clients.sampler import SamplerClient
    from mathforge.runtime.server import ServerThread
    from mathforge.sampler.service import Config, create_service
    from mathforge.training.grpo.logprobs import completion_logprobs, pack_outputs

    dtype = "bfloat16" if device == "cuda" else "float32"
    tokenizer = default_tokenizer()
    ids = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    policy = save_model(
        build_model(profile["preset"], len(tokenizer), seed=0, **ids), tokenizer, work / "policy"
    )
    max_tokens = profile["sampler_tokens"]
    questions = [f"What is {i} + {2 * i + 1}? Explain each step." for i in range(64)]
    config = Config(
        port=0, metrics_port=-1, model_path=str(policy), device=device, dtype=dtype, max_new_tokens=max_tokens
    )
    result: dict = {"dtype": dtype, "points": {}}
    with (
        ServerThread(create_service(config)) as running,
        SamplerClient(running.target, timeout_s=600) as client,
    ):
        for concurrency in profile["sampler_concurrency"]:
            seeds = range(2 * concurrency)

            def call(seed: int) -> int:
                question = questions[seed % len(questions)]
                reply = client.generate([question], n=4, temperature=1.0, max_tokens=max_tokens, seed=seed)
                return sum(len(c.token_ids) for r in reply.results for c in r.completions)

            call(0)  # warm-up
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                tokens = sum(pool.map(call, seeds))
            result["points"][str(concurrency)] = {"tokens_per_s": tokens / (time.perf_counter() - started)}
        reply = client.generate([questions[0]], n=4, temperature=1.0, max_tokens=max_tokens, seed=7)
    model, _ = load_model(str(policy), dtype=dtype)
    model.to(device).eval()
    completions = reply.results[0].completions
    prompt = list(reply.results[0].prompt_token_ids)
    batch = pack_outputs(
        [prompt] * len(completions), [list(c.token_ids) for c in completions], tokenizer.pad_token_id
    )
    with torch.no_grad():
        trainer_logp, _ = completion_logprobs(model, batch.to(torch.device(device)))
    gap = 0.0
    for row, completion in enumerate(completions):
        n = len(completion.token_ids)
        sampler_logp = torch.tensor(list(completion.logprobs)[:n])
        gap = max(gap, float((trainer_logp[row, :n].float().cpu() - sampler_logp).abs().max()))
    result["logprob_max_abs_gap"] = gap
    result["logprob_tolerance"] = profile["logprob_tolerance"]
    result["logprobs_match"] = gap <= profile["logprob_tolerance"]
    result["generate"] = _generate_rate(model, tokenizer, questions, profile, device)
    for point in result["points"].values():
        point["ratio_vs_generate"] = point["tokens_per_s"] / result["generate"]["tokens_per_s"]
    return result


def _generate_rate(model, tokenizer, questions: list[str], profile: dict, device: str) -> dict:
    """transformers `generate`, one request (1 prompt x 4 samples) at a time, sampled tokens'
    log-probabilities kept as the sampler keeps them."""
    import torch

    tokens, started = 0, time.perf_counter()
    for question in questions[:8]:
        ids = torch.tensor([tokenizer(question)["input_ids"]], device=device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=profile["sampler_tokens"],
                num_return_sequences=4,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[:, ids.shape[1] :]
        torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1).gather(2, new[:, :, None])
        tokens += int((new != tokenizer.pad_token_id).sum())
    return {"tokens_per_s": tokens / (time.perf_counter() - started)}


def section_grpo(profile: dict, device: str, work: Path) -> dict:
    """A few GRPO steps with the trainer, a sampler and a reward service on the one device: the step
    time split and the weight publish time (the configured publishing path)."""
    from mathforge.models.checkpoint import save_model
    from mathforge.models.presets import build_model
    from mathforge.models.tokenizer import default_tokenizer

    tokenizer = default_tokenizer()
    ids = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    policy = save_model(
        build_model(profile["preset"], len(tokenizer), seed=0, **ids), tokenizer, work / "grpo-init"
    )
    dtype = "bfloat16" if device == "cuda" else "float32"
    flags = {
        "sampler": ["--model-path", str(policy), "--device", device, "--dtype", dtype],
        "reward": ["--device", device],
    }
    ports, services = bench_grpo.start_services(flags, child_env())
    q, g = profile["grpo_questions"], profile["grpo_group"]
    command = [
        sys.executable,
        "-m",
        "mathforge.training.grpo",
        "--config",
        str(REPO / "configs/tiny/grpo.yaml"),
        f"model.init_from={policy}",
        f"out_dir={work / 'grpo'}",
        f"engine.device={device}",
        "model.dtype=auto",
        f"batch.steps={profile['grpo_steps']}",
        f"batch.micro_batch_size={q * g}",
        f"services.sampler=127.0.0.1:{ports['sampler']}",
        f"services.reward=127.0.0.1:{ports['reward']}",
        f"rollout.questions_per_step={q}",
        f"rollout.group_size={g}",
        f"rollout.prompts_per_call={q}",
        f"rollout.max_new_tokens={profile['grpo_tokens']}",
        "optim.lr=1e-5",
        "reward.kind=rule",
        f"checkpoint.every={10 * profile['grpo_steps']}",
        "eval.every=0",
        "metrics.progress_bar=off",
    ]
    env = {**child_env(), "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    finally:
        for process in services.values():
            process.terminate()
            process.wait(60)
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError("the GRPO trainer failed: " + " | ".join(tail))
    steps = events(proc.stdout, "step")
    later = steps[1:] or steps
    keys = ("step_seconds", "time_sampling_s", "time_scoring_s", "time_updating_s", "time_publishing_s")
    split = {k: statistics.median(s[k] for s in later) for k in keys if all(k in s for s in later)}
    losses = [s["loss"] for s in steps if "loss" in s]
    return {"steps": len(steps), "split": split, "losses_finite": all(map(_finite, losses))}


# ---------------------------------------------------------------- driver


def run_section(name: str, profile_name: str, device: str, work: Path, timeout_s: float, extra: dict) -> dict:
    """Runs one section in a subprocess under a time limit; its result, or what went wrong."""
    command = [
        sys.executable,
        __file__,
        "--section",
        name,
        "--profile",
        profile_name,
        "--device",
        device,
        "--work",
        str(work),
        "--extra",
        json.dumps(extra),
    ]
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout_s:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][:500], "seconds": time.perf_counter() - started}
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "seconds": time.perf_counter() - started}


def summary(report: dict) -> str:
    """The markdown page: one line per figure, each with its hardware."""
    s, lines = report["sections"], [f"# GPU check: {report['device_name']}", ""]
    lines.append(f"profile `{report['profile']}`, torch {report['torch']}, {report['seconds']:.0f} s in all")
    lines.append("")
    m = s.get("matmul", {})
    if "tflops" in m:
        lines.append(f"- matmul {m['n']}^3 {m['dtype']}: {m['tflops']:.1f} TFLOP/s")
    for engine in ("ddp", "deepspeed-zero2"):
        r = s.get("sft", {}).get(engine, {})
        if "tokens_per_s" in r:
            mfu = f", MFU {100 * r['mfu']:.1f}%" if r.get("mfu") is not None else ""
            lines.append(
                f"- SFT {engine}: {r['tokens_per_s']:.0f} tokens/s, peak {r['peak_memory_mb']:.0f} MB{mfu}, "
                f"losses finite and falling: {r['losses_finite_and_falling']}"
            )
        elif r:
            lines.append(f"- SFT {engine}: {r.get('error') or r.get('skipped')}")
    r = s.get("reward", {})
    if "ratio" in r:
        lines.append(
            f"- reward batching: {r['ratio']:.2f}x requests/s at concurrency {r['ratio_at']} (target 3x)"
        )
    r = s.get("sampler", {})
    if "points" in r:
        rates = ", ".join(f"{c} in flight {p['tokens_per_s']:.0f}" for c, p in r["points"].items())
        lines.append(f"- sampler tokens/s: {rates}; generate {r['generate']['tokens_per_s']:.0f}")
        lines.append(
            f"- sampler vs trainer log-probabilities: max gap {r['logprob_max_abs_gap']:.2e} "
            f"(tolerance {r['logprob_tolerance']:g})"
        )
    r = s.get("grpo", {})
    if "split" in r:
        lines.append("- GRPO step: " + ", ".join(f"{k} {v:.2f}" for k, v in r["split"].items()))
    for name, r in s.items():
        if "error" in r:
            lines.append(f"- {name}: FAILED: {r['error']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gpu-check", help="where gpu-check.json and gpu-check.md go")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes (the default when CUDA is absent)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset to run")
    parser.add_argument("--budget-s", type=float, default=520.0, help="time for all sections together")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.section:
        profile, work, extra = PROFILES[args.profile], Path(args.work), json.loads(args.extra)
        fn = globals()[f"section_{args.section}"]
        result = fn(profile, args.device, work, **extra)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    import torch

    device = device_name()
    profile_name = "dry" if args.dry_run or device == "cpu" else "gpu"
    wanted = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    report = {
        "profile": profile_name,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "CPU",
        "torch": torch.__version__,
        "sections": {},
    }
    # Share of the budget per section, from their rough cost at the GPU sizes.
    shares = {"matmul": 0.05, "sft": 0.3, "reward": 0.25, "sampler": 0.15, "grpo": 0.25}
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            extra = {}
            if name == "sft":
                extra["peak_tflops"] = report["sections"].get("matmul", {}).get("tflops", 0.0)
            left = args.budget_s - (time.perf_counter() - began)
            limit = max(30.0, min(left, args.budget_s * shares[name] * 2))
            print(f"== {name} (limit {limit:.0f} s)", flush=True)
            work = Path(tmp) / name
            work.mkdir()
            report["sections"][name] = run_section(name, profile_name, device, work, limit, extra)
            print(json.dumps(report["sections"][name])[:400], flush=True)
    report["seconds"] = time.perf_counter() - began
    (out / "gpu-check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu-check.md").write_text(summary(report))
    print(summary(report))
    failed = [n for n, r in report["sections"].items() if "error" in r]
    print(f"sections failed: {len(failed)} of {len(wanted)}" + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
