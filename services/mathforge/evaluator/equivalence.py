"""Decides whether a predicted and a gold answer are equivalent. A fast path settles most pairs
without symbolic work (normalised string equality, exact numbers, LaTeX arithmetic evaluated at
sample points, structure: tuples, intervals, sets, lists, matrices, equations, relations, choices);
only what it cannot decide goes to math-verify in a worker process under a hard time limit.

Named rules beside the fast path (docs/evaluator.md lists each with an example):
clock_time ("3:00 PM" == "15:00:00"), decimal_comma ("2,5" == 2.5, policy decimal_comma),
rounded_decimal ("0.3333" == 1/3, policy rounded_decimals), function_name ("y = 2x" == "f(x) = 2x"),
relation (sides turned: "5 \\geq x" == "x \\leq 5")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from mathforge.evaluator import latex_eval
from mathforge.evaluator.normalize import clock_seconds, normalize, unit_of
from mathforge.evaluator.policy import GradingPolicy
from mathforge.evaluator.structure import Answer, is_simple_name, parse_answer
from mathforge.evaluator.symbolic import symbolic_equal

_CHOICE = re.compile(r"^\(?([A-E](?:[,\s]*[A-E])*)\)?$")
_BASE = re.compile(r"^([0-9A-Za-z]+)_\{?(\d+)\}?$")
_WORDS = re.compile(r"^[A-Za-z\u4e00-\u9fff ,.'-]+$")
# One number with a decimal comma: a single comma not followed by exactly three digits ("12,500" is a
# thousands separator, removed by normalize before this is tried).
_DECIMAL_COMMA = re.compile(r"^-?\d+,(?!\d{3}$)\d+$")
_DECIMAL = re.compile(r"^-?(\d+)\.(\d+)$")
ROUNDED_MIN_DIGITS = 4
# A left side that names a function of one variable: y, f(x), g(t).
_FUNCTION_NAME = re.compile(r"^(?:y|[a-zA-Z]\(([a-z])\))$")
# Reasons ordered by how much work they took; a composite answer reports its costliest part.
_COST = {"string": 0, "choice": 1, "numeric": 2, "expression": 3, "structure": 4, "symbolic": 5, "timeout": 6}


@dataclass(frozen=True)
class Decision:
    equal: bool
    reason: str
    timed_out: bool = False


def _combine(decisions: list[Decision], equal: bool) -> Decision:
    reason = max((d.reason for d in decisions), key=lambda r: _COST.get(r, 0), default="structure")
    return Decision(equal, reason if reason != "string" else "structure", any(d.timed_out for d in decisions))


def _percent_variants(text: str, policy: GradingPolicy) -> list[str]:
    if text.endswith("%") and policy.percent == "fraction":
        return [text[:-1], f"({text[:-1]})/100"]
    return [text]


def _base_number(text: str) -> tuple[str, int] | None:
    """("52", 8) for "52_8" or "52_{8}": a number written in a base, as MATH answers do."""
    match = _BASE.match(text)
    if not match or not 2 <= int(match.group(2)) <= 36:
        return None
    return match.group(1).upper(), int(match.group(2))


def _compare_bases(pred: str, gold: str) -> Decision | None:
    p, g = _base_number(pred), _base_number(gold)
    if p is None and g is None:
        return None
    if p is not None and g is not None:
        try:
            return Decision(int(p[0], p[1]) == int(g[0], g[1]), "numeric")
        except ValueError:
            return Decision(p == g, "string")
    based, plain = (p, gold) if p is not None else (g, pred)
    assert based is not None
    if not re.fullmatch(r"[0-9A-Za-z]+", plain):
        return None
    # "1011_2" against "1011" (the digits, subscript dropped) or "11" (its value in decimal)
    try:
        value = int(based[0], based[1])
    except ValueError:
        return Decision(False, "string")
    return Decision(based[0] == plain.upper() or (plain.isdigit() and int(plain) == value), "numeric")


def _rounded_decimal(decimal: str, other: str) -> bool:
    """rounded_decimal: `decimal` has >= 4 significant digits and is `other`'s exact rational value
    rounded or truncated at its last digit ("0.142857142857" for 1/7; "0.33" for 1/3 has too few
    digits). Irrational values keep rel_tol: "3.1416" is not pi unless the policy's tolerance says so."""
    match = _DECIMAL.match(decimal)
    if not match or len((match.group(1) + match.group(2)).lstrip("0")) < ROUNDED_MIN_DIGITS:
        return False
    value = latex_eval.value_of(other)
    if not isinstance(value, Fraction) or _DECIMAL.match(other):
        return False
    return abs(Fraction(decimal) - value) < Fraction(1, 10 ** len(match.group(2)))


