"""Benchmark decontamination by the n-gram rule of DeepSeekMath §2.1.

    index = BenchmarkIndex(TextNormalizer(), ngram_size=10)
    index.add_items(load_benchmark("gsm8k_test.jsonl"))
    matches = index.find(document_text)        # [] when clean
    cleaned = cut_matches(document_text, matches)

The rule: every `ngram_size`-gram (10) of every benchmark question and answer goes into the index,
and a text holding any of them is contaminated. A benchmark text of `min_short_ngrams` (3) to
ngram_size - 1 grams is matched whole, as an exact token sequence (so on word boundaries). Texts of
fewer than 3 grams (e.g. the final answer "18") are ignored: they would match almost any text.
Grams are formula grams (normalize.py): a formula is cut at its relation signs and math
delimiters, so a 12-word fragment of a LaTeX-heavy MATH solution still holds 10 or more grams,
while a common formula alone (`$a^2 + b^2 = c^2$`: 5 grams) does not fill a 10-gram
(`formula_grams=False` treats each formula as one gram, the rule before; bench/bench_decontam.py
measures both). One extension: because a formula is few grams, a text of 1 or 2 grams that holds at least
`min_short_chars` (20) characters is matched whole too; without it 119 MATH test questions such as
"Compute: $1-2+3-4+5-\\dots+99-100$." would not be indexed at all (0 = the plain rule).

What counts as an item's "answer" text: its full solution when the benchmark has one (GSM8K's
worked answer, MATH's solution), else its answer field (CMATH's "golden", Gaokao cloze answers).
Extracted final answers of sets with solutions are not indexed on their own (`index_final_answers`
turns that on): a short final answer such as `\\frac{1}{2}` would flag every text that contains it.

Matching hashes tokens and n-grams to 64-bit values (hashing.py) and looks every window of the
text up in sorted numpy arrays; a false match needs a 64-bit collision (about 1e-10 per 2 KB
document against GSM8K + MATH + CMATH). Only texts with a hit are tokenised again with character
offsets, so a verdict's span is exact in the original text.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mathforge.dedup.hashing import WindowHasher, token_hashes
from mathforge.dedup.normalize import TextNormalizer, gram_value

# Texts hashed together in one pass of the fast path.
_BATCH = 256
# Tables larger than this (keys) are probed with sorted windows.
_SORT_QUERIES_ABOVE = 65536


class BenchmarkRecord(Protocol):
    """What the index reads of a benchmark item (the evaluator's BenchmarkItem has it)."""

    @property
    def benchmark(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def question(self) -> str: ...
    @property
    def answer(self) -> str: ...
    @property
    def solution(self) -> str: ...


@dataclass(frozen=True)
class ContaminationMatch:
    """A span of a document that holds benchmark text: [start, end) characters of the original."""

    benchmark: str
    item: str
    start: int
    end: int
    span: str

    def as_dict(self) -> dict[str, object]:
        return {
            "benchmark": self.benchmark,
            "item": self.item,
            "span": [self.start, self.end],
            "text": self.span,
        }


class BenchmarkIndex:
    """The n-gram index of benchmark questions and answers, and the matcher over it."""

    def __init__(
        self,
        normalizer: TextNormalizer | None = None,
        ngram_size: int = 10,
        min_short_ngrams: int = 3,
        min_short_chars: int = 20,
        index_final_answers: bool = False,
        formula_grams: bool = True,
    ):
        if ngram_size < 2:
            raise ValueError(f"ngram_size {ngram_size} must be at least 2")
        if not 1 <= min_short_ngrams <= ngram_size:
            raise ValueError(f"min_short_ngrams {min_short_ngrams} must be in 1..{ngram_size}")
        # Benchmark texts and documents are cut into grams by the same normaliser, formula grams on.
        self.normalizer = dataclasses.replace(normalizer or TextNormalizer(), formula_grams=formula_grams)
        self.formula_grams = formula_grams
        self.ngram_size = ngram_size
        self.min_short_ngrams = min_short_ngrams
        self.min_short_chars = min_short_chars
        self.index_final_answers = index_final_answers
        self.items: list[tuple[str, str]] = []
        self.items_per_benchmark: dict[str, int] = {}
        self._pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        # n -> (sorted unique window hashes, index into self.items of the first item holding it)
        self._tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # First-gram hashes of the short texts: only windows starting with one can match them.
        self._short_first: set[int] = set()
        self._short_starts = np.empty(0, dtype=np.uint64)

    # ---- building -------------------------------------------------------------------------
    def add_items(self, items: Iterable[BenchmarkRecord]) -> int:
        """Indexes each item's question and answer text; returns how many items were added."""
        added = 0
        for item in items:
            texts = [item.question, item.solution or item.answer]
            if self.index_final_answers and item.solution and item.answer:
                texts.append(item.answer)
            self.add_texts(item.benchmark, item.id, texts)
            added += 1
        self._build()
        return added

    def add_texts(self, benchmark: str, item_id: str, texts: Iterable[str]) -> None:
        """Queues the texts of one benchmark item; `add_items` (or `find`) builds the tables."""
        number = len(self.items)
        self.items.append((benchmark, item_id))
        self.items_per_benchmark[benchmark] = self.items_per_benchmark.get(benchmark, 0) + 1
        for text in texts:
            tokens = self.normalizer.tokens(text)
            if not self.indexable(tokens):
                continue
            hashes = token_hashes(tokens)
            n = min(len(hashes), self.ngram_size)
            windows = WindowHasher(hashes).windows(n)
            self._pending.setdefault(n, []).append((windows, np.full(len(windows), number, dtype=np.int32)))
            if n < self.ngram_size:
                self._short_first.add(int(hashes[0]))

    def indexable(self, tokens: list[str]) -> bool:
        """Whether a benchmark text of these grams goes into the index: min_short_ngrams or more
        grams, or fewer grams that hold at least `min_short_chars` characters (a formula is one
        gram, so "Compute: $1-2+3-4+5-\\dots+99-100$." is 2 grams but far from trivial)."""
        if len(tokens) >= self.min_short_ngrams:
            return True
        return bool(self.min_short_chars) and sum(len(gram_value(t)) for t in tokens) >= self.min_short_chars

    def _build(self) -> None:
        for n, parts in self._pending.items():
            old_keys, old_items = self._tables.get(n, (np.empty(0, np.uint64), np.empty(0, np.int32)))
            keys = np.concatenate([old_keys, *(p[0] for p in parts)])
            owners = np.concatenate([old_items, *(p[1] for p in parts)])
            # np.unique keeps the first occurrence; a stable sort by key first puts older items first.
            order = np.argsort(keys, kind="stable")
            unique, first = np.unique(keys[order], return_index=True)
            self._tables[n] = (unique, owners[order][first])
        self._pending.clear()
        self._short_starts = np.array(sorted(self._short_first), dtype=np.uint64)

    def copy(self) -> BenchmarkIndex:
        """An index with the same content that can be extended without touching this one (the
        tables are immutable arrays, shared)."""
        self._build()
        other = BenchmarkIndex(
            self.normalizer,
            ngram_size=self.ngram_size,
            min_short_ngrams=self.min_short_ngrams,
            min_short_chars=self.min_short_chars,
            index_final_answers=self.index_final_answers,
            formula_grams=self.formula_grams,
        )
        other.items = list(self.items)
        other.items_per_benchmark = dict(self.items_per_benchmark)
        other._tables = dict(self._tables)
        other._short_first = set(self._short_first)
        other._short_starts = self._short_starts
        return other

    @property
    def ngrams(self) -> int:
        """Distinct long n-grams in the index."""
        self._build()
        table = self._tables.get(self.ngram_size)
        return 0 if table is None else len(table[0])

    @property
    def short_texts(self) -> int:
        """Distinct short benchmark texts (min_short_ngrams to ngram_size - 1 grams)."""
        self._build()
        return sum(len(keys) for n, (keys, _) in self._tables.items() if n < self.ngram_size)

    @property
    def loaded(self) -> bool:
        return bool(self.items)

    # ---- matching -------------------------------------------------------------------------
    def _hits(self, token_lists: Sequence[list[str]]) -> list[list[tuple[int, int, int]]]:
        """Per text: (first token, n, item number) of every indexed window found in its tokens.

        All texts of a batch are hashed in one pass; windows that straddle two texts are skipped.
        """
        if self._pending:
            self._build()
        hits: list[list[tuple[int, int, int]]] = [[] for _ in token_lists]
        lengths = np.array([len(t) for t in token_lists], dtype=np.int64)
        if not self._tables or not lengths.sum():
            return hits
        gram_hashes = token_hashes(list(itertools.chain.from_iterable(token_lists)))
        hasher = WindowHasher(gram_hashes)
        text_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        text_of = np.repeat(np.arange(len(token_lists)), lengths)
        starts = self._short_starts
        short_candidates = np.empty(0, dtype=np.int64)
        if len(starts):
            at = np.minimum(np.searchsorted(starts, gram_hashes), len(starts) - 1)
            short_candidates = np.flatnonzero(starts[at] == gram_hashes)
        for n, (keys, owners) in self._tables.items():
            if n == self.ngram_size:
                found = self._probe_long(hasher.windows(n), keys)
            else:
                positions = short_candidates[short_candidates + n <= len(gram_hashes)]
                windows = hasher.windows_at(positions, n)
                spot = np.minimum(np.searchsorted(keys, windows), len(keys) - 1)
                found = positions[keys[spot] == windows]
            found = found[text_of[found] == text_of[found + n - 1]]
            pos = np.searchsorted(keys, hasher.windows_at(found, n))
            for first, owner in zip(found.tolist(), owners[pos].tolist(), strict=True):
                text = int(text_of[first])
                hits[text].append((first - int(text_start[text]), n, owner))
        return hits

    @staticmethod
    def _probe_long(windows: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Positions of the windows found in the (large) table of long n-grams."""
        if len(windows) == 0 or len(keys) == 0:
            return np.empty(0, dtype=np.int64)
        if len(keys) <= _SORT_QUERIES_ABOVE:
            spot = np.minimum(np.searchsorted(keys, windows), len(keys) - 1)
            return np.flatnonzero(keys[spot] == windows)
        # Sorted queries walk a large table forward (cache-friendly); matches are rare, so their
        # positions are looked for again only when there are some.
        ordered = np.sort(windows)
        spot = np.minimum(np.searchsorted(keys, ordered), len(keys) - 1)
        matched = ordered[keys[spot] == ordered]
        return np.flatnonzero(np.isin(windows, matched)) if len(matched) else np.empty(0, dtype=np.int64)

    def find(self, text: str) -> list[ContaminationMatch]:
        """Every matched span of `text`, merged per benchmark item, in text order; [] when clean."""
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[list[ContaminationMatch]]:
        """`find` for a batch of texts; clean texts cost one hashing pass for the whole batch."""
        results: list[list[ContaminationMatch]] = [[] for _ in texts]
        for start in range(0, len(texts), _BATCH):
            batch = texts[start : start + _BATCH]
            flagged = self._hits([self.normalizer.tokens(t) for t in batch])
            for offset, hits in enumerate(flagged):
                if hits:
                    results[start + offset] = self._locate(batch[offset])
        return results

    def _locate(self, text: str) -> list[ContaminationMatch]:
        tokens, starts, ends = self.normalizer.tokens_with_offsets(text)
        by_item: dict[int, list[tuple[int, int]]] = {}
        for first, n, owner in self._hits([tokens])[0]:
            by_item.setdefault(owner, []).append((first, first + n))
        matches: list[ContaminationMatch] = []
        for owner, ranges in by_item.items():
            benchmark, item_id = self.items[owner]
            for lo, hi in _merge(ranges):
                start, end = starts[lo], ends[hi - 1]
                matches.append(ContaminationMatch(benchmark, item_id, start, end, text[start:end]))
        matches.sort(key=lambda m: (m.start, m.end, m.benchmark, m.item))
        return matches


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Unites overlapping or touching [lo, hi) ranges."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def cut_matches(text: str, matches: Iterable[ContaminationMatch]) -> str:
    """The text with every matched span removed (the text itself when there are no matches)."""
    pieces: list[str] = []
    position = 0
    for lo, hi in _merge([(m.start, m.end) for m in matches]):
        pieces.append(text[position:lo])
        position = hi
    pieces.append(text[position:])
    return "".join(pieces)
