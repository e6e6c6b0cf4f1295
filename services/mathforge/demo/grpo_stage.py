"""Stage 5: GRPO from the SFT policy through the sampler and reward services (DeepSeekMath §4), with one
round of iterative RL: halfway, the outcome RM is retrained on fresh policy samples with replay,
reloaded by the reward service, and pi_ref is reset to the current policy.

    rl = run_grpo(config, models.sft, rms.orm, run_dir, offset, console)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathforge.demo.children import run_stage_process, target
from mathforge.demo.config import DemoConfig
from mathforge.demo.console import Console

CURVES = ("loss", "reward_mean", "accuracy", "kl")


@dataclass
class RlRun:
    final: Path
    curves: dict[str, list[tuple[int, float]]]  # metric -> (step, value)
    held_out: list[tuple[int, float]]  # the trainer's own held-out greedy accuracy, by step
    iterations: list[dict[str, Any]] = field(default_factory=list)


def run_grpo(
    config: DemoConfig, policy: Path, orm: Path, run_dir: Path, offset: int, console: Console
) -> RlRun:
    out = run_dir / "grpo"
    steps = config.grpo.steps()
    extra: dict[str, Any] = {
        "seed": config.seed,
        "out_dir": str(out),
        "model.init_from": str(policy),
        "services.sampler": target("sampler", offset),
        "services.reward": target("reward", offset),
        "metrics.progress_bar": "off",
    }
    if config.grpo.setting("iterative.retrain_reward_model", False):
        extra["iterative.reward_model_init"] = str(orm)
    events = run_stage_process(
        "mathforge.training.grpo",
        config.grpo.arguments(extra),
        run_dir / "logs" / "grpo.log",
        console,
        "grpo",
        steps,
    )
    step_events = [e for e in events if e.get("event") == "step"]
    curves = {name: [(int(e["step"]), float(e[name])) for e in step_events if name in e] for name in CURVES}
    held_out = [(int(e["step"]), float(e["held_out_accuracy"])) for e in events if e.get("event") == "eval"]
    iterations: list[dict[str, Any]] = [
        {k: e[k] for k in ("step", "iteration", "reward_model_version") if k in e}
        for e in events
        if e.get("event") == "iteration"
    ]
    if step_events:
        first, last = step_events[0], step_events[-1]
        console.line(
            f"   {len(step_events)} steps: batch reward {first.get('reward_mean', 0):.3f} -> "
            f"{last.get('reward_mean', 0):.3f}, KL to pi_ref {last.get('kl', 0):.4f}, "
            f"final weights version {int(last.get('weights_version', 0))}"
        )
    for it in iterations:
        console.line(
            f"   iterative RL at step {it.get('step')}: pi_ref reset, reward model version "
            f"{it.get('reward_model_version')}"
        )
    if held_out:
        shown = ", ".join(f"step {s}: {a:.3f}" for s, a in held_out)
        console.line(f"   trainer's held-out greedy accuracy: {shown}")
    return RlRun(out / "final", curves, held_out, iterations)
