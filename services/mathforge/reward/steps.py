"""Splits a response into reasoning steps and finds each step's tokens, for the process reward model.

    steps = split_steps("a = 1\\nb = 2\\nso \\\\boxed{3}", "\\n")     # 3 steps, character spans
    spans = token_spans(steps, offsets)                           # the tokens of each step

A step is the text between two separators (default: a newline, so one line is one step). Pieces
that are only whitespace are not steps: a blank line does not get a reward. The separator itself
belongs to no step. A step's tokens are every token that overlaps its characters, so its last
token (where the PRM reads the step's score) has seen the whole step. The labelling job, training
and the service all split with these two functions, so a label and a served score refer to the same
tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SEPARATOR = "\n"


@dataclass(frozen=True)
class StepSpan:
    """One step: characters [char_start, char_end) of the response, tokens [token_start, token_end)."""

    char_start: int
    char_end: int
    token_start: int = 0
    token_end: int = 0


def split_steps(text: str, separator: str = DEFAULT_SEPARATOR) -> list[StepSpan]:
    """The steps of `text` as character spans, in order; whitespace-only pieces are skipped.

    The span excludes the leading and trailing whitespace of its piece, so "  x = 1 \\n" is the
    step "x = 1".
    """
    if not separator:
        raise ValueError("the step separator must not be empty")
    steps: list[StepSpan] = []
    start = 0
    while start <= len(text):
        found = text.find(separator, start)
        end = len(text) if found < 0 else found
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            steps.append(StepSpan(start + lead, start + lead + len(stripped)))
        if found < 0:
            break
        start = found + len(separator)
    return steps


def step_texts(text: str, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    """The text of each step of `text`."""
    return [text[s.char_start : s.char_end] for s in split_steps(text, separator)]


def step_prefixes(text: str, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    """For each step, the response up to and including that step (and its separator, when one
    follows): the prefix a Math-Shepherd completion continues from."""
    prefixes = []
    for step in split_steps(text, separator):
        end = step.char_end
        following = text.find(separator, end)
        if following >= 0 and not text[end:following].strip():
            end = following + len(separator)
        prefixes.append(text[:end])
    return prefixes


def token_spans(steps: Sequence[StepSpan], offsets: Sequence[tuple[int, int]]) -> list[StepSpan]:
    """Fills in each step's token range from the tokenizer's character offsets of the response.

    A token belongs to a step when their characters overlap; a step always gets at least one token
    (tokens never cover zero characters of a non-empty step unless the tokenizer drops it, which is
    an error here).
    """
    spans: list[StepSpan] = []
    first = 0
    for step in steps:
        while first < len(offsets) and offsets[first][1] <= step.char_start:
            first += 1
        last = first
        while last < len(offsets) and offsets[last][0] < step.char_end:
            last += 1
        if last == first:
            raise ValueError(f"no token covers characters {step.char_start}..{step.char_end} of the response")
        spans.append(StepSpan(step.char_start, step.char_end, first, last))
        # A token that straddles the boundary belongs to both steps: do not move past it.
        first = last - 1 if offsets[last - 1][1] > step.char_end else last
    return spans
