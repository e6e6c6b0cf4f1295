"""The grader never raises and answers within its limit on arbitrary strings, from any thread;
a runaway symbolic check is killed and its worker replaced."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mathforge.evaluator import symbolic
from mathforge.evaluator.grading import GradingPolicy, Verdict, extract_answer, grade

FAST = GradingPolicy(timeout_s=1.0)
# Time for one verdict: the symbolic limit plus the start of a replacement worker and slack for a
# loaded 2-core CI machine.
BUDGET_S = FAST.timeout_s + 10.0

latex_atoms = st.sampled_from(
    [
        "\\frac{",
        "}{",
        "}",
        "{",
        "\\sqrt",
        "^",
        "_",
        "x",
        "y",
        "2",
        "10",
        "\\pi",
        "(",
        ")",
        "[",
        "]",
        ",",
        "=",
        "\\boxed{",
        "\\left(",
        "\\right)",
        "\\{",
        "\\}",
        "\\cup",
        "\\infty",
        "%",
        "\\text{",
        "cm",
        ".",
        "-",
        "+",
        "\\cdot",
        "\\begin{pmatrix}",
        "&",
        "\\\\",
        "\\end{pmatrix}",
        "答案是",
        "#### ",
        "The answer is ",
        " ",
        "secs",
        "s",
        "in",
        "m",
        "min",
        "个",
        "°",
        "^\\circ",
        "\\mbox{",
        "\\%",
        "\\$",
    ]
)
latex_like = st.lists(latex_atoms, max_size=30).map("".join)
any_text = st.one_of(st.text(max_size=200), latex_like)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pred=any_text, gold=any_text)
def test_grade_never_raises_and_answers_within_its_limit(pred: str, gold: str) -> None:
    started = time.monotonic()
    verdict = grade(pred, gold, FAST)
    assert isinstance(verdict, Verdict)
    assert isinstance(verdict.equivalent, bool) and isinstance(verdict.pred_answer, str)
    assert time.monotonic() - started < BUDGET_S
    if verdict.timed_out:
        assert not verdict.equivalent


@settings(max_examples=200, deadline=None)
@given(text=any_text)
def test_extract_never_raises(text: str) -> None:
    found = extract_answer(text)
    assert isinstance(found.answer, str) and found.method


def test_runaway_symbolic_check_times_out_off_the_main_thread() -> None:
    results: list[Verdict] = []
    policy = GradingPolicy(timeout_s=0.5)
    # A billion-term sum of towers: sympy would take far longer than the limit to settle it.
    thread = threading.Thread(
        target=lambda: results.append(grade("\\boxed{\\sum_{k=1}^{10^{9}} k^{k}}", "3", policy))
    )
    started = time.monotonic()
    thread.start()
    thread.join(BUDGET_S)
    assert results, "the grader did not answer"
    assert time.monotonic() - started < BUDGET_S
    verdict = results[0]
    assert not verdict.equivalent
    assert verdict.timed_out and verdict.reason == "timeout"


def test_pool_kills_and_replaces_a_stuck_worker() -> None:
    pool = symbolic.SymbolicPool(size=1)
    try:
        outcome = pool.compare("2^{2^{2^{2^{2^{2^{2}}}}}}", "3", timeout_s=0.3)
        assert outcome.timed_out and outcome.equal is None
        assert pool.timeouts == 1
        assert pool.compare("\\sin^2 x + \\cos^2 x", "1", timeout_s=20).equal is True
    finally:
        pool.close()


def test_many_threads_share_the_pool() -> None:
    pairs = [
        ("\\sin^2 x + \\cos^2 x", "1", True),
        ("\\tan x", "\\frac{\\sin x}{\\cos x}", True),
        ("\\sin x", "\\cos x", False),
    ] * 4
    out: dict[int, bool] = {}

    def work(i: int, pred: str, gold: str) -> None:
        out[i] = grade(pred, gold, GradingPolicy(timeout_s=20)).equivalent

    threads = [threading.Thread(target=work, args=(i, p, g)) for i, (p, g, _) in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [out[i] for i in range(len(pairs))] == [e for _, _, e in pairs]


@pytest.mark.parametrize(
    "text",
    [
        "final answer is 1 " * 10000,  # a lazy regex over this is quadratic
        "the answer is " + " " * 100000 + "7",
        "\\boxed{" * 20000,
        "{" * 100000 + "}" * 100000,
        "答案是" * 50000,
        "(1," * 30000,
        "\\frac{" * 3000 + "}" * 3000,
        "2^" * 3000 + "2",
    ],
)
def test_long_adversarial_outputs_are_graded_within_the_limit(text: str) -> None:
    started = time.monotonic()
    verdict = grade(text, "1", FAST)
    assert isinstance(verdict.equivalent, bool)
    assert time.monotonic() - started < BUDGET_S
