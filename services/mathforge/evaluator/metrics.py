"""Benchmark metrics (DeepSeekMath §3.2): greedy accuracy, maj@k
(majority vote over equivalent answers; by default over the first k samples, as published tables
compute it) and unbiased pass@k = 1 - C(n-c, k) / C(n, k), exact for any n, with breakdowns by tag
(MATH subject and level). Means are summed exactly and rounded once, so maj@1 of 1 in 2 is 0.5.

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
    return float(_exact_pass_at_k(n, c, k))


def _exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return Fraction(1)
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def answer_groups(answers: Sequence[str], same: Callable[[str, str], bool] | None = None) -> list[int]:
    """A group label per answer: equal answers share one, then answers whose group representatives
    `same` judges equivalent. Empty answers (nothing extracted) get -1 and never vote."""
    reps: list[str] = []
    labels: list[int] = []
    for answer in answers:
        if not answer:
            labels.append(-1)
            continue
        for label, rep in enumerate(reps):
            if rep == answer or (same is not None and same(rep, answer)):
                labels.append(label)
                break
        else:
            labels.append(len(reps))
            reps.append(answer)
    return labels


def _vote(labels: Sequence[int], correct: Sequence[bool], window: Sequence[int]) -> bool:
    """Is the most common group among the samples at `window` (in that order) right? A tie goes to
    the tied group seen first in the window (what Counter.most_common does with insertion order)."""
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for position, index in enumerate(window):
        label = labels[index]
        if label < 0:
            continue
        counts[label] = counts.get(label, 0) + 1
        first.setdefault(label, position)
    if not counts:
        return False
    best = max(counts, key=lambda label: (counts[label], -first[label]))
    return bool(correct[next(i for i in window if labels[i] == best)])


def maj_vote(
    answers: Sequence[str], correct: Sequence[bool], k: int, same: Callable[[str, str], bool] | None = None
) -> bool:
    """One vote: is the most common answer among the first k samples right?

    Answers are grouped by equality, then groups whose representatives `same` judges equivalent are
    merged. Empty answers (nothing extracted) do not vote. Ties go to the group whose first sample
    came earliest: [A, B, B, A] votes A.
    """
    return _vote(answer_groups(answers[:k], same), correct, range(min(k, len(answers))))


MAJ_FIRST_K = "first_k"
MAJ_CYCLIC = "cyclic"
MAJ_DEFINITIONS = {
    MAJ_FIRST_K: "the majority vote over the first k samples (lm-eval's take_first_k then majority, "
    "Qwen2.5-Math's pred[:k]); a tie goes to the answer seen first",
    MAJ_CYCLIC: "the mean majority vote over the n cyclic windows of k consecutive samples; in each "
    "window a tie goes to the answer seen first in it",
}
"""The maj@k definitions `compute_metrics` offers, by name, with the sentence reports print."""
DEFAULT_MAJ = MAJ_FIRST_K


def maj_at_k_item(
    answers: Sequence[str],
    correct: Sequence[bool],
    ks: Sequence[int],
    same: Callable[[str, str], bool] | None = None,
    definition: str = DEFAULT_MAJ,
) -> dict[int, Fraction]:
    """maj@k of one item for every k in `ks`, exact (Fractions), by `definition`:

    "first_k" (default): 1 if the vote over samples 0..k-1 is right, else 0, as published tables
    compute it (lm-eval, Qwen2.5-Math), so our numbers line up with theirs.
    "cyclic": the mean vote over the n cyclic windows of k consecutive samples (i, ..., i+k-1 mod n).
    The samples are exchangeable, so each window is a fair k-subset; averaging n of them (each sample
    in exactly k) gives a lower-variance curve and makes maj@1 equal pass@1. It is not an even split of
    ties: each window breaks its tie towards the answer it sees first, so [A, A, B, B, C] with A right
    gives 3/5 at k = 5 (A comes before B in the windows starting at samples 0, 1 and 4).

    Equivalence is decided once per item, not once per window."""
    if definition not in MAJ_DEFINITIONS:
        raise ValueError(f"maj@k definition {definition!r} is not one of {', '.join(MAJ_DEFINITIONS)}")
    n = len(answers)
    if len(correct) != n:
        raise ValueError(f"maj@k needs one verdict per answer, got {n} answers and {len(correct)} verdicts")
    labels = answer_groups(answers, same)
    out: dict[int, Fraction] = {}
    for k in ks:
        if not 1 <= k <= n:
            raise ValueError(f"maj@k needs 1 <= k <= n samples, got k={k}, n={n}")
        if definition == MAJ_FIRST_K:
            out[k] = Fraction(int(_vote(labels, correct, range(k))))
        else:
            votes = sum(_vote(labels, correct, [(start + j) % n for j in range(k)]) for start in range(n))
            out[k] = Fraction(votes, n)
    return out


def maj_at_k(
    items: Sequence[tuple[Sequence[str], Sequence[bool]]],
    k: int,
    same: Callable[[str, str], bool] | None = None,
    definition: str = DEFAULT_MAJ,
) -> float:
    """Mean maj@k over items given as (answers, correct) pairs (see maj_at_k_item for `definition`)."""
    if not items:
        return 0.0
    return float(sum(maj_at_k_item(a, c, [k], same, definition)[k] for a, c in items) / len(items))


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
    maj_definition: str = DEFAULT_MAJ,
) -> dict[str, float]:
    """acc (first sample), pass@k and maj@k for k = 1, 2, 4, ... up to the samples per item, plus
    "acc/<tag>=<value>" breakdowns and "count" (an int). The k list follows the smallest item.
    `maj_definition` is a key of MAJ_DEFINITIONS ("first_k" by default, or "cyclic").

    With `greedy_first`, sample 0 is the greedy answer: it gives acc, and pass@k and maj@k are
    taken over the sampled answers after it only (DeepSeekMath §3.2 compares Maj@K and Pass@K of
    sampled outputs, not a mix of the greedy answer and samples)."""
    if maj_definition not in MAJ_DEFINITIONS:
        raise ValueError(f"maj@k definition {maj_definition!r} is not one of {', '.join(MAJ_DEFINITIONS)}")
    metrics: dict[str, float] = {"count": len(items)}
    if not items:
        return metrics
    metrics["acc"] = accuracy([bool(it.correct[0]) if it.correct else False for it in items])
    pools = [(it.answers[1:], it.correct[1:]) if greedy_first else (it.answers, it.correct) for it in items]
    n = min(len(correct) for _, correct in pools)
    if n >= 1:
        ks = k_values(n)
        majority = {k: Fraction(0) for k in ks}
        for answers, correct in pools:
            for k, share in maj_at_k_item(answers, correct, ks, same, maj_definition).items():
                majority[k] += share
        for k in ks:
            passed = sum(_exact_pass_at_k(len(c), sum(c), k) for _, c in pools)
            metrics[f"pass@{k}"] = float(passed / len(items))
            metrics[f"maj@{k}"] = float(majority[k] / len(items))
    for tag in breakdown_tags:
        by_value: dict[str, list[bool]] = defaultdict(list)
        for it in items:
            if it.tags.get(tag):
                by_value[it.tags[tag]].append(bool(it.correct[0]) if it.correct else False)
        for value, verdicts in sorted(by_value.items()):
            metrics[f"acc/{tag}={value}"] = accuracy(verdicts)
    return metrics
