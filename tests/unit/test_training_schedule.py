"""The paper's multi-step learning-rate schedule (DeepSeekMath §2.3) and the constant SFT rate."""

from __future__ import annotations

import pytest
import torch
from mathforge.training.config import ScheduleConfig
from mathforge.training.schedule import build_scheduler, lr_factor_fn, multistep_factor

PEAK = 4.2e-4


def paper_lr(step: int, total: int) -> float:
    return PEAK * multistep_factor(step, total, 2000, [0.8, 0.9], [0.316, 0.1])


def test_multistep_has_the_paper_values_at_its_boundaries():
    total = 47_684
    assert paper_lr(0, total) == pytest.approx(PEAK / 2000)
    assert paper_lr(999, total) == pytest.approx(PEAK / 2)
    assert paper_lr(1999, total) == pytest.approx(PEAK)  # warm-up ends at the peak
    assert paper_lr(2000, total) == pytest.approx(PEAK)
    at_80, at_90 = round(0.8 * total), round(0.9 * total)
    assert paper_lr(at_80 - 1, total) == pytest.approx(PEAK)
    assert paper_lr(at_80, total) == pytest.approx(0.316 * PEAK)  # 31.6% of the peak after 80%
    assert paper_lr(at_90 - 1, total) == pytest.approx(0.316 * PEAK)
    assert paper_lr(at_90, total) == pytest.approx(0.1 * PEAK)  # 10% after 90%
    assert paper_lr(total - 1, total) == pytest.approx(0.1 * PEAK)


def test_scheduler_drives_the_optimizer_through_the_same_values():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=PEAK)
    scheduler = build_scheduler(optimizer, ScheduleConfig(warmup_steps=4), total_steps=20)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = (
        [PEAK * f for f in (0.25, 0.5, 0.75, 1.0)] + [PEAK] * 12 + [0.316 * PEAK] * 2 + [0.1 * PEAK] * 2
    )
    assert seen == pytest.approx(expected)


def test_constant_schedule_stays_at_the_rate_after_optional_warmup():
    factor = lr_factor_fn(ScheduleConfig(kind="constant", warmup_steps=0), total_steps=500)
    assert {factor(s) for s in range(500)} == {1.0}
    warm = lr_factor_fn(ScheduleConfig(kind="constant", warmup_steps=2), total_steps=500)
    assert [warm(s) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
