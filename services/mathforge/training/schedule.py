"""Learning-rate schedules as multipliers of the peak rate, for torch's LambdaLR.

The paper's multi-step schedule (DeepSeekMath §2.3): linear warm-up over 2,000 steps to the peak,
31.6% of the peak from 80% of training, 10% from 90%. SFT uses a constant rate (section 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mathforge.training.config import ScheduleConfig


def multistep_factor(
    step: int, total_steps: int, warmup_steps: int, decay_at: Sequence[float], decay_to: Sequence[float]
) -> float:
    """The multiplier of the peak rate used for optimizer step `step` (0-based).

    Warm-up reaches the peak at step `warmup_steps - 1`; a drop at fraction f applies from step
    round(f * total_steps) on.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    factor = 1.0
    for fraction, level in zip(decay_at, decay_to, strict=True):
        if step >= round(fraction * total_steps):
            factor = level
    return factor


def lr_factor_fn(config: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """The step -> multiplier function of a schedule config."""
    if config.kind == "constant":
        warmup = config.warmup_steps

        def constant(step: int) -> float:
            return (step + 1) / warmup if step < warmup else 1.0

        return constant

    def multistep(step: int) -> float:
        return multistep_factor(step, total_steps, config.warmup_steps, config.decay_at, config.decay_to)

    return multistep


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over `optimizer` following `config`; step it once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(config, total_steps))
