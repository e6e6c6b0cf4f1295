"""Decides whether a predicted and a gold answer are equivalent. A fast path settles most pairs
without symbolic work (normalised string equality, exact numbers, LaTeX arithmetic evaluated at
sample points, structure: tuples, intervals, sets, lists, matrices, equations, choices); only what
it cannot decide goes to math-verify in a worker process under a hard time limit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from mathforge.evaluator import latex_eval
from mathforge.evaluator.normalize import normalize, unit_of
from mathforge.evaluator.policy import GradingPolicy
from mathforge.evaluator.structure import Answer, is_simple_name, parse_answer
from mathforge.evaluator.symbolic import symbolic_equal

_CHOICE = re.compile(r"^\(?([A-E](?:[,\s]*[A-E])*)\)?$")
_BASE = re.compile(r"^([0-9A-Za-z]+)_\{?(\d+)\}?$")
_WORDS = re.compile(r"^[A-Za-z\u4e00-\u9fff ,.'-]+$")
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
    digits, plain = (p[0], gold) if p is not None else (g[0], pred)  # type: ignore[index]
    return Decision(digits == plain.upper(), "string") if re.fullmatch(r"[0-9A-Za-z]+", plain) else None


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
        return _compare_items(pred, gold, policy, ordered=";" in gold.text)
    if pred.kind == "matrix":
        return _compare_items(pred, gold, policy, ordered=True)
    # both equations: "x = 3" vs "x = 2" is settled by the right sides; otherwise the same sides,
    # else math-verify (it compares equations, e.g. "2x + y = 1" vs "y = 1 - 2x")
    lhs_rhs = _compare_items(pred, gold, policy, ordered=True)
    if lhs_rhs.equal or (pred.items[0].text == gold.items[0].text and is_simple_name(gold.items[0].text)):
        return lhs_rhs
    return _leaf_equal(pred.text, gold.text, policy)


def _choice_letters(text: str) -> str | None:
    match = _CHOICE.match(text)
    return "".join(sorted(set(re.sub(r"[^A-E]", "", match.group(1))))) if match else None


def answers_equivalent(pred_answer: str, gold_answer: str, policy: GradingPolicy) -> Decision:
    """Equivalence of two extracted answers under `policy` (may call the symbolic pool)."""
    pred, gold = normalize(pred_answer, policy), normalize(gold_answer, policy)
    if not pred:
        return Decision(False, "no_answer")
    if pred == gold:
        return Decision(True, "string")
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
