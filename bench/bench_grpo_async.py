"""GRPO with rollouts overlapped with training: rollout.max_staleness 0 (the paper's loop), 1 and 2 on
the same tiny task, in one run.

    OMP_NUM_THREADS=1 python bench/bench_grpo_async.py [--steps 24] [--policy runs/tiny/sft/final]

On a cluster the sampler and the trainer have GPUs of their own; here they get a core each: the
sampler and reward services are pinned to one core, the trainer to the other, in every mode. The
policy is the tiny SFT model of tests/e2e/test_grpo_learning.py (trained here first unless
--policy names one), the task synthetic one-step arithmetic with the rule reward, sized so that
sampling + scoring and updating + publishing take similar time in the synchronous loop.

The machine is shared, and its load swings over minutes; so the modes run interleaved, in rounds:
each round trains every mode `--steps / --rounds` steps further, resuming from its own checkpoint
(an exact resume), and the first step of every segment, which has nothing to overlap with, is left
out of the timings.

Reported per mode: median seconds per step, the seconds per step each side
idles (the trainer: waiting for a batch; the sampler side: step time minus sampling and scoring),
the mean staleness and importance weight, and held-out greedy accuracy after the same number of
steps. The synchronous run gives the bound on the speed-up, (sample + update) / max(sample, update),
printed beside the measured ratio; the last line is the ratio for max_staleness 1 against 0.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))
sys.path.insert(0, str(REPO / "bench"))

from bench_grpo import serve_command  # noqa: E402

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int):  # type: ignore[no-untyped-def]
    """A preexec_fn that pins the child (and every thread it starts) to one core."""
    return lambda: os.sched_setaffinity(0, {core})


SPIN = """
import sys, time, torch
torch.set_num_threads(1)
a, n, began = torch.randn(256, 256), 0, time.perf_counter()
while time.perf_counter() - began < float(sys.argv[1]):
    a, n = torch.tanh(a @ a.T / 16), n + 1