def _approximates(pred: str, gold: str, policy: GradingPolicy) -> bool:
    """A written decimal against an exact value: rounded_decimal, else within rel_tol (two exact
    values, "1/3" and "2/6" or two decimals, are compared exactly)."""
    if bool(_DECIMAL.match(pred)) == bool(_DECIMAL.match(gold)):
        return False
    if policy.rounded_decimals == "match" and (_rounded_decimal(pred, gold) or _rounded_decimal(gold, pred)):
        return True
    a, b = latex_eval.value_of(pred), latex_eval.value_of(gold)
    if a is None or b is None:
        return False
    return latex_eval.numbers_close(complex(a), complex(b), policy.rel_tol)


def _leaf_equal(pred: str, gold: str, policy: GradingPolicy) -> Decision:
    if pred == gold:
        return Decision(True, "string")
    based = _compare_bases(pred, gold)
    if based is not None:
        return based
    if policy.units == "keep" and unit_of(pred) != unit_of(gold):
        return Decision(False, "string")
    if pred.endswith("%") != gold.endswith("%") and policy.percent == "strict":
        return Decision(False, "string")
    for p in _percent_variants(pred, policy):
        for g in _percent_variants(gold, policy):
            verdict = latex_eval.compare_expressions(p, g, policy.rel_tol)
            if verdict:
                return Decision(True, "numeric" if latex_eval.value_of(g) is not None else "expression")
            if verdict is False and _approximates(p, g, policy):
                return Decision(True, "numeric")
            if (
                verdict is False
                and len(_percent_variants(pred, policy)) == len(_percent_variants(gold, policy)) == 1
            ):
                return Decision(False, "numeric" if latex_eval.value_of(g) is not None else "expression")
    if _WORDS.match(pred) and _WORDS.match(gold):
        return Decision(pred.casefold().replace(" ", "") == gold.casefold().replace(" ", ""), "string")
    outcome = symbolic_equal(gold, pred, policy.timeout_s)
    if outcome.timed_out:
        return Decision(False, "timeout", timed_out=True)
    return Decision(bool(outcome.equal), "symbolic")


def _match_unordered(preds: tuple[Answer, ...], golds: tuple[Answer, ...], policy: GradingPolicy) -> Decision:
    remaining = list(golds)
    used: list[Decision] = []
    for p in preds:
        for i, g in enumerate(remaining):
            decision = _compare(p, g, policy)
            if decision.equal:
                used.append(decision)
                del remaining[i]
                break
        else:
            return _combine(used, False)
    return _combine(used, not remaining)


def _compare_items(pred: Answer, gold: Answer, policy: GradingPolicy, ordered: bool) -> Decision:
    if len(pred.items) != len(gold.items):
        return Decision(False, "structure")
    if not ordered:
        return _match_unordered(pred.items, gold.items, policy)
    decisions = []
    for p, g in zip(pred.items, gold.items, strict=True):
        decision = _compare(p, g, policy)
        decisions.append(decision)
        if not decision.equal:
            return _combine(decisions, False)
    return _combine(decisions, True)


