"""Evaluator benchmark: grading throughput (pairs/s) and verdict agreement with labels, ours
against math-verify on the same pairs in the same run.

    .venv/bin/python bench/bench_evaluator.py                                  # MATH-500 golds
    .venv/bin/python bench/bench_evaluator.py --benchmark-dir ../shared/benchmarks --repeat 2

Pairs: every MATH-500 gold answer against equivalent re-renderings (decimal, \\dfrac, spacing,
$...$, a boxed sentence) and perturbations that change its value (first digit, sign, tuple order,
interval brackets), labelled by construction (mathforge.evaluator.variants). math-verify runs as
documented, with its timeouts on (main thread), gold and prediction parsed from "$...$" (a bare
prediction is wrapped in "$...$" for it, since it does not parse LaTeX outside math mode). Ours
runs `grade` with its verdict caches cleared, the symbolic worker pool started beforehand. Times
are wall-clock seconds of sequential grading on the same machine. Target: >= 2x math-verify's
throughput and agreement at or above it.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from mathforge.evaluator import grading, symbolic
from mathforge.evaluator.benchmarks import load_benchmark
from mathforge.evaluator.variants import labelled_variants

ROOT = Path(__file__).resolve().parents[1]


def labelled_pairs(benchmark_dir: Path) -> list[tuple[str, str, bool]]:
    path = benchmark_dir / "math500_test.jsonl"
    if not path.is_file():
        path = ROOT / "tests" / "fixtures" / "benchmarks" / "math500_test.jsonl"
    items = load_benchmark(path)
    return [(text, item.answer, label) for item in items for text, label in labelled_variants(item.answer)]


def run_ours(pairs: list[tuple[str, str, bool]]) -> tuple[float, list[bool], dict[str, int]]:
    grading._judge.cache_clear()
    symbolic.symbolic_equal.cache_clear()
    reasons: dict[str, int] = {}
    started = time.perf_counter()
    verdicts = []
    for pred, gold, _ in pairs:
        verdict = grading.grade(pred, gold)
        verdicts.append(verdict.equivalent)
        reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
    return time.perf_counter() - started, verdicts, reasons


def run_math_verify(pairs: list[tuple[str, str, bool]]) -> tuple[float, list[bool], int]:
    from math_verify import parse, verify

    errors = 0
    started = time.perf_counter()
    verdicts = []
    for pred, gold, _ in pairs:
        text = pred if "$" in pred or "\\boxed" in pred else f"${pred}$"
        try:
            verdicts.append(bool(verify(parse(f"${gold}$"), parse(text))))
        except Exception:
            errors += 1
            verdicts.append(False)
    return time.perf_counter() - started, verdicts, errors


def agreement(verdicts: list[bool], pairs: list[tuple[str, str, bool]]) -> tuple[float, int, int]:
    false_pos = sum(v and not label for v, (_, _, label) in zip(verdicts, pairs, strict=True))
    false_neg = sum(label and not v for v, (_, _, label) in zip(verdicts, pairs, strict=True))
    return 1 - (false_pos + false_neg) / len(pairs), false_pos, false_neg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark-dir", default=str(ROOT.parent / "shared" / "benchmarks"))
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each grader (best is kept)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # math-verify logs every parse failure
    pairs = labelled_pairs(Path(args.benchmark_dir))
    positives = sum(label for _, _, label in pairs)
    print(f"{len(pairs)} labelled pairs ({positives} equivalent, {len(pairs) - positives} not)")
    symbolic.default_pool().warm()
    grading.grade("\\sin^2 x + \\cos^2 x", "1")  # first symbolic call: worker caches
    ours = min((run_ours(pairs) for _ in range(args.repeat)), key=lambda r: r[0])
    theirs = min((run_math_verify(pairs) for _ in range(args.repeat)), key=lambda r: r[0])
    ours_rate, theirs_rate = len(pairs) / ours[0], len(pairs) / theirs[0]
    ours_agree, theirs_agree = agreement(ours[1], pairs), agreement(theirs[1], pairs)
    print(f"{'grader':<12} {'pairs/s':>9} {'agreement':>10} {'false+':>7} {'false-':>7}")
    for name, rate, (agreed, false_pos, false_neg) in (
        ("mathforge", ours_rate, ours_agree),
        ("math-verify", theirs_rate, theirs_agree),
    ):
        print(f"{name:<12} {rate:>9.0f} {agreed:>10.4f} {false_pos:>7} {false_neg:>7}")
    print(f"throughput ratio mathforge / math-verify: {ours_rate / theirs_rate:.1f}x")
    print(f"mathforge deciding rules: {dict(sorted(ours[2].items(), key=lambda kv: -kv[1]))}")
    print(f"math-verify exceptions: {theirs[2]}")


if __name__ == "__main__":
    main()
