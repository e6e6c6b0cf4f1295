"""Cleans an extracted answer into a canonical LaTeX-ish string: full-width characters, '$',
\\left/\\right, spacing commands, \\text{} wrappers, \\dfrac, degrees, units and Chinese measure
words (policy), thousands separators, trailing punctuation. Two answers equal after this are
equivalent without any symbolic work (the grader's fast path)."""

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
    if policy.units == "strip":
        s = _TEXT_UNIT_TAIL.sub(r"\1", s.strip())
    s = s.replace("\\{", "\x01").replace("\\}", "\x02")  # protect set braces from brace stripping
    s = _unwrap_text(s)
    s = s.replace("{,}", "").replace("\\%", "%").replace("\\$", "")
    s = re.sub(r"\s+(?:and|or)\s+|[，、]|(?<=[\d}])\s*[和或]\s*", ",", s)
    s = s.replace("\\le ", "\\leq ").replace("\\ge ", "\\geq ")
    s = s.replace("∞", "\\infty")
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
