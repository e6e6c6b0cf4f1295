"""Named grading options with documented defaults (the proto's GradingPolicy, as a frozen dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

PERCENT_MODES = ("strip", "fraction", "strict")
UNIT_MODES = ("strip", "keep")
TUPLE_MODES = ("ordered", "unordered")
BOX_MODES = ("auto", "last", "first", "all")
DECIMAL_COMMA_MODES = ("auto", "never")
ROUNDED_MODES = ("match", "exact")
FORMATS = ("auto", "boxed", "gsm8k", "choice", "program")


@dataclass(frozen=True)
class GradingPolicy:
    """How answers are extracted and compared. Hashable, so verdicts can be cached per policy.

    percent: "strip" (50% == 50), "fraction" (50% == 50 and 50% == 0.5), "strict" (50% != 50).
    units: "strip" drops trailing unit words, degrees and Chinese measure words; "keep" compares them.
    tuples: "ordered" (default) or "unordered" for parenthesised tuples; sets are always unordered.
    box: which \\boxed{} counts when there are several: "auto" (default: the distinct boxes, joined as
        one list answer when they differ, as math-verify reads them, so boxing two guesses is not
        rewarded when one is wanted; a value boxed again counts once), "last", "first", or "all"
        (every box joined as a list, repeats included).
    decimal_comma: "auto" (default) reads "2,5" as 2.5 when it is one number against one number
        (a single comma, not followed by exactly three digits: "12,500" stays 12500); "never".
    rounded_decimals: "match" (default): a decimal of at least 4 significant digits equals an exact
        value that it rounds or truncates ("0.3333" == 1/3, "0.33" != 1/3); "exact": rel_tol only.
    last_number_fallback: use the last number of the text when no answer pattern matches.
    rel_tol: relative tolerance for numbers that are not both exact.
    timeout_s: hard limit on the symbolic comparison of one pair, seconds.
    format: "auto", or force one extractor: "boxed", "gsm8k", "choice", "program".
    """

    percent: str = "strip"
    units: str = "strip"
    tuples: str = "ordered"
    box: str = "auto"
    decimal_comma: str = "auto"
    rounded_decimals: str = "match"
    last_number_fallback: bool = True
    rel_tol: float = 1e-6
    timeout_s: float = 2.0
    format: str = "auto"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("percent", PERCENT_MODES),
            ("units", UNIT_MODES),
            ("tuples", TUPLE_MODES),
            ("box", BOX_MODES),
            ("decimal_comma", DECIMAL_COMMA_MODES),
            ("rounded_decimals", ROUNDED_MODES),
            ("format", FORMATS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"grading policy {name}={value!r} is not one of {', '.join(allowed)}")
        if not 0 <= self.rel_tol < 1:
            raise ValueError(f"grading policy rel_tol={self.rel_tol} is outside [0, 1)")
        if not 0 < self.timeout_s <= 60:
            raise ValueError(f"grading policy timeout_s={self.timeout_s} is outside (0, 60]")

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> GradingPolicy:
        """Builds a policy from a JSON-like mapping; empty values mean the defaults. ValueError if bad."""
        if not values:
            return DEFAULT_POLICY
        known = {f.name for f in fields(cls)}
        if not isinstance(values, dict):
            # e.g. "policy": "percent": a string's characters would be reported as unknown fields
            raise ValueError(
                f'grading policy must be an object of fields, e.g. {{"percent": "fraction"}}, '
                f"not {type(values).__name__} {values!r}; fields: {', '.join(sorted(known))}"
            )
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown grading policy fields {unknown}; known: {sorted(known)}")
        kwargs = {
            k: v
            for k, v in values.items()
            if v is not None and (k == "last_number_fallback" or v not in ("", 0, 0.0))
        }
        return replace(DEFAULT_POLICY, **kwargs)


DEFAULT_POLICY = GradingPolicy()
