"""Evaluates LaTeX arithmetic for the grader's fast path: numbers, + - * / ^, \\frac, \\sqrt, \\pi,
implicit products and single-letter variables. Constants come out exact (Fraction) where they can;
expressions with variables are evaluated at fixed random points, so two expressions that agree at
every point are treated as equal and two that differ anywhere are not. Anything outside this small
grammar returns None and goes to the symbolic check.

    value_of("2\\frac{1}{2}") == Fraction(5, 2)      # a digit before \\frac is a mixed number
"""

from __future__ import annotations

import cmath
import math
import re
from collections.abc import Callable
from fractions import Fraction

Number = Fraction | complex

# Points at which variables are sampled: irrational-looking, away from 0 and 1, one with a sign.
_POINTS = (
    (0.5377, 1.8339, -2.2588, 0.8622),
    (1.3188, -1.3077, 0.3426, 3.5784),
    (2.7694, 0.7254, -0.0631, 1.7139),
)
_MAX_EXPONENT = 4096
_MAX_DIGITS = 4000
_MAX_FACTORIAL = 3000

_PRODUCT_COMMANDS = ("\\cdot", "\\times", "\\div")
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+)|(?P<var>[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?)"
    r"|(?P<op>[-+*/^(){}!]))"
)


class Unsupported(Exception):
    """The text is outside the fast evaluator's grammar."""


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise Unsupported(text[pos : pos + 10])
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


Expr = Callable[[dict[str, float]], Number]


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.pos = 0
        self.variables: set[str] = set()

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if value is not None and token[1] != value:
            raise Unsupported(f"expected {value}")
        if token[0] == "end":
            raise Unsupported("unexpected end")
        self.pos += 1
        return token

    def parse(self) -> Expr:
        expr = self.sum()
        if self.peek()[0] != "end":
            raise Unsupported(f"trailing {self.peek()[1]}")
        return expr

    def sum(self) -> Expr:
        terms: list[tuple[int, Expr]] = []
        sign = 1
        while self.peek()[1] in "+-" and self.peek()[0] == "op":
            sign = -sign if self.take()[1] == "-" else sign
        terms.append((sign, self.product()))
        while self.peek()[0] == "op" and self.peek()[1] in ("+", "-"):
            sign = 1
            while self.peek()[0] == "op" and self.peek()[1] in ("+", "-"):
                sign = -sign if self.take()[1] == "-" else sign
            terms.append((sign, self.product()))
        if len(terms) == 1 and terms[0][0] == 1:
            return terms[0][1]
        return lambda env: _sum(env, terms)

    def product(self) -> Expr:
        factors: list[tuple[bool, Expr]] = [(False, self.power())]
        while True:
            kind, value = self.peek()
            if (kind == "op" and value in ("*", "/")) or (kind == "cmd" and value in _PRODUCT_COMMANDS):
                self.take()
                factors.append((value in ("/", "\\div"), self.power()))
            elif kind in ("num", "cmd", "var") or (kind == "op" and value in ("(", "{")):
                factors.append((False, self.power()))  # implicit product: 2x, 2\sqrt{3}, (a)(b)
            else:
                break
        if len(factors) == 1:
            return factors[0][1]
        return lambda env: _product(env, factors)

    def power(self) -> Expr:
        base = self.atom()
        while self.peek() == ("op", "!"):
            self.take()
            base = _factorial_of(base)
        if self.peek() == ("op", "^"):
            self.take()
            exponent = self.atom() if self.peek()[1] != "-" else self._negated_atom()
            return lambda env: _power(base(env), exponent(env))
        return base

    def _negated_atom(self) -> Expr:
        self.take("-")
        inner = self.atom()
        return lambda env: -inner(env)

    def group(self, close: str) -> Expr:
        inner = self.sum()
        self.take(close)
        return inner

    def atom(self) -> Expr:
        kind, value = self.take()
        if kind == "num":
            number = Fraction(value)
            if self.peek() == ("cmd", "\\frac") and value.isdigit():
                return self._mixed_number(number)
            return lambda env: number
        if kind == "var":
            name = re.sub(r"[{}]", "", value)
            self.variables.add(name)
            return lambda env: env[name]
        if kind == "op" and value == "(":
            return self.group(")")
        if kind == "op" and value == "{":
            return self.group("}")
        if kind == "cmd":
            return self.command(value)
        raise Unsupported(value)

    def _mixed_number(self, whole: Fraction) -> Expr:
        start = self.pos
        self.take()
        numerator, denominator = self._digits_argument(), self._digits_argument()
        if numerator is None or denominator is None or denominator == 0:
            self.pos = start
            return lambda env: whole
        value = whole + Fraction(numerator, denominator)
        return lambda env: value

    def _digits_argument(self) -> int | None:
        if (
            self.peek() == ("op", "{")
            and self.pos + 2 < len(self.tokens)
            and self.tokens[self.pos + 1][0] == "num"
            and self.tokens[self.pos + 2] == ("op", "}")
            and self.tokens[self.pos + 1][1].isdigit()
        ):
            self.pos += 3
            return int(self.tokens[self.pos - 2][1])
        return None

    def command(self, name: str) -> Expr:
        if name == "\\frac":
            numerator, denominator = self.atom(), self.atom()
            return lambda env: _divide(numerator(env), denominator(env))
        if name == "\\sqrt":
            radicand = self.atom()  # \sqrt[n]{x} is not tokenised ("[" is outside the grammar)
            return lambda env: _root(radicand(env))
        if name in ("\\cdot", "\\times", "\\div"):
            raise Unsupported(name)  # only reached at the start of a term: "\\cdot 2" is malformed
        if name == "\\pi":
            return lambda env: complex(cmath.pi)
        raise Unsupported(name)