def _compare(pred: Answer, gold: Answer, policy: GradingPolicy) -> Decision:
    if pred.text == gold.text:
        return Decision(True, "string")
    if gold.kind == "equation" and pred.kind != "equation" and is_simple_name(gold.items[0].text):
        return _compare(pred, gold.items[1], policy)
    if pred.kind == "equation" and gold.kind != "equation" and is_simple_name(pred.items[0].text):
        return _compare(pred.items[1], gold, policy)
    if (pred.kind == "list" and gold.kind == "tuple") or (pred.kind == "tuple" and gold.kind == "list"):
        # "(1, 2)" vs "1, 2": a bare list of solutions written with or without parentheses
        ordered = policy.tuples == "ordered"
        return _compare_items(pred, gold, policy, ordered)
    if {pred.kind, gold.kind} == {"list", "set"}:
        # "\\{-1, 1\\}" vs "1, -1": the solutions as a set or as a list, order free either way
        return _compare_items(pred, gold, policy, ordered=False)
    if pred.kind != gold.kind:
        if "leaf" in (pred.kind, gold.kind) and "equation" not in (pred.kind, gold.kind):
            return _leaf_equal(pred.text, gold.text, policy)
        return (
            _leaf_equal(pred.text, gold.text, policy)
            if "equation" in (pred.kind, gold.kind)
            else Decision(False, "structure")
        )
    if pred.kind == "leaf":
        return _leaf_equal(pred.text, gold.text, policy)
    if pred.kind == "tuple":
        if (pred.open, pred.close) != (gold.open, gold.close):
            return Decision(False, "structure")
        return _compare_items(pred, gold, policy, ordered=policy.tuples == "ordered" or pred.open == "[")
    if pred.kind in ("set", "union"):
        return _compare_items(pred, gold, policy, ordered=False)
    if pred.kind == "list":
        # a list of answers is unordered ("3; 5" == "5, 3", as math-verify reads it) unless both
        # sides separate with ";" (fill-in-the-blank answers in order); symmetric either way
        return _compare_items(pred, gold, policy, ordered=";" in gold.text and ";" in pred.text)
    if pred.kind == "matrix":
        return _compare_items(pred, gold, policy, ordered=True)
    if pred.kind == "relation":
        if pred.open == gold.open:
            sides = _compare_items(pred, gold, policy, ordered=True)
            if sides.equal:
                return sides
        return _leaf_equal(pred.text, gold.text, policy)  # "2x > 6" vs "x > 3": math-verify decides
    if _same_function(pred.items[0].text, gold.items[0].text):
        return _compare(pred.items[1], gold.items[1], policy)
    # both equations: "x = 3" vs "x = 2" is settled by the right sides; otherwise the same sides,
    # else math-verify (it compares equations, e.g. "2x + y = 1" vs "y = 1 - 2x")
    lhs_rhs = _compare_items(pred, gold, policy, ordered=True)
    if lhs_rhs.equal or (pred.items[0].text == gold.items[0].text and is_simple_name(gold.items[0].text)):
        return lhs_rhs
    return _leaf_equal(pred.text, gold.text, policy)


def _same_function(pred_lhs: str, gold_lhs: str) -> bool:
    """function_name: "y = ..." and "f(x) = ..." (or "g(x) = ...") name the same function of x; two
    different arguments, "f(x)" and "f(t)", do not."""
    p, g = _FUNCTION_NAME.match(pred_lhs.strip()), _FUNCTION_NAME.match(gold_lhs.strip())
    if not p or not g or pred_lhs.strip() == gold_lhs.strip():
        return False
    return p.group(1) is None or g.group(1) is None or p.group(1) == g.group(1)


def _decimal_comma(text: str, other: str, policy: GradingPolicy) -> str:
    """decimal_comma: "2,5" read as 2.5 when the other side is a single answer, not a list."""
    if policy.decimal_comma == "auto" and _DECIMAL_COMMA.match(text) and not re.search(r"[,;]|\\cup", other):
        return text.replace(",", ".")
    return text


def _choice_letters(text: str) -> str | None:
    match = _CHOICE.match(text)
    return "".join(sorted(set(re.sub(r"[^A-E]", "", match.group(1))))) if match else None


def answers_equivalent(pred_answer: str, gold_answer: str, policy: GradingPolicy) -> Decision:
    """Equivalence of two extracted answers under `policy` (may call the symbolic pool)."""
    pred_clock = clock_seconds(pred_answer)
    if pred_clock is not None:
        gold_clock = clock_seconds(gold_answer)
        if gold_clock is not None:  # clock_time: "3:00 PM" == "15:00" == "15:00:00"
            return Decision(pred_clock == gold_clock, "numeric")
    pred, gold = normalize(pred_answer, policy), normalize(gold_answer, policy)
    if not pred:
        return Decision(False, "no_answer")
    if pred == gold:
        return Decision(True, "string")
    pred, gold = _decimal_comma(pred, gold, policy), _decimal_comma(gold, pred, policy)
    gold_letters = _choice_letters(gold)
    if gold_letters is not None and (policy.format == "choice" or _choice_letters(pred) is not None):
        return Decision(_choice_letters(pred) == gold_letters, "choice")
    return _compare(parse_answer(pred), parse_answer(gold), policy)


def canonical_key(answer: str, policy: GradingPolicy) -> str:
    """A key that equal answers share (numbers by exact value), for grouping maj@k votes cheaply."""
    text = normalize(answer, policy)
    value = latex_eval.value_of(text)
    if isinstance(value, Fraction):
        return f"#{value}"
    return text
