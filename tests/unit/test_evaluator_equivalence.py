"""Answer equivalence: numbers, fractions, LaTeX clean-up, structures, equations, Chinese answers,
choices, policies, and symbolic checks through the worker pool."""

from __future__ import annotations

import pytest
from mathforge.evaluator.grading import GradingPolicy, grade

EQUIVALENT = [
    ("1,000", "1000"),
    ("1{,}000", "1000"),
    ("12,345,678", "12345678"),
    ("-3", "-3.0"),
    ("0.50", "\\frac12"),
    ("\\frac{1}{2}", "1/2"),
    ("\\dfrac{3}{4}", "0.75"),
    ("\\tfrac34", "\\frac{3}{4}"),
    ("\\frac{6}{8}", "\\frac34"),
    ("2\\frac{1}{2}", "\\frac{5}{2}"),
    ("2 1/2", "2.5"),
    ("1.5e3", "1500"),
    ("1.5\\times10^{3}", "1500"),
    ("3\\cdot 10^{-2}", "0.03"),
    ("50\\%", "50"),
    ("\\$18", "18"),
    ("18 dollars", "18"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("\\text{(B)}", "B"),
    ("90^\\circ", "90"),
    ("90^{\\circ}", "90"),
    ("45°", "45"),
    ("5\\text{ cm}", "5"),
    ("5 \\text{cm}^2", "5"),
    ("10\\!000", "10000"),
    ("\\$\\,5", "5"),
    ("x = 2", "2"),
    ("2", "x=2"),
    ("y = 2x + 1", "y=1+2x"),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
    ("\\frac{1}{\\sqrt2}", "\\frac{\\sqrt{2}}{2}"),
    ("2\\sqrt{3}", "\\sqrt{12}"),
    ("(x+1)^2", "x^2+2x+1"),
    ("x(x-1)", "x^2-x"),
    ("\\frac{x}{2}", "0.5x"),
    ("2^{10}", "1024"),
    ("\\pi r^2", "r^2\\pi"),
    ("[1, 2)", "[1,2)"),
    ("(-\\infty, 3]", "(-\\infty,3]"),
    ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}"),
    ("3, -2", "-2, 3"),
    ("(1, 2) \\cup (3, 4)", "(3,4)\\cup(1,2)"),
    ("(2, 3)", "(2,3)"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("\\begin{bmatrix}1&0\\\\0&1\\end{bmatrix}", "\\begin{bmatrix}1 & 0\\\\ 0 & 1\\end{bmatrix}"),
    ("\\text{Monday}", "monday"),
    ("18个", "18"),
    ("3.5元", "3.5"),
    ("一共45个", "45"),
    ("3/8", "\\frac{3}{8}"),
    ("１２", "12"),
    ("5;10", "$5$;$10$"),
    ("\\sin(\\pi/6)", "\\frac{1}{2}"),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
    ("x \\in [2, 5]", "[2,5]"),
    ("\\frac{a}{b} + 1", "\\frac{a+b}{b}"),
]

NOT_EQUIVALENT = [
    ("1,001", "1000"),
    ("0.33", "\\frac13"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("2", "-2"),
    ("[1, 2)", "[1,2]"),
    ("(1, 2)", "[1, 2]"),
    ("(1, 2)", "(2, 1)"),
    ("\\{1, 2\\}", "\\{1, 2, 3\\}"),
    ("x^2+1", "x^2+2"),
    ("2x", "2y"),
    ("\\sqrt{2}", "1.41"),
    ("3\\pi", "3"),
    ("5;10", "10;5"),
    ("B", "C"),
    ("\\text{Tuesday}", "monday"),
    ("12", "21"),
    ("1.5e3", "150"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}"),
    ("x = 3", "2"),
    ("2, 3", "2, 3, 4"),
    ("", "5"),
]


@pytest.mark.parametrize(("pred", "gold"), EQUIVALENT)
def test_equivalent_answers_are_accepted(pred: str, gold: str) -> None:
    verdict = grade(pred, gold)
    assert verdict.equivalent, verdict


@pytest.mark.parametrize(("pred", "gold"), NOT_EQUIVALENT)
def test_different_answers_are_rejected(pred: str, gold: str) -> None:
    verdict = grade(pred, gold)
    assert not verdict.equivalent, verdict


@pytest.mark.parametrize(("pred", "gold"), [(g, p) for p, g in EQUIVALENT])
def test_equivalence_is_symmetric(pred: str, gold: str) -> None:
    assert grade(pred, gold).equivalent


def test_full_outputs_are_graded_against_full_solutions() -> None:
    output = "We add: $\\frac{6}{8}+\\frac18$. The answer is $\\boxed{\\dfrac{7}{8}}$."
    verdict = grade(output, "$\\frac{6}{8}+\\frac18 = \\boxed{\\frac{7}{8}}$.")
    assert (
        verdict.equivalent
        and verdict.pred_answer == "\\dfrac{7}{8}"
        and verdict.gold_answer == "\\frac{7}{8}"
    )
    assert grade("He pays 5 + 7 = 12.\n#### 12", "So 12.\n#### 12").equivalent


@pytest.mark.parametrize(
    ("percent", "pairs"),
    [
        ("strip", [("50\\%", "50", True), ("50\\%", "0.5", False)]),
        ("fraction", [("50\\%", "50", True), ("50\\%", "0.5", True), ("50", "0.5", False)]),
        ("strict", [("50\\%", "50", False), ("50\\%", "50\\%", True)]),
    ],
)
def test_percent_policy(percent: str, pairs: list[tuple[str, str, bool]]) -> None:
    policy = GradingPolicy(percent=percent)
    for pred, gold, expected in pairs:
        assert grade(pred, gold, policy).equivalent is expected, (percent, pred, gold)


def test_units_policy_keep_compares_units() -> None:
    assert grade("5 cm", "5").equivalent
    assert not grade("5 cm", "5", GradingPolicy(units="keep")).equivalent


def test_tuple_policy_unordered_accepts_permutations() -> None:
    assert not grade("(2, 1)", "(1, 2)").equivalent
    assert grade("(2, 1)", "(1, 2)", GradingPolicy(tuples="unordered")).equivalent
    assert not grade(
        "[2, 1]", "[1, 2]", GradingPolicy(tuples="unordered")
    ).equivalent  # intervals stay ordered


def test_choice_letters_are_compared_as_sets() -> None:
    choice = GradingPolicy(format="choice")
    assert grade("The answer is (C).", "C", choice).equivalent
    assert grade("答案是 A C", "AC", choice).equivalent
    assert not grade("The answer is (B).", "C", choice).equivalent


def test_relative_tolerance_policy() -> None:
    assert not grade("3.1416", "\\pi").equivalent
    assert grade("3.1416", "\\pi", GradingPolicy(rel_tol=1e-4)).equivalent


def test_fast_path_settles_numbers_without_symbolic_work() -> None:
    for pred, gold in [("\\frac{1}{2}", "0.5"), ("1,000", "1000"), ("(x+1)^2", "x^2+2x+1"), ("7", "8")]:
        assert grade(pred, gold).reason in ("string", "numeric", "expression"), (pred, gold)


def test_symbolic_check_decides_what_the_fast_path_cannot() -> None:
    verdict = grade("\\sin^2 x + \\cos^2 x", "1")
    assert verdict.equivalent and verdict.reason == "symbolic"


def test_equations_with_the_same_named_side_compare_right_sides() -> None:
    assert grade("x=3", "x=2").reason == "numeric" and not grade("x=3", "x=2").equivalent
    assert grade("2x+y=1", "y=1-2x").equivalent  # rearranged equations go to math-verify


def test_no_answer_is_not_equivalent() -> None:
    verdict = grade("", "5")
    assert (verdict.equivalent, verdict.reason) == (False, "no_answer")


def test_bad_policy_values_are_rejected_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="percent"):
        GradingPolicy(percent="half")
    with pytest.raises(ValueError, match="unknown grading policy fields"):
        GradingPolicy.from_mapping({"colour": "red"})
