"""Evaluator benchmark: grading throughput (pairs/s) and verdict agreement with labels, ours
against math-verify on the same pairs in the same run.

    .venv/bin/python bench/bench_evaluator.py                                  # both pair sets
    .venv/bin/python bench/bench_evaluator.py --benchmark-dir ../shared/benchmarks --repeat 2

Two pair sets, reported apart and together:
- "math500": every MATH-500 gold answer against equivalent re-renderings (decimal, \\dfrac,
  spacing, $...$, a boxed sentence) and perturbations that change its value (first digit, sign,
  tuple order, interval brackets), labelled by construction (mathforge.evaluator.variants);
- "graders": bench/data/grading_pairs.jsonl, (prediction, gold, label) pairs written for this
  project from the kinds of cases other graders document (math-verify's README, the MATH
  repository's equivalence behaviour, MARIO_EVAL's docs, graders' issue threads), false cases
  beside true ones, kept apart from the regression tests in tests/fixtures/grading/.
math-verify runs as documented, with its timeouts on (main thread), the gold parsed from "$...$"
and the prediction as given when it holds "$", "\\(" or "\\boxed", else wrapped in "$...$" (it
does not parse LaTeX outside math mode); its agreement with the prediction parsed raw (plain
expressions, "pi/3") is printed too. Ours runs `grade` with its verdict caches cleared, the
symbolic worker pool started beforehand. Times are wall-clock seconds of sequential grading on the
same machine. Target: >= 2x math-verify's throughput, agreement above it, fewer false positives.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from mathforge.evaluator import grading, symbolic
from mathforge.evaluator.benchmarks import load_benchmark
from mathforge.evaluator.variants import labelled_variants

ROOT = Path(__file__).resolve().parents[1]
GRADERS_PAIRS = ROOT / "bench" / "data" / "grading_pairs.jsonl"
BLIND_PAIRS = ROOT / "bench" / "data" / "grading_pairs_blind.jsonl"


def labelled_pairs(benchmark_dir: Path) -> list[tuple[str, str, bool]]:
    path = benchmark_dir / "math500_test.jsonl"
    if not path.is_file():
        path = ROOT / "tests" / "fixtures" / "benchmarks" / "math500_test.jsonl"
    items = load_benchmark(path)
    return [(text, item.answer, label) for item in items for text, label in labelled_variants(item.answer)]


def graders_pairs(path: Path) -> list[tuple[str, str, bool]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [(row["pred"], row["gold"], bool(row["equivalent"])) for row in rows]


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


def run_math_verify(pairs: list[tuple[str, str, bool]], wrap: bool = True) -> tuple[float, list[bool], int]:
    from math_verify import parse, verify

    errors = 0
    started = time.perf_counter()
    verdicts = []
    for pred, gold, _ in pairs:
        text = pred if not wrap or any(m in pred for m in ("$", "\\(", "\\boxed")) else f"${pred}$"
        try:
            verdicts.append(bool(verify(parse(f"${gold}$"), parse(text))))
        except Exception:
            errors += 1
            verdicts.append(False)
    return time.perf_counter() - started, verdicts, errors


def agreement(verdicts: list[bool], pairs: list[tuple[str, str, bool]]) -> tuple[int, int, int]:
    """(pairs agreeing with their label, false positives, false negatives)."""
    false_pos = sum(v and not label for v, (_, _, label) in zip(verdicts, pairs, strict=True))
    false_neg = sum(label and not v for v, (_, _, label) in zip(verdicts, pairs, strict=True))
    return len(pairs) - false_pos - false_neg, false_pos, false_neg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark-dir", default=str(ROOT.parent / "shared" / "benchmarks"))
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each grader (best is kept)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # math-verify logs every parse failure
    sets = {
        "math500": labelled_pairs(Path(args.benchmark_dir)),
        "graders": graders_pairs(GRADERS_PAIRS),
        "blind": graders_pairs(BLIND_PAIRS),
    }
    symbolic.default_pool().warm()
    grading.grade("\\sin^2 x + \\cos^2 x", "1")  # first symbolic call: worker caches
    print(f"load average (1, 5, 15 min): {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    header = ("pairs", "grader", "n", "pairs/s", "agree", "rate", "false+", "false-")
    print("{:<9} {:<18} {:>5} {:>9} {:>6} {:>7} {:>7} {:>7}".format(*header))
    seconds = {"mathforge": 0.0, "math-verify": 0.0}
    total = 0
    for name, pairs in sets.items():
        total += len(pairs)
        ours = min((run_ours(pairs) for _ in range(args.repeat)), key=lambda r: r[0])
        theirs = min((run_math_verify(pairs) for _ in range(args.repeat)), key=lambda r: r[0])
        raw = run_math_verify(pairs, wrap=False)
        seconds["mathforge"] += ours[0]
        seconds["math-verify"] += theirs[0]
        for grader, took, verdicts in (
            ("mathforge", ours[0], ours[1]),
            ("math-verify", theirs[0], theirs[1]),
            ("math-verify (raw)", raw[0], raw[1]),
        ):
            agreed, false_pos, false_neg = agreement(verdicts, pairs)
            print(
                f"{name:<9} {grader:<18} {len(pairs):>5} {len(pairs) / took:>9.0f} {agreed:>6} "
                f"{agreed / len(pairs):>7.4f} {false_pos:>7} {false_neg:>7}"
            )
        print(f"{name:<9} mathforge deciding rules: {dict(sorted(ours[2].items(), key=lambda kv: -kv[1]))}")
        print(f"{name:<9} math-verify exceptions: {theirs[2]}")
    ours_rate, theirs_rate = total / seconds["mathforge"], total / seconds["math-verify"]
    print(
        f"throughput ratio mathforge / math-verify over all {total} pairs: {ours_rate / theirs_rate:.1f}x "
        f"({ours_rate:.0f} vs {theirs_rate:.0f} pairs/s)"
    )


if __name__ == "__main__":
    main()
