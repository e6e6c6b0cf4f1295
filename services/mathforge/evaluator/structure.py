"""Splits a normalised answer into its structure: a tuple or interval with its brackets, a set, a
list of answers, a union of intervals, a matrix, an equation, a relation (one of <, >, \\leq, \\geq,
\\neq, turned so that "5 \\geq x" and "x \\leq 5" read alike), or a single expression (a leaf)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_MATRIX = re.compile(r"^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.S)


@dataclass(frozen=True)
class Answer:
    """kind: "leaf", "tuple" (open/close brackets), "set", "list", "union", "matrix", "equation",
    "relation" (open: the operator, "<", "\\leq" or "\\neq"; items: the smaller side first)."""

    kind: str
    text: str
    items: tuple[Answer, ...] = ()
    open: str = ""
    close: str = ""


def split_top_level(s: str, separator: str) -> list[str]:
    """Splits at `separator` outside any (), [], {} or \\{ \\} nesting."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(s):
        if s.startswith("\\{", i):
            depth += 1
            i += 2
            continue
        if s.startswith("\\}", i):
            depth -= 1
            i += 2
            continue
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(separator, i):
            parts.append(s[start:i])
            start = i + len(separator)
            i = start
            continue
        i += 1
    parts.append(s[start:])
    return parts


def _balanced(inner: str) -> bool:
    depth = 0
    for ch in inner:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return False
    return depth == 0


def parse_answer(s: str, depth: int = 0) -> Answer:
    """The structure of a normalised answer (see Answer). Nesting is limited to keep it linear."""
    s = s.strip()
    if depth > 8 or not s:
        return Answer("leaf", s)
    matrix = _MATRIX.match(s)
    if matrix and "\\begin{" not in matrix.group(2):  # "A + B" of two matrices is an expression
        rows = [r for r in re.split(r"\\\\", matrix.group(2)) if r.strip()]
        return Answer(
            "matrix",
            s,
            tuple(
                Answer("tuple", row, tuple(parse_answer(c, depth + 1) for c in row.split("&")))
                for row in rows
            ),
        )
    for separator, kind in ((";", "list"), ("\\cup", "union")):
        parts = split_top_level(s, separator)
        if len(parts) > 1 and all(p.strip() for p in parts):
            return Answer(kind, s, tuple(parse_answer(p, depth + 1) for p in parts))
    if s.startswith("\\{") and s.endswith("\\}") and _balanced(s[2:-2]):
        inner = s[2:-2]
        if "\\mid" in inner or "|" in inner or ":" in inner:
            return Answer("leaf", s)
        return Answer(
            "set", s, tuple(parse_answer(p, depth + 1) for p in split_top_level(inner, ",") if p.strip())
        )
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _balanced(s[1:-1]):
        parts = split_top_level(s[1:-1], ",")
        if len(parts) > 1:
            return Answer("tuple", s, tuple(parse_answer(p, depth + 1) for p in parts), s[0], s[-1])
    parts = split_top_level(s, ",")
    if len(parts) > 1 and all(p.strip() for p in parts):
        return Answer("list", s, tuple(parse_answer(p, depth + 1) for p in parts))
    relation = _relation(s, depth)
    if relation is not None:
        return relation
    sides = split_top_level(s, "=")
    if len(sides) == 2 and all(sides) and not re.search(r"[<>!\\]$", sides[0]):
        return Answer("equation", s, (Answer("leaf", sides[0].strip()), parse_answer(sides[1], depth + 1)))
    return Answer("leaf", s)


# Each operator and, for ">" and "\geq", the operator it becomes once the sides swap.
_RELATION_OPERATORS = (("\\leq", "\\leq"), ("\\geq", "\\leq"), ("\\neq", "\\neq"), ("<", "<"), (">", "<"))


def _relation(s: str, depth: int) -> Answer | None:
    """A single relation "a op b" at top level, or None (no operator, or a chain "1 < x < 3")."""
    found = [
        (op, canonical, parts)
        for op, canonical in _RELATION_OPERATORS
        if op in s and len(parts := split_top_level(s, op)) > 1
    ]
    if len(found) != 1 or len(found[0][2]) != 2:
        return None
    op, canonical, (lhs, rhs) = found[0]
    if not lhs.strip() or not rhs.strip():
        return None
    sides = (parse_answer(lhs, depth + 1), parse_answer(rhs, depth + 1))
    if op != canonical:
        sides = sides[::-1]
    return Answer("relation", s, sides, canonical)


def is_simple_name(s: str) -> bool:
    """A left-hand side that only names the answer: x, y_1, k, f(x), \\theta, AB."""
    return bool(re.fullmatch(r"(?:\\[a-zA-Z]+|[a-zA-Z]{1,3})(?:_\{?[\w]+\}?)?(?:\([a-z,]*\))?", s.strip()))
