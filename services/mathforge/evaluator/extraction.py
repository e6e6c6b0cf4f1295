"""Finds the final answer in a model output: \\boxed{} / \\fbox{} (nested braces; several distinct
boxes form one list answer; a box left unclosed at the end still counts), Minerva's "Final Answer:
The final answer is ... I hope it is correct.", "The answer is ...", "Final Answer: ...",
"Answer: $x$", GSM8K's "#### n", Chinese "答案是 ...", multiple-choice letters, a program's printed
output, and (optionally) the last number of the text. Chat-template tokens a sampler left at the
end (<|im_end|>, <|eot_id|>, </s>, ...) are cut first. Pure string work: fast, and it never raises
on any input (a bug is logged and scores "no answer").
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from mathforge.evaluator.equivalence import canonical_key
from mathforge.evaluator.normalize import CLOCK_TIME, UNIT_WORD
from mathforge.evaluator.policy import DEFAULT_POLICY, GradingPolicy


@dataclass(frozen=True)
class Extraction:
    """The extracted answer ("" when none) and the rule that found it."""

    answer: str
    method: str


NONE = Extraction("", "none")
log = logging.getLogger(__name__)

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_FINAL_ANSWER_START = "final answer is"
_FINAL_ANSWER_END = "i hope it is correct"
_THE_ANSWER_IS = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*\**\s*:"
    # "Answer: 5" or "Answer $ 5 $" opening a line, followed by math, not by a sentence
    r"|(?:^|(?<=\n))[*# \t]{0,8}answer\s*\**\s*:?\**(?=\s*(?:\$|\\[(\[]|\\boxed|[-+(\[{\d]))"
    r"|答案[是为：:]|答[：:]|所以[，,]?\s*答案[是为])\s*\**\s*[:：]?\s*"
    r"(.+?)(?=\n\n|\n(?=[A-Z])|\Z|\.\s|。)",
    re.IGNORECASE | re.DOTALL,
)
# End-of-turn tokens of common chat templates (ChatML, Llama 3, Llama 2 / Mistral, GPT-2 family,
# DeepSeek's full-width bars, Gemma), left at the end of a sample when a sampler keeps them.
_TEMPLATE_TOKEN_AT_END = re.compile(r"(?:<\|[A-Za-z_]{1,30}\|>|</s>|<eos>|<end_of_turn>|<｜[^｜]{1,30}｜>)$")
# A math span ending the text: "... we obtain \\( -\\tfrac{7}{2} \\)." or "... which is $2\\sqrt{3}$!"
_CLOSING_MATH = re.compile(
    r"(?:\\\((.{1,150}?)\\\)|\\\[(.{1,150}?)\\\]|\$\$?([^$]{1,150})\$\$?)[\s.!。]*$", re.S
)
_GSM8K = re.compile(r"####\s*([^\n]+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_LETTERS_ONLY = re.compile(r"\(?([A-E](?:[\s,，、和]*[A-E])*)\)?")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_CHOICE_PATTERNS = (
    re.compile(
        r"(?:answer|choice|option)\s*(?:is|:)?\s*[:：]?\s*\(?\s*([A-E](?:\s*(?:[,，、和]|and)?\s*[A-E])*)\b\)?",
        re.I,
    ),
    re.compile(r"(?:选|答案[是为]?|故选|应选)\s*[:：]?\s*\(?([A-E](?:[\s,，、和]*[A-E])*)\)?"),
    re.compile(r"\(([A-E])\)"),
    re.compile(r"^\s*\(?([A-E])\)?\s*(?:[.:、)]|$)", re.M),
)


def find_boxes(text: str, unclosed: bool = False) -> list[str]:
    """Returns the contents of every \\boxed{...} / \\fbox{...} (and `\\boxed 5`), braces matched.
    With `unclosed`, a last box whose brace never closes (a sample cut off, or a model that forgot
    it) counts up to the end of the text, its open inner braces closed: "\\boxed{\\frac{2}{3}"."""
    found: list[str] = []
    pos = 0
    while True:
        starts = [(text.find(cmd, pos), cmd) for cmd in _BOX_COMMANDS]
        starts = [(i, cmd) for i, cmd in starts if i >= 0]
        if not starts:
            return found
        index, cmd = min(starts)
        cursor = index + len(cmd)
        while cursor < len(text) and text[cursor] == " ":
            cursor += 1
        if cursor < len(text) and text[cursor] == "{":
            content, end = _braced(text, cursor)
            if content is None:
                if unclosed:
                    rest = _unclosed_box(text[cursor + 1 :])
                    if rest:
                        found.append(rest)
                return found
            found.append(content.strip())
            pos = end
        elif cmd == "\\boxed" and cursor > index + len(cmd):
            # "\boxed 5": the argument is the next token, up to a space, '$' or end of line
            match = re.match(r"[^\s$]+", text[cursor:])
            if match:
                found.append(match.group(0).rstrip(".,"))
            pos = cursor + (match.end() if match else 0)
        else:
            pos = cursor
        if pos <= index:
            pos = index + 1


def _braced(text: str, open_index: int) -> tuple[str | None, int]:
    """The content of the brace group opening at `open_index` and the index after it."""
    depth = 0
    i = open_index
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : i], i + 1
        i += 1
    return None, len(text)


def _unclosed_box(rest: str) -> str:
    """The content of a box left open at the end: up to 200 characters, trailing $ and periods cut,
    inner braces that stay open closed."""
    rest = re.sub(r"(?:\s|\$|\\\]|\\\)|\.)+$", "", rest)
    if len(rest) > 200 or "\n\n" in rest:
        return ""
    depth = 0
    i = 0
    while i < len(rest):
        if rest[i] == "\\":
            i += 2
            continue
        depth += rest[i] == "{"
        depth -= rest[i] == "}"
        if depth < 0:
            return ""
        i += 1
    return (rest + "}" * depth).strip()


def strip_template_tail(text: str) -> str:
    """The text without the chat-template end tokens at its end (`... \\boxed{9}<|im_end|>`).
    Looks at the last 64 characters per token, so a long text costs nothing."""
    for _ in range(8):
        trimmed = text.rstrip()
        tail = trimmed[-64:]
        match = _TEMPLATE_TOKEN_AT_END.search(tail)
        if not match:
            return text
        text = trimmed[: len(trimmed) - len(tail) + match.start()]
    return text


def _clean_tail(answer: str) -> str:
    answer = answer.strip().rstrip(".。").strip()
    if len(answer) > 1 and answer[0] == "$" and answer[-1] == "$":
        answer = re.sub(r"(?<!\\)\$", "", answer)  # "$5$;$10$": every blank in its own math span
    answer = re.sub(r"^\$+|(?<!\\)\$+$", "", answer).strip()
    answer = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", answer).strip()
    return answer.rstrip(".。").strip()


def _from_boxes(text: str, policy: GradingPolicy) -> Extraction | None:
    boxes = [b for b in find_boxes(text, unclosed=True) if b]
    if not boxes:
        return None
    if policy.box == "first":
        return Extraction(boxes[0], "boxed")
    if policy.box == "all" and len(boxes) > 1:
        return Extraction(", ".join(boxes), "boxed")
    if policy.box == "auto":
        # "x = \boxed{1} or x = \boxed{-1}" is one answer of several parts; a value boxed again
        # ("\boxed{12}" ... "\boxed{12.}", "\boxed{\frac12}" ... "\boxed{0.5}") counts once
        distinct: dict[str, str] = {}
        for box in boxes:
            distinct.setdefault(canonical_key(box, policy), box)
        parts = list(distinct.values())
        if len(parts) > 1:
            return Extraction(", ".join(parts), "boxes")
    return Extraction(boxes[-1], "boxed")


def _from_pattern(pattern: re.Pattern[str], text: str, method: str) -> Extraction | None:
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    answer = _clean_tail(matches[-1].group(1))
    inner = find_boxes(answer)
    if inner:
        answer = inner[-1]
    return Extraction(answer, method) if answer else None


def _final_answer(text: str) -> Extraction | None:
    """Minerva's "Final Answer: The final answer is X. I hope it is correct." (the last one).

    Searched with rfind rather than a lazy regex, which is quadratic on text repeating the opening.
    """
    lower = text.lower()
    end = lower.rfind(_FINAL_ANSWER_END)
    if end < 0:
        return None
    start = lower.rfind(_FINAL_ANSWER_START, 0, end)
    if start < 0:
        return None
    answer = _clean_tail(text[start + len(_FINAL_ANSWER_START) : end].strip().lstrip(":").strip())
    inner = find_boxes(answer)
    answer = inner[-1] if inner else answer
    return Extraction(answer, "final_answer") if answer else None


def extract_choice(text: str) -> Extraction | None:
    """The chosen letter(s) of a multiple-choice answer, e.g. "(B)" or "选 AC", as "B" / "AC"."""
    boxes = find_boxes(text)
    candidates = [boxes[-1]] if boxes else []
    candidates.append(text)
    for candidate in candidates:
        stripped = re.sub(r"\\text\{([^{}]*)\}|\\mathrm\{([^{}]*)\}", r"\1\2", candidate).strip().strip("$ ")
        several = _LETTERS_ONLY.fullmatch(stripped)
        if several:
            return Extraction("".join(sorted(set(re.sub(r"[^A-E]", "", several.group(1))))), "choice")
        if re.fullmatch(r"\(?([A-E])\)?(?:[.:、)\s].*)?", stripped, re.S):
            return Extraction(stripped.lstrip("(")[0], "choice")
        for pattern in _CHOICE_PATTERNS:
            matches = list(pattern.finditer(candidate))
            if matches:
                letters = "".join(sorted(set(re.sub(r"[^A-E]", "", matches[-1].group(1).upper()))))
                if letters:
                    return Extraction(letters, "choice")
    return None


def _program_output(text: str) -> Extraction | None:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return Extraction(lines[-1], "program") if lines else None


def _closing_math(text: str) -> Extraction | None:
    """closing_math: the math span the text ends with (only punctuation after it), as math-verify
    takes the last LaTeX of a text; a span with words after it is left to the last-number rule."""
    match = _CLOSING_MATH.search(text[-400:])
    if not match:
        return None
    answer = next(group for group in match.groups() if group is not None).strip()
    return Extraction(answer, "closing_math") if answer else None


def _last_number(text: str) -> Extraction | None:
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    return Extraction(numbers[-1].rstrip(",").replace(",", ""), "last_number")


def looks_bare(text: str) -> bool:
    """True for a short text that is itself an answer ("x = 2", "\\frac{1}{2}", "18个"), not prose."""
    stripped = text.strip()
    if not stripped or len(stripped) > 120 or "\n" in stripped:
        return False
    if CLOCK_TIME.fullmatch(stripped):
        return True
    prose = re.sub(r"\\[a-zA-Z]+|\{[^{}]*\}|\$[^$]*\$", " ", stripped)
    # prose words stand alone between spaces ("so 32"); "3qr + 6q" has letters but no words
    words = [
        w
        for w in re.findall(r"(?<!\S)[A-Za-z]{2,}[.,:]?(?!\S)", prose)
        if not UNIT_WORD.fullmatch(w.rstrip(".,:"))
    ]
    cjk = re.findall(r"[\u4e00-\u9fff]", prose)
    if words and re.search(r"\d", prose):
        return False  # "so 32": a number inside prose is left to the last-number fallback
    if words and re.search(r"\$|\\\(|\\\[", stripped):
        return False  # "we obtain \\( x \\)": a sentence around math, left to closing_math
    return len(words) <= 3 and len(cjk) <= 12


def extract_answer(text: str, policy: GradingPolicy | None = None) -> Extraction:
    """The final answer of a model output (or of a bare answer). Never raises; NONE if nothing found."""
    try:
        return _extract(text if isinstance(text, str) else str(text), policy or DEFAULT_POLICY)
    except Exception:  # a pathological input must never take down a caller, but a bug must be seen
        log.exception("answer extraction failed on a %d-character output: no answer", len(str(text)))
        return NONE


def _extract(text: str, policy: GradingPolicy) -> Extraction:
    text = strip_template_tail(text)
    fmt = policy.format
    if fmt == "program":
        return _program_output(text) or NONE
    if fmt == "choice":
        return extract_choice(text) or NONE
    if fmt in ("auto", "boxed"):
        boxed = _from_boxes(text, policy)
        if boxed:
            return boxed
    if fmt in ("auto", "gsm8k"):
        found = _from_pattern(_GSM8K, text, "gsm8k")
        if found:
            return Extraction(found.answer.replace(",", ""), "gsm8k")
    if fmt == "auto":
        found = _final_answer(text) or _from_pattern(_THE_ANSWER_IS, text, "the_answer_is")
        if found:
            return found
        if looks_bare(text):
            return Extraction(_clean_tail(text), "bare")
        found = _closing_math(text)
        if found:
            return found
    found = _last_number(text) if policy.last_number_fallback else None
    if found:
        return found
    stripped = text.strip()
    if fmt == "auto" and _CJK.search(stripped) and len(stripped) <= 200 and "\n" not in stripped:
        return Extraction(_clean_tail(stripped), "bare")  # a Chinese text answer (Gaokao cloze)
    return NONE


def extract_gold(gold: str, policy: GradingPolicy | None = None) -> Extraction:
    """The gold answer: the boxed / "####" answer of a full solution, else the whole string."""
    policy = policy or DEFAULT_POLICY
    try:
        gold = strip_template_tail(gold)
        boxed = _from_boxes(gold, policy)
        if boxed:
            return boxed
        found = _from_pattern(_GSM8K, gold, "gsm8k")
        if found:
            return Extraction(found.answer.replace(",", ""), "gsm8k")
        return Extraction(_clean_tail(gold), "bare")
    except Exception:
        log.exception("gold extraction failed on a %d-character gold: no answer", len(str(gold)))
        return NONE