print(n / float(sys.argv[1]))
"""


def core_concurrency(cores: list[int], seconds: float = 4.0) -> float:
    """How fast two busy cores run, against each alone (a matmul loop pinned on each): 1.0 when they
    do not share anything; below 1 when they share a physical core, a quota or memory bandwidth."""

    def spin(on: list[int]) -> list[float]:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", SPIN, str(seconds)],
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=pinned(core),
            )
            for core in on
        ]
        return [float(child.communicate()[0]) for child in children]

    alone = [spin([core])[0] for core in cores]
    together = spin(cores)
    return statistics.fmean(t / a for t, a in zip(together, alone, strict=True))


def sft_policy(work: Path, steps: int) -> Path:
    from mathforge.training.sft import main as sft_main

    out = work / "sft"
    code = sft_main(
        [
            "--config",
            str(REPO / "configs" / "tiny" / "sft.yaml"),
            f"out_dir={out}",
            f"batch.steps={steps}",
            "batch.global_batch_tokens=2048",
            "data.styles=[cot]",
            "data.synthetic_difficulty=1",
            "data.synthetic_problems=2000",
            "checkpoint.every=100000",
            "metrics.progress_bar=off",
        ]
    )
    if code != 0:
        raise SystemExit(f"SFT of the starting policy failed ({code})")
    return out / "final"


def start_services(policy: Path, core: int, logs: Path) -> tuple[dict[str, str], list[subprocess.Popen]]:
    targets, processes = {}, []
    for name, args in (("sampler", ["--model-path", str(policy)]), ("reward", ["--symbolic-workers", "1"])):
        port = free_port()
        command = serve_command(name, port)
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        processes.append(
            subprocess.Popen(
                [*command, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=ENV,
                cwd=REPO,
                preexec_fn=pinned(core),
            )
        )
        targets[name] = f"127.0.0.1:{port}"
    return targets, processes


def run_segment(
    staleness: int, until: int, policy: Path, targets: dict[str, str], core: int, work: Path, args
) -> list[dict]:  # type: ignore[no-untyped-def]
    """Trains the `staleness` mode up to step `until` (resuming from its last checkpoint)."""
    first, last = until <= args.steps // args.rounds, until == args.steps
    command = [
        sys.executable,
        "-m",
        "mathforge.training.grpo",
        "--config",
        "configs/tiny/grpo.yaml",
        f"model.init_from={policy}",
        f"out_dir={work / f'grpo-{staleness}'}",
        f"batch.steps={until}",
        f"services.sampler={targets['sampler']}",
        f"services.reward={targets['reward']}",
        "services.ready_timeout_s=300",
        f"rollout.questions_per_step={args.questions}",
        f"rollout.group_size={args.group}",
        f"rollout.max_new_tokens={args.max_tokens}",
        f"rollout.prompts_per_call={args.prompts_per_call}",
        f"batch.micro_batch_size={args.micro}",
        f"rollout.max_staleness={staleness}",
        f"eval.every={args.steps if first or last else 0}",  # at step 0 and at the end
        f"eval.problems={args.eval_problems}",
        f"checkpoint.every={args.steps}",
        "metrics.progress_bar=off",
    ]
    began = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, env=ENV, cwd=REPO, preexec_fn=pinned(core), check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"max_staleness={staleness}: the trainer failed:\n{result.stderr[-3000:]}")
    load = Path("/proc/loadavg").read_text().split()[0]
    print(
        f"  max_staleness={staleness} to step {until}: {time.perf_counter() - began:.0f}s, load {load}",
        file=sys.stderr,
    )
    found = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    steps = [e for e in found if e["event"] == "step"]
    return [e for e in found if e["event"] != "step"] + steps[1:]


def summary(found: list[dict]) -> dict[str, float]:
    steps = [e for e in found if e["event"] == "step"]

    def median(key: str) -> float:
        return statistics.median(e[key] for e in steps)

    def mean(key: str) -> float:
        return statistics.fmean(e[key] for e in steps)

    evals = {e["step"]: e["held_out_accuracy"] for e in found if e["event"] == "eval"}
    sampler_busy = mean("time_sampling_s") + mean("time_scoring_s")
    return {
        "step_s": median("step_seconds"),
        "sample_s": median("time_sampling_s") + median("time_scoring_s"),
        "update_s": median("time_updating_s") + median("time_publishing_s"),
        "publish_s": median("time_publishing_s"),
        "trainer_idle_s": mean("time_waiting_s"),
        "sampler_idle_s": max(mean("step_seconds") - sampler_busy, 0.0),
        "staleness": mean("staleness_mean"),
        "weight": mean("importance_weight_mean"),
        "capped": mean("importance_capped_fraction"),
        "accuracy_start": evals[min(evals)],
        "accuracy_end": evals[max(evals)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--policy", default="", help="starting policy; default: train the tiny SFT model")
    parser.add_argument("--sft-steps", type=int, default=200)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--micro", type=int, default=64)
    parser.add_argument(
        "--prompts-per-call",
        type=int,
        default=1,
        help="questions per Generate call (the sampler's batch / G)",
    )
    parser.add_argument("--eval-problems", type=int, default=200)
    parser.add_argument("--modes", default="0,1,2")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; divides --steps")
    args = parser.parse_args()
    if args.steps % args.rounds:
        raise SystemExit(f"--rounds {args.rounds} must divide --steps {args.steps}")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs two cores: one for the sampler and reward services, one for the trainer")
    service_core, trainer_core = cores[0], cores[1]
    concurrency = core_concurrency([service_core, trainer_core])
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="bench-grpo-async-") as tmp:
        work = Path(tmp)
        policy = Path(args.policy) if args.policy else sft_policy(work, args.sft_steps)
        targets, processes = start_services(policy, service_core, work)
        try:
            modes = [int(k) for k in args.modes.split(",")]
            found: dict[int, list[dict]] = {k: [] for k in modes}
            for round_index in range(1, args.rounds + 1):
                until = args.steps * round_index // args.rounds
                for staleness in modes:
                    found[staleness] += run_segment(
                        staleness, until, policy, targets, trainer_core, work, args
                    )
            results = {k: summary(events) for k, events in found.items()}
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    concurrency = (concurrency + core_concurrency([service_core, trainer_core])) / 2  # before and after
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"GRPO, {args.questions} questions x G {args.group}, {args.max_tokens} new tokens, "
        f"{args.steps} steps; "
        f"services on core {service_core}, trainer on core {trainer_core}; "
        f"load average before {' '.join(load_before)}, after {' '.join(load_after)}"
    )
    print(
        "| max_staleness | s/step | sample+score s | update+publish s (publish) | trainer idle s/step "
        "| sampler idle s/step | staleness | importance weight | capped | held-out acc (start -> end) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for staleness, r in results.items():
        print(
            f"| {staleness} | {r['step_s']:.2f} | {r['sample_s']:.2f} | "
            f"{r['update_s']:.2f} ({r['publish_s']:.2f}) | "
            f"{r['trainer_idle_s']:.2f} | {r['sampler_idle_s']:.2f} | {r['staleness']:.2f} | "
            f"{r['weight']:.3f} | "
            f"{r['capped']:.4f} | {r['accuracy_start']:.3f} -> {r['accuracy_end']:.3f} |"
        )
    if 0 not in results:
        return
    sync = results[0]
    bound = (sync["sample_s"] + sync["update_s"]) / max(sync["sample_s"], sync["update_s"])
    for staleness, r in results.items():
        if staleness:
            ratio = sync["step_s"] / r["step_s"]
            print(
                f"max_staleness {staleness}: sync/async {ratio:.2f}x; bound from the sync run "
                f"(sample + update) / max(sample, update) = {bound:.2f}x ({ratio / bound:.0%} of it)"
            )
    print(
        f"this machine: with both cores busy each ran at {concurrency:.0%} of its speed alone (a matmul loop "
        f"pinned on each); the bound scaled by that: {bound * concurrency:.2f}x"
    )
    if 1 in results:
        print(f"ratio sync/async step time: {sync['step_s'] / results[1]['step_s']:.2f}")


if __name__ == "__main__":
    main()
