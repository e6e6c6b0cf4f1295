"""Generates labelled answer pairs for validating graders: equivalent re-renderings of a gold
answer (\\dfrac, spacing, decimals, math mode, \\left/\\right, a full sentence with a box) and
perturbations that change its value (the first digit, the sign, the order of a tuple, an interval's
brackets). Used by the MATH self-equivalence test and bench/bench_evaluator.py.

    for text, label in labelled_variants("\\frac{1}{2}"): ...   # ("0.5", True), ("\\frac{1}{3}", False)...
"""

from __future__ import annotations

import re
from fractions import Fraction

_SIMPLE_FRACTION = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")


def _terminating_decimal(value: Fraction) -> str | None:
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1 or value.denominator > 10**6:
        return None
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text if Fraction(text) == value else None


def _decimal_form(answer: str) -> str | None:
    match = _SIMPLE_FRACTION.match(answer.strip())
    if match and int(match.group(3)) != 0:
        value = Fraction(int(match.group(2)), int(match.group(3))) * (-1 if match.group(1) else 1)
        return _terminating_decimal(value)
    if re.fullmatch(r"-?\d+", answer.strip()):
        return answer.strip() + ".0"
    return None


def rerender(answer: str) -> str:
    """One equivalent rendering that differs in form: decimal for a simple fraction, else \\dfrac,
    spacing and $...$ (what a model might write for the same value)."""
    decimal = _decimal_form(answer)
    if decimal is not None and not answer.strip().lstrip("-").isdigit():
        return decimal
    text = answer.replace("\\dfrac", "\\frac").replace("\\frac", "\\dfrac")
    text = re.sub(r"\s*,\s*", ", ", text)
    text = re.sub(r"(?<=[\w}])\s*([+=])\s*(?=[\w\\{(])", r" \1 ", text)
    if text.startswith("(") and text.endswith(")") and "\\left" not in text:
        text = "\\left(" + text[1:-1] + "\\right)"
    return f"${text}$"


def equivalent_variants(answer: str) -> list[str]:
    """Several renderings of the same answer."""
    variants = [
        rerender(answer),
        f"The final answer is $\\boxed{{{answer}}}$.",
        re.sub(r"(?<!\\)\s+", "", answer),
    ]
    decimal = _decimal_form(answer)
    if decimal is not None:
        variants.append(decimal)
    short = re.sub(r"\\frac\{(\d)\}\{(\d)\}", r"\\frac\1\2", answer)
    if short != answer:
        variants.append(short)
    return list(dict.fromkeys(v for v in variants if v != answer))


def perturbed_variants(answer: str) -> list[str]:
    """Answers that differ in value from `answer` (best effort: each rule changes a visible value)."""
    out: list[str] = []
    digits = list(re.finditer(r"\d", answer))
    if digits:
        first = digits[0]
        bumped = str((int(first.group(0)) + 1) % 10) if first.group(0) != "0" else "7"
        out.append(answer[: first.start()] + bumped + answer[first.end() :])
    stripped = answer.strip()
    if stripped.startswith("-"):
        out.append(stripped[1:])
    elif (
        stripped
        and stripped != "0"
        and "\\text" not in stripped
        and "\\mbox" not in stripped
        and not re.match(r"^[(\[\\{]", stripped)
        and "," not in stripped
        and "=" not in stripped
    ):
        out.append(
            f"-{stripped}" if re.fullmatch(r"[\d.]+|\\frac\{\d+\}\{\d+\}", stripped) else f"-({stripped})"
        )
    tuple_match = re.fullmatch(r"\((-?\d+),\s*(-?\d+)\)", stripped)
    if tuple_match and tuple_match.group(1) != tuple_match.group(2):
        out.append(f"({tuple_match.group(2)}, {tuple_match.group(1)})")
    if re.fullmatch(r"\[.*\]", stripped) and "," in stripped:
        out.append("(" + stripped[1:-1] + ")")
    return list(
        dict.fromkeys(v for v in out if v != answer and v.replace(" ", "") != answer.replace(" ", ""))
    )


def labelled_variants(answer: str) -> list[tuple[str, bool]]:
    """(variant, equivalent?) pairs for one gold answer."""
    return [(v, True) for v in equivalent_variants(answer)] + [(v, False) for v in perturbed_variants(answer)]
