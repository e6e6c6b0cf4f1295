"""Benchmark metrics (PAPER.md §6): greedy accuracy, maj@k (majority vote over equivalent answers)
and unbiased pass@k = 1 - C(n-c, k) / C(n, k), exact for any n, with breakdowns by tag (MATH
subject and level).

    metrics = compute_metrics([ItemSamples(correct=[True, False], answers=["2", "3"])])
    metrics["pass@2"], metrics["maj@2"], metrics["acc"]
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k), exact big-int arithmetic."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def maj_vote(
    answers: Sequence[str], correct: Sequence[bool], k: int, same: Callable[[str, str], bool] | None = None
) -> bool:
    """maj@k for one item: is the most common answer among the first k samples correct?

    Answers are grouped by equality, then groups whose representatives `same` judges equivalent are
    merged. Empty answers (nothing extracted) do not vote. Ties go to the group whose first sample
    came earliest (so maj@1 equals the first sample's verdict).
    """
    groups: list[tuple[str, list[int]]] = []
    for index, answer in enumerate(answers[:k]):
        if not answer:
            continue
        for rep, members in groups:
            if rep == answer or (same is not None and same(rep, answer)):
                members.append(index)
                break
        else:
            groups.append((answer, [index]))
    if not groups:
        return False
    best = max(groups, key=lambda g: (len(g[1]), -g[1][0]))
    return bool(correct[best[1][0]])


def maj_at_k(
    items: Sequence[tuple[Sequence[str], Sequence[bool]]],
    k: int,
    same: Callable[[str, str], bool] | None = None,
) -> float:
    """Mean maj@k over items given as (answers, correct) pairs."""
    if not items:
        return 0.0
    return sum(maj_vote(a, c, k, same) for a, c in items) / len(items)


def accuracy(verdicts: Sequence[bool]) -> float:
    """Fraction of true verdicts (0.0 for none)."""
    return sum(map(bool, verdicts)) / len(verdicts) if verdicts else 0.0


def k_values(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself when it is not a power of two."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    if n >= 1 and ks[-1] != n:
        ks.append(n)
    return ks


@dataclass
class ItemSamples:
    """One item's sample verdicts and extracted answers (sample 0 is the greedy one), and its tags."""

    correct: list[bool]
    answers: list[str]
    tags: dict[str, str] = field(default_factory=dict)


def compute_metrics(
    items: Sequence[ItemSamples],
    same: Callable[[str, str], bool] | None = None,
    breakdown_tags: Sequence[str] = ("subject", "level"),
    greedy_first: bool = False,
) -> dict[str, float]:
    """acc (first sample), pass@k and maj@k for k = 1, 2, 4, ... up to the samples per item, plus
    "acc/<tag>=<value>" breakdowns and "count". The k list follows the smallest item.

    With `greedy_first`, sample 0 is the greedy answer: it gives acc, and pass@k and maj@k are
    taken over the sampled answers after it only (PAPER.md §6 compares Maj@K and Pass@K of sampled
    outputs; mixing the greedy answer in would make maj@1 the greedy accuracy)."""
    metrics: dict[str, float] = {"count": float(len(items))}
    if not items:
        return metrics
    metrics["acc"] = accuracy([bool(it.correct[0]) if it.correct else False for it in items])
    pools = [(it.answers[1:], it.correct[1:]) if greedy_first else (it.answers, it.correct) for it in items]
    n = min(len(correct) for _, correct in pools)
    if n >= 1:
        for k in k_values(n):
            metrics[f"pass@{k}"] = sum(pass_at_k(len(c), sum(c), k) for _, c in pools) / len(items)
            metrics[f"maj@{k}"] = maj_at_k(pools, k, same)
    for tag in breakdown_tags:
        by_value: dict[str, list[bool]] = defaultdict(list)
        for it in items:
            if it.tags.get(tag):
                by_value[it.tags[tag]].append(bool(it.correct[0]) if it.correct else False)
        for value, verdicts in sorted(by_value.items()):
            metrics[f"acc/{tag}={value}"] = accuracy(verdicts)
    return metrics