def _factorial_of(inner: Expr) -> Expr:
    def value(env: dict[str, float]) -> Number:
        n = inner(env)
        if not isinstance(n, Fraction) or n.denominator != 1 or not 0 <= n <= _MAX_FACTORIAL:
            raise Unsupported("factorial of a non-integer or a huge integer")
        return Fraction(math.factorial(int(n)))

    return value


def _sum(env: dict[str, float], terms: list[tuple[int, Expr]]) -> Number:
    total: Number = Fraction(0)
    for sign, term in terms:
        value = term(env)
        total = total + value if sign > 0 else total - value
    return total


def _product(env: dict[str, float], factors: list[tuple[bool, Expr]]) -> Number:
    total: Number = Fraction(1)
    for divide, factor in factors:
        value = factor(env)
        total = _divide(total, value) if divide else total * value
    return total


def _divide(a: Number, b: Number) -> Number:
    if b == 0:
        raise Unsupported("division by zero")
    return a / b


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1 and isinstance(base, Fraction):
        if abs(exponent) > _MAX_EXPONENT or (
            base != 0 and abs(exponent) * len(str(abs(base.numerator))) > _MAX_DIGITS
        ):
            raise Unsupported("exponent too large")
        if base == 0 and exponent < 0:
            raise Unsupported("division by zero")
        return base ** int(exponent)
    if (
        isinstance(exponent, Fraction)
        and exponent.denominator == 2
        and isinstance(base, Fraction)
        and base >= 0
    ):
        return _power(_root(base), Fraction(exponent.numerator))
    try:
        result = complex(base) ** complex(exponent)
    except (OverflowError, ZeroDivisionError):
        raise Unsupported("power overflow") from None
    if abs(result) > 1e300:
        raise Unsupported("power overflow")
    return result


def _exact_sqrt(value: int) -> int | None:
    root = math.isqrt(value)
    return root if root * root == value else None


def _root(value: Number) -> Number:
    """The square root, exact for the square of a fraction."""
    if isinstance(value, Fraction) and value >= 0:
        num, den = _exact_sqrt(value.numerator), _exact_sqrt(value.denominator)
        if num is not None and den is not None:
            return Fraction(num, den)
    return cmath.sqrt(complex(value))


def compile_expression(text: str) -> tuple[Expr, set[str]] | None:
    """The evaluator for `text` and its variable names, or None when outside the grammar."""
    try:
        parser = _Parser(tokenize(text))
        return parser.parse(), parser.variables
    except (Unsupported, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def value_of(text: str) -> Number | None:
    """The exact or float value of a constant expression, or None (variables, unsupported, error)."""
    compiled = compile_expression(text)
    if compiled is None or compiled[1]:
        return None
    return _evaluate(compiled[0], {})


def _evaluate(expr: Expr, env: dict[str, float]) -> Number | None:
    try:
        return expr(env)
    except (Unsupported, ValueError, ZeroDivisionError, OverflowError, TypeError, RecursionError):
        return None


def numbers_close(a: Number, b: Number, rel_tol: float) -> bool:
    """Exact equality for two Fractions, else |a - b| <= tol * max(1, |a|, |b|)."""
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    tol = max(rel_tol, 1e-9)
    diff = abs(complex(a) - complex(b))
    return diff <= tol * max(1.0, abs(complex(a)), abs(complex(b)))


def compare_expressions(a: str, b: str, rel_tol: float) -> bool | None:
    """True/False when both sides evaluate (at every sample point for variables), None otherwise."""
    left, right = compile_expression(a), compile_expression(b)
    if left is None or right is None:
        return None
    if left[1] != right[1]:
        return None  # "e^{i\\pi}" vs "-1": a letter may be a constant; let the symbolic check decide
    names = sorted(left[1] | right[1])
    if len(names) > len(_POINTS[0]):
        return None
    if not names:
        x, y = _evaluate(left[0], {}), _evaluate(right[0], {})
        return None if x is None or y is None else numbers_close(x, y, rel_tol)
    for point in _POINTS:
        env = dict(zip(names, point, strict=False))
        x, y = _evaluate(left[0], env), _evaluate(right[0], env)
        if x is None or y is None:
            return None
        if not numbers_close(x, y, 1e-9):
            return False
    return True
