"""Every boxed gold answer of the MATH test set is equivalent to itself and to a re-rendered form
(decimal for a simple fraction, else \\dfrac, spacing, $...$); labelled variants of MATH-500 golds
are all judged as labelled."""

from __future__ import annotations

from pathlib import Path

from mathforge.evaluator.benchmarks import load_benchmark
from mathforge.evaluator.grading import grade
from mathforge.evaluator.variants import labelled_variants, rerender


def test_math_golds_match_themselves_and_a_rerendered_form(shared_benchmarks: Path) -> None:
    items = load_benchmark(shared_benchmarks / "math_test.jsonl")
    assert len(items) == 5000
    failures = []
    for item in items:
        for pred in (item.answer, rerender(item.answer)):
            verdict = grade(pred, item.answer)
            if not verdict.equivalent:
                failures.append((item.id, item.answer, pred, verdict.reason))
    rate = 1 - len(failures) / (2 * len(items))
    assert rate >= 0.995, failures[:20]
    assert not failures, failures[:20]  # measured: 10000 / 10000


def test_math500_labelled_variants_are_judged_as_labelled(shared_benchmarks: Path) -> None:
    items = load_benchmark(shared_benchmarks / "math500_test.jsonl")
    wrong = [
        (item.answer, text, label)
        for item in items
        for text, label in labelled_variants(item.answer)
        if grade(text, item.answer).equivalent is not label
    ]
    assert not wrong, wrong[:20]
