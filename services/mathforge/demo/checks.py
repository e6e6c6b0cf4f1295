"""What the demo must show, checked on its own numbers and said plainly.

checks = demo_checks(report, config.checks)    # [Check(name, passed, detail), ...]
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

from mathforge.demo.config import ChecksConfig
from mathforge.evaluator.metrics import DEFAULT_MAJ


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    judged: bool = True  # False: the profile skips it (its numbers are still shown)

    @property
    def verdict(self) -> str:
        return "SKIP" if not self.judged else "PASS" if self.passed else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def standard_error(accuracy: float, problems: int) -> float:
    """The standard error of an accuracy measured on `problems` problems."""
    return math.sqrt(accuracy * (1 - accuracy) / max(1, problems))


def demo_checks(report: dict[str, Any], wanted: ChecksConfig) -> list[Check]:
    """The recall, RL-gain, maj@k and pass@k checks over a report's numbers."""
    checks: list[Check] = []
    last = report["recall_rounds"][-1]
    recall, precision = float(last.get("recall", 0.0)), float(last.get("precision", 0.0))
    checks.append(
        Check(
            "recall",
            recall >= wanted.min_recall and precision >= wanted.min_precision,
            f"last round (round {last['round']}): recall {recall:.3f} (>= {wanted.min_recall}), "
            f"precision {precision:.3f} (>= {wanted.min_precision})",
        )
    )
    accuracy = report["accuracy"]
    problems = int(report.get("held_out_problems", 0))
    gain = accuracy["rl"] - accuracy["sft"]
    checks.append(
        Check(
            "rl_beats_sft",
            gain >= wanted.min_rl_gain - 1e-9 and problems >= 200,
            f"greedy accuracy RL {accuracy['rl']:.3f} vs SFT {accuracy['sft']:.3f}: "
            f"{100 * gain:+.1f} points (>= {100 * wanted.min_rl_gain:+.1f}) on {problems} held-out problems "
            f"(>= 200)",
        )
    )
    for stage in ("sft", "rl"):
        majority = report["maj_at_k"][stage]
        ks = sorted(majority, key=int)
        values = [majority[k] for k in ks]
        # One standard error of an accuracy on this many problems: a dip smaller than that between
        # neighbouring k is sampling noise, not a fall.
        noise = standard_error(max(values), problems)
        dips = [round(a - b, 3) for a, b in itertools.pairwise(values) if b < a - noise]
        checks.append(
            Check(
                f"maj_at_k_rises_{stage}",
                values[-1] > values[0] and not dips,
                f"{stage} maj@k ({DEFAULT_MAJ}: the vote over the first k samples) for k = {', '.join(ks)}: "
                f"{', '.join(f'{v:.3f}' for v in values)} "
                f"(rises from k=1 to the largest k; no dip between neighbours beyond one standard "
                f"error, {noise:.3f}{'; dips: ' + str(dips) if dips else ''})",
            )
        )
    # Both are over the same sampled answers. maj@k is the vote over the first k samples (the
    # evaluator's default, as lm-eval and Qwen2.5-Math count it). At the largest k (every sample) a
    # right majority holds a right answer, so maj@k above pass@k there is a grading or voting bug.
    # Below it the first k samples are one draw of k, and pass@k the chance over all draws, so
    # maj@k may exceed it by sampling noise: allowed up to one standard error. k = 1 is skipped
    # (maj@1 is the first sample's accuracy, an estimate of pass@1).
    below = []
    for stage, by_k in report["pass_at_k"].items():
        largest = max(by_k, key=int)
        for k, value in by_k.items():
            voted = report["maj_at_k"][stage][k]
            slack = 0.0 if k == largest else standard_error(voted, problems)
            if int(k) >= 2 and value < voted - slack - 1e-9:
                below.append(f"{stage} k={k}")
    checks.append(
        Check(
            "pass_at_k_at_least_maj_at_k",
            not below,
            "pass@k >= maj@k (the vote over the first k samples) for every stage: at the largest k "
            "exactly, for 2 <= k below it within one standard error"
            if not below
            else f"pass@k < maj@k at {', '.join(below)}",
        )
    )
    return [
        Check(c.name, c.passed, c.detail + " (not judged in this profile)", judged=False)
        if c.name in wanted.skip
        else c
        for c in checks
    ]


def all_hold(checks: list[Check]) -> bool:
    """Every judged check passed."""
    return all(c.passed for c in checks if c.judged)


def tally(checks: list[Check]) -> str:
    """'3 of 3 hold' or '2 of 3 hold, 2 skipped'."""
    judged = [c for c in checks if c.judged]
    skipped = len(checks) - len(judged)
    return f"{sum(c.passed for c in judged)} of {len(judged)} hold" + (
        f", {skipped} skipped" if skipped else ""
    )
