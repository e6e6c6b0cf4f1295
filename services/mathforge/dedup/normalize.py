"""Text normalisation and tokenisation shared by exact hashing, MinHash shingles and decontamination.

The default (`TextNormalizer()`): Unicode NFKC, case folding, whitespace collapsed, and "grams" that
are words, with mathematics kept intact and counted as words too:

    "Janet's ducks lay 16 eggs. Then  x ^ 2+1 = 10, 妈咪买了"
      ->  janet | s | ducks | lay | 16 | eggs | then | x^2+1=10 | 妈 | 咪 | 买 | 了

- A gram is a run of visible characters between whitespace (a word, a number, `$\\frac{1}{2}$`).
- Whitespace next to a math operator (`+ - * / = ^ < > | _ ~ %`, the Unicode math operators and
  arrows), after an opening bracket or before a closing one does not separate grams, so
  `( x ^ 2 + 1 )` and `(x^2+1)` are the same gram:
  re-spacing a formula changes nothing, and a formula counts as one gram, which keeps common
  formulas (`a^2+b^2=c^2`) from making up a 10-gram on their own.
- Sentence punctuation in `drop_chars` (default `, . ; : ? " '` and their CJK forms, after NFKC)
  separates grams like whitespace. Nothing else is ever deleted: `x^2+1` never becomes `x21`.
- Each CJK ideograph or kana is a gram of its own, because Chinese and Japanese have no spaces
  (so a CMATH 10-gram is 10 characters).
- A gram's value is its text without the whitespace inside it.

Formula grams (`formula_grams=True`, what decontamination uses for benchmark and document alike):
a gram that holds mathematics is cut further, so a formula-heavy sentence keeps about as many grams
as it has words, while a common formula stays a few grams (re-spacing still changes nothing):

    "so $x^2 + 3x = 10$, which gives \\[ (x+5)(x-2) = 0 \\] hence"
      ->  so | x^2 | + | 3x | = | 10 | which | gives | (x+5)(x-2) | = | 0 | hence
    "$(x+1)^2 \\geq 0$"                            ->  (x+1)^2 | \\geq | 0
    "$x = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}$"   ->  x | = | \\frac{-b | \\pm | \\sqrt{b^2-4ac}}{2a}

- Relation signs (`=`, `<`, `>`, `<=`, `>=`, `!=`, `≤ ≥ ≠ ≈ ≡`, `\\le`, `\\geq`, `\\neq`, `\\approx`,
  `\\implies`, arrows...) and a binary `+` or `-` outside brackets are grams of their own: they
  carry the structure of a derivation. A `+` or `-` inside brackets, and `* / ^ _`, keep gluing,
  so `(x+5)(x-2)` is one gram; a hyphen between two words (`well-known`) is no minus.
- Math delimiters and layout (`$`, `\\[ \\]`, `\\( \\)`, `&`, `\\\\`, `\\begin{...}`, `\\end{...}`,
  `\\quad`, `\\left`, `\\right`) only separate, at any depth: whether a solution writes
  `\\[ ... \\]` or `$$ ... $$` does not change its grams, and a matrix or align layout alone
  (`\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}`) cannot fill a 10-gram.
- The measurement behind these choices (recall on planted GSM8K/MATH passages, false positives on
  novel prose around common formulas) is bench/bench_decontam.py; docs/corpus.md has the numbers.

Normalisation never crosses whitespace, so the normal form of a text is the normal forms of its
whitespace-separated chunks; that is what lets `tokens_with_offsets` map every gram back to
character offsets in the ORIGINAL text (needed to report and cut matched spans).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

# CJK Unified Ideographs (+ extension A, compatibility), hiragana and katakana.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
DEFAULT_DROP_CHARS = (
    ",.;:?\"'`\u3001\u3002\u300c\u300d\u300e\u300f\u3010\u3011\u300a\u300b"
    "\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026"
)
# Characters that glue grams across whitespace: ASCII operators, ± × ÷ ·, arrows and the
# Mathematical Operators block; whitespace after an opening or before a closing bracket glues too.
MATH_OPERATORS = "+\\-*/=^<>|_~%\u00b1\u00d7\u00f7\u00b7\u2190-\u21ff\u2200-\u22ff"
_GLUE_BEFORE = MATH_OPERATORS + "(\\[{"
_GLUE_AFTER = MATH_OPERATORS + ")\\]}"
UNICODE_FORMS = ("NFKC", "NFC", "NFKD", "NFD", "none")
_PIECE = re.compile(r"\s+|\S+")
# Formula grams: relation signs (kept as grams) and delimiters/layout (dropped), matched inside a gram.
_RELATION = (
    r"<=|>=|!=|==?|<|>|[\u2248\u2260\u2261\u2264\u2265\u2190-\u21ff]"
    r"|\\(?:le|ge|leq|geq|ne|neq|approx|equiv|sim|simeq|cong|to|implies|iff|"
    r"rightarrow|leftarrow|leftrightarrow|longrightarrow|mapsto)(?![a-z])"
)
_LAYOUT = (
    r"(?<!\\)\$+|\\[\[\]()]|&|\\\\|\\(?:begin|end)\{[^{}]*\}"
    r"|\\(?:quad|qquad|left|right|displaystyle)(?![a-z])"
)
# A binary + or - (outside brackets, see _binary) separates the terms of a side.
_TERM = r"[+\-]"
_NOT_OPERAND_END = set("([{^_+-*/=<>,")
_NOT_OPERAND_START = set(")]}^_*/=<>,")
_WORD_END = re.compile(r"(?<![^\W\d_])[^\W\d_]{2,}$")
_WORD_START = re.compile(r"[^\W\d_]{2,}(?![^\W\d_])")
_FORMULA_CUT = re.compile(rf"\s*(?:(?P<relation>{_RELATION})|(?P<layout>{_LAYOUT})|(?P<term>{_TERM}))\s*")
# Brackets that nest (escaped ones, like the set braces \{ \}, are text).
_OPENING = re.compile(r"(?<!\\)[(\[{]")
_CLOSING = re.compile(r"(?<!\\)[)\]}]")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class TextNormalizer:
    """Normalises and tokenises text; see the module docstring for the default rules."""

    unicode_form: str = "NFKC"
    lowercase: bool = True
    drop_chars: str = DEFAULT_DROP_CHARS
    glue_operators: bool = True
    formula_grams: bool = False
    _token_re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unicode_form not in UNICODE_FORMS:
            raise ValueError(f"unicode_form {self.unicode_form!r} is not one of {', '.join(UNICODE_FORMS)}")
        drop = re.escape(self.drop_chars) if self.drop_chars else ""
        atom = rf"[^\s{drop}{_CJK}\x00-\x1f\x7f]+"
        glue = (
            rf"(?:\s+(?=[{_GLUE_AFTER}]){atom}|(?<=[{_GLUE_BEFORE}])\s+{atom})*"
            if self.glue_operators
            else ""
        )
        object.__setattr__(self, "_token_re", re.compile(rf"[{_CJK}]|{atom}{glue}"))

    def normalize(self, text: str) -> str:
        """The text in normal form (Unicode form and case), whitespace as it was."""
        if self.unicode_form != "none":
            text = unicodedata.normalize(self.unicode_form, text)  # type: ignore[arg-type]
        return text.casefold() if self.lowercase else text

    def exact_form(self, text: str) -> str:
        """The normal form used for exact duplicates: normalised, whitespace collapsed to single spaces."""
        return " ".join(self.normalize(text).split())

    def tokens(self, text: str) -> list[str]:
        """The grams of `text`, normalised (a gram may hold whitespace; its value is without it)."""
        found = self._token_re.findall(self.normalize(text))
        if not self.formula_grams:
            return found
        return [token[a:b] for token in found for a, b in formula_pieces(token)]

    def token_values(self, text: str) -> list[str]:
        """The grams of `text` as compared: normalised, whitespace inside a gram removed."""
        return [gram_value(t) for t in self.tokens(text)]

    def tokens_with_offsets(self, text: str) -> tuple[list[str], list[int], list[int]]:
        """The grams of `text` (as `tokens`) with each one's [start, end) character offsets in `text`.

        Where normalisation changes a chunk's length (ligatures, full-width forms, case folding of
        `ß`), offsets come from normalising character by character; in the rare case where that
        differs from normalising the chunk whole (composition across characters), a gram's
        offsets widen to the whole chunk.
        """
        pieces: list[str] = []
        first: list[int] = []  # origin of each normal-form character: first original index
        last: list[int] = []  # ... and one past the last original index it covers
        for piece_match in _PIECE.finditer(text):
            piece, base = piece_match.group(), piece_match.start()
            norm = self.normalize(piece)
            pieces.append(norm)
            if len(norm) == len(piece) and self._maps_one_to_one(piece):
                first.extend(range(base, base + len(piece)))
                last.extend(range(base + 1, base + len(piece) + 1))
                continue
            spans = self._char_spans(piece, norm)
            if spans is None:
                first.extend([base] * len(norm))
                last.extend([base + len(piece)] * len(norm))
            else:
                first.extend(base + lo for lo, _ in spans)
                last.extend(base + hi for _, hi in spans)
        normal = "".join(pieces)
        tokens: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        for m in self._token_re.finditer(normal):
            token, base = m.group(), m.start()
            for a, b in formula_pieces(token) if self.formula_grams else [(0, len(token))]:
                tokens.append(token[a:b])
                starts.append(first[base + a])
                ends.append(last[base + b - 1])
        return tokens, starts, ends

    def _maps_one_to_one(self, piece: str) -> bool:
        """True when every character of `piece` normalises to exactly one character in place: ASCII,
        or already in the Unicode normal form (case folding never shortens a character, so with
        equal lengths none grew either)."""
        if piece.isascii() or self.unicode_form == "none":
            return True
        return unicodedata.is_normalized(self.unicode_form, piece)  # type: ignore[arg-type]

    def _char_spans(self, chunk: str, norm: str) -> list[tuple[int, int]] | None:
        """For each character of `norm`, the [lo, hi) span of `chunk` it came from, or None."""
        spans: list[tuple[int, int]] = []
        pieces: list[str] = []
        i = 0
        while i < len(chunk):
            j = i + 1
            while j < len(chunk) and unicodedata.combining(chunk[j]):
                j += 1  # keep combining marks with their base character
            piece = self.normalize(chunk[i:j])
            pieces.append(piece)
            spans.extend([(i, j)] * len(piece))
            i = j
        return spans if "".join(pieces) == norm else None


def formula_pieces(token: str, term_grams: bool = True) -> list[tuple[int, int]]:
    """[start, end) of each formula gram of one gram: cut at relation signs and binary + or - outside
    brackets (kept, as grams of their own) and at math delimiters (dropped, at any depth); a gram
    without any comes back whole."""
    if token.isalnum():
        return [(0, len(token))]
    pieces: list[tuple[int, int]] = []
    position = scanned = depth = 0
    for cut in _FORMULA_CUT.finditer(token):
        between = token[scanned : cut.start()]
        depth = max(0, depth + len(_OPENING.findall(between)) - len(_CLOSING.findall(between)))
        scanned = cut.start()
        if cut.group("layout"):
            kept = ""
        elif depth:
            continue  # a relation or term inside brackets stays in its gram
        elif cut.group("relation"):
            kept = "relation"
        elif term_grams and _binary(token, position, cut.start("term"), cut.end("term")):
            kept = "term"
        else:
            continue
        if cut.start() > position:
            pieces.append((position, cut.start()))
        if kept:
            pieces.append(cut.span(kept))
        position = cut.end()
    if position < len(token):
        pieces.append((position, len(token)))
    return pieces


def _binary(token: str, since: int, start: int, end: int) -> bool:
    """Whether the + or - at token[start:end] joins two terms: an operand before it (since the last
    cut) and after it, and not a hyphen between two words ("well-known")."""
    before = token[since:start].rstrip()
    after = token[end:].lstrip()
    if not before or not after or before[-1] in _NOT_OPERAND_END or after[0] in _NOT_OPERAND_START:
        return False
    return not (token[start] == "-" and _WORD_END.search(before) and _WORD_START.match(after))


def gram_value(token: str) -> str:
    """A gram as compared: without the whitespace that re-spacing may have put inside it."""
    return _WHITESPACE.sub("", token) if not token.isalnum() else token
