"""Cleans an extracted answer into a canonical LaTeX-ish string: full-width characters, '$',
\\left/\\right, spacing commands, \\text{} wrappers, \\dfrac, degrees, units and Chinese measure
words (policy), thousands separators, trailing punctuation, "percent" as a word, relation symbols
(`>=`, `≥`, `\\ge`, `\\geqslant` all become `\\geq`), and plain-text / programming notation (`**`,
`exp(2)`, `sqrt(2)`, `pi`, `I` for the imaginary unit). Two answers equal after this are equivalent
without any symbolic work (the grader's fast path)."""

from __future__ import annotations

import re
import unicodedata

from mathforge.evaluator.policy import GradingPolicy

_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad\b|~|\\(?:displaystyle|textstyle|scriptstyle)\b")
_SIZING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?:l|r)?\b\s*")
_TEXT_WRAPPERS = re.compile(
    r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname|rm)\s*\{([^{}]*)\}"
)
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b|\\circ\b")
_TEXT_CONJUNCTION = re.compile(r"\s*,?\s*\\(?:text|mbox|mathrm)\{\s*(?:and|or)\s*\}\s*")
# A number (or a closing brace) followed by a trailing \text{...} of words: "65 \text{ children tickets }".
_TEXT_UNIT_TAIL = re.compile(
    r"^(.*?[\d}A-Za-z])\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z\s.]*\}(?:\^\{?[23]\}?)?$"
)
_MIXED = re.compile(r"^(-?)(\d+)\s+(\d+)\s*/\s*(\d+)$")
_SCIENTIFIC = re.compile(r"^([-+]?\d+(?:\.\d+)?)[eE]([-+]?\d+)$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
# Unit words a MATH / GSM8K answer may carry after its number.
_UNIT_WORDS = (
    "units?|square|sq|cubic|cm|centimeters?|m|meters?|km|kilometers?|mm|inch(?:es)?|in|feet|foot|ft|yards?|yd|"
    "miles?|mi|mph|hours?|hrs?|h|minutes?|mins?|seconds?|secs?|s|days?|weeks?|months?|years?|dollars?|cents?|"
    "degrees?|deg|radians?|rad|pounds?|lbs?|ounces?|oz|grams?|g|kg|kilograms?|liters?|l|ml|gallons?|"
    "people|students?|apples?|eggs?|points?|ways?|times|percent|pages?|books?|cookies?|marbles?"
)
UNIT_WORD = re.compile(rf"(?:{_UNIT_WORDS})", re.IGNORECASE)
_TRAILING_UNIT = re.compile(
    # \b after each word: "secs" must not also split as "sec" + "s" (exponential backtracking)
    rf"^(.*?[\d}}])\s*(?:(?:{_UNIT_WORDS})\b(?:\^\{{?[23]\}}?|\^[23]|²|³)?\.?\s*)+$",
    re.IGNORECASE,
)
# "50 percent", "50 per cent", "50 \\text{ percent}": the word is the sign, so the percent policy applies
_PERCENT_WORD = re.compile(
    r"(?<=[\d}])\s*(?:\\(?:text|mbox|mathrm)\s*\{\s*)?(?:percent|per\s*cent|pct)\.?\s*\}?\s*$", re.I
)
_RELATIONS = (
    (re.compile(r"\\(?:leqslant|leq|le)(?![a-zA-Z])|<=|≤|⩽"), "\\leq "),
    (re.compile(r"\\(?:geqslant|geq|ge)(?![a-zA-Z])|>=|≥|⩾"), "\\geq "),
    (re.compile(r"\\(?:neq|ne)(?![a-zA-Z])|!=|≠"), "\\neq "),
)
# A function name of plain-text notation, written before its parenthesised argument: "sqrt(2)".
_PLAIN_CALL = re.compile(r"(?<![\\A-Za-z])(sqrt|exp|sin|cos|tan|cot|sec|csc|ln|log)\s*\(")
_PLAIN_PI = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")
_IMAGINARY_I = re.compile(r"(?<![\\A-Za-z])I(?![A-Za-z])")
# 3:00, 15:00:00, 3:00 PM, 3:00 p.m.
CLOCK_TIME = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?(?:\s*([AaPp])\.?\s*[Mm]\.?)?")
_CJK_TAIL = re.compile(r"^(.*?[\d}%])\s*[\u4e00-\u9fff][\u4e00-\u9fff（）()/／]*$")
_CJK_HEAD = re.compile(r"^[\u4e00-\u9fff：:，,]*?(?=[-+\d\\(\[{.])")


def _unwrap_text(s: str) -> str:
    for _ in range(4):
        unwrapped = _TEXT_WRAPPERS.sub(r"\1", s)
        if unwrapped == s:
            break
        s = unwrapped
    return s


def _collapse_spaces(s: str) -> str:
    """Drops spaces except between two letters ("\\pi r", "north east" keep one)."""
    s = re.sub(r"\s+", " ", s).strip()
    return re.sub(r"(?<![A-Za-z]) | (?![A-Za-z])", "", s)


def _fix_fracs(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{x} -> \\frac{1}{x}, \\sqrt2 -> \\sqrt{2}."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*(?=\{)", r"\\frac{\1}", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", s)
    s = re.sub(r"\\frac\s*([a-zA-Z])\s*([a-zA-Z0-9])", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\sqrt\s*(\d+|[a-zA-Z])(?![\d])", r"\\sqrt{\1}", s)


def _closing_paren(s: str, open_index: int) -> int:
    depth = 0
    for i in range(open_index, len(s)):
        depth += s[i] == "("
        depth -= s[i] == ")"
        if depth == 0:
            return i
    return -1


def plain_text_math(s: str) -> str:
    """Programming / plain-text notation as LaTeX: `2**10` -> `2^10`, `exp(2)` -> `e^{2}`,
    `sqrt(3)/2` -> `\\sqrt{3}/2`, `sin(x)` -> `\\sin(x)`, `pi/3` -> `\\pi/3`, and `I` -> `i` where it
    stands alone in an expression with no other capital letter (sympy's and Mathematica's unit)."""
    if "**" in s:
        s = s.replace("**", "^")
    for _ in range(8):  # nested calls, outermost first; bounded so it stays linear
        match = _PLAIN_CALL.search(s)
        if not match:
            break
        end = _closing_paren(s, match.end() - 1)
        if end < 0:
            break
        name, inner = match.group(1), s[match.end() : end]
        if name == "sqrt":
            replacement = f"\\sqrt{{{inner}}}"
        elif name == "exp":
            replacement = f"e^{{{inner}}}"
        else:
            replacement = f"\\{name}({inner})"
        s = s[: match.start()] + replacement + s[end + 1 :]
    s = _PLAIN_PI.sub(r"\\pi ", s)
    if (
        _IMAGINARY_I.search(s)
        and not re.search(r"[A-HJ-Z]", re.sub(r"\\[A-Za-z]+", "", s))
        and re.search(r"[\d+\-*]", s)
    ):
        s = _IMAGINARY_I.sub("i", s)
    return s


def clock_seconds(answer: str) -> int | None:
    """Seconds after midnight of a clock time ("3:00 PM", "15:00", "10:30:00", "3:00 p.m."), else None.
    Without A.M./P.M. the time is read on a 24-hour clock."""
    text = _unwrap_text(answer).replace("$", "").strip().rstrip(".").strip()
    match = CLOCK_TIME.fullmatch(text) or CLOCK_TIME.fullmatch(text + ".")
    if not match:
        return None
    hours, minutes, seconds = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    half = (match.group(4) or "").lower()
    if half:
        if not 1 <= hours <= 12:
            return None
        hours = hours % 12 + (12 if half == "p" else 0)
    elif hours > 24:
        return None
    return (hours % 24) * 3600 + minutes * 60 + seconds


def normalize(answer: str, policy: GradingPolicy) -> str:
    """The canonical form of one extracted answer (see the module docstring). Never raises."""
    s = unicodedata.normalize("NFKC", answer)
    s = s.replace("\u2212", "-").replace("−", "-")
    s = (
        s.replace("\\$", "")
        .replace("$", "")
        .replace("\\(", "")
        .replace("\\)", "")
        .replace("\\[", "")
        .replace("\\]", "")
    )
    s = re.sub(r"\\(?:d|t)frac", r"\\frac", s)
    s = re.sub(r"\\(?:d|t)binom", r"\\binom", s)
    s = _SIZING.sub("", s)
    s = _MIXED.sub(r"\1\2\\frac{\3}{\4}", s.strip())
    s = _SCIENTIFIC.sub(r"\1*10^{\2}", s)
    s = _SPACING.sub(" ", s)
    s = _TEXT_CONJUNCTION.sub(",", s)
    s = _PERCENT_WORD.sub("%", s.strip())
    if policy.units == "strip":
        s = _TEXT_UNIT_TAIL.sub(r"\1", s.strip())
    s = s.replace("\\{", "\x01").replace("\\}", "\x02")  # protect set braces from brace stripping
    s = _unwrap_text(s)
    s = plain_text_math(s)
    s = s.replace("{,}", "").replace("\\%", "%").replace("\\$", "")
    s = re.sub(r"\s+(?:and|or)\s+|[，、]|(?<=[\d}])\s*[和或]\s*", ",", s)
    for pattern, canonical in _RELATIONS:
        s = pattern.sub(canonical.replace("\\", "\\\\"), s)  # a template: its backslashes doubled
    s = s.replace("∞", "\\infty").replace("\\varnothing", "\\emptyset").replace("∅", "\\emptyset")
    if policy.units == "strip":
        s = _DEGREES.sub("", s)
        s = (
            re.sub(r"\^\{?\\prime\}?|\\prime|'", "", s)
            if re.fullmatch(r"[\d.\s]+(?:\^\{?\\prime\}?|')", s)
            else s
        )
    s = _collapse_spaces(s)
    s = s.rstrip(".。").strip()
    if policy.units == "strip":
        s = _CJK_HEAD.sub("", s)
        match = _CJK_TAIL.match(s) or _TRAILING_UNIT.match(s)
        if match and match.group(1):
            s = match.group(1).strip()
    if policy.percent != "strict" and s.endswith("%") and policy.percent == "strip":
        s = s[:-1]
    s = _fix_fracs(s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = s.replace("\x01", "\\{").replace("\x02", "\\}")
    return _strip_outer_braces(s)


def _strip_outer_braces(s: str) -> str:
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}":
        depth = 0
        for i, ch in enumerate(s):
            depth += ch == "{"
            depth -= ch == "}"
            if depth == 0 and i < len(s) - 1:
                return s
        s = s[1:-1].strip()
    return s


def unit_of(answer: str) -> str:
    """The trailing unit words of a normalised answer ("5cm" -> "cm"), "" when there are none."""
    match = _TRAILING_UNIT.match(answer) or _CJK_TAIL.match(answer)
    return answer[len(match.group(1)) :].strip().casefold() if match and match.group(1) else ""
