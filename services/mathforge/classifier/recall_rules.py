"""The decisions of a recall round, defined so that any split of the web into shards, any number of
workers and any order of their results give the same answer as one pass over the whole web.

    q = quantize(model.score(texts))                      # integer scores, 1e-5 steps
    hist = token_histogram(q, tokens)                     # tokens per score step, summed over shards
    keep_at = keep_step(hist, config.keep_tokens, floor)  # a page is kept when q >= keep_at
    priority = negative_priority(seed, round, page_id)    # the uniform negative sample: lowest first

- The keep rule: the top pages by score whose tokens fit within keep_tokens (the paper's "top 40B
  tokens", §2.1). Pages tied at the cut-off score are all left out, so the kept set depends on
  scores alone, not on page order. With keep_tokens 0, pages with score >= keep_threshold.
- The negatives: the `count` eligible pages of lowest priority, a 64-bit keyed hash of the page id.
  That is a uniform sample without replacement, fixed by (seed, round), and the lowest `count` of
  a union is the lowest `count` of the shards' lowest `count`s, so shards sample independently.
"""

from __future__ import annotations

import hashlib

import numpy as np

#: Score steps per unit: scores are compared, stored and histogrammed as round(score * SCALE).
SCALE = 100_000
#: Histogram bins: one per score step, 0..SCALE.
BINS = SCALE + 1


def quantize(scores: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] as integer steps 0..SCALE (int64)."""
    return np.rint(np.asarray(scores, dtype=np.float64) * SCALE).astype(np.int64)


def step(value: float) -> int:
    """A threshold in [0, 1] as a score step."""
    return round(value * SCALE)


def score_value(q: int) -> float:
    """A score step as the score written to kept.jsonl."""
    return round(q / SCALE, 5)


def token_histogram(q: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Tokens per score step (int64[BINS])."""
    return np.bincount(q, weights=tokens, minlength=BINS).astype(np.int64)


def keep_step(histogram: np.ndarray, keep_tokens: int, floor: int) -> int:
    """The lowest score step that is kept: with a token budget, the lowest step whose pages at or
    above it fit in `keep_tokens` (never below `floor`, the least score a candidate has); without
    one, `floor` itself. BINS (nothing kept) when even the top step is over budget."""
    if not keep_tokens:
        return floor
    at_or_above = np.cumsum(histogram[::-1])[::-1]
    fitting = np.flatnonzero(at_or_above <= keep_tokens)
    lowest = int(fitting[0]) if len(fitting) else BINS
    return max(lowest, floor)


def candidate_floor(keep_tokens: int, keep_threshold: float, floor: float) -> int:
    """The least score step a page needs to be a keep candidate at all."""
    return step(floor if keep_tokens else keep_threshold)


def negative_priority(seed: int, round_number: int, page_id: str) -> int:
    """The page's place in round `round_number`'s uniform negative sample (lower is sampled first)."""
    digest = hashlib.blake2b(page_id.encode("utf-8"), digest_size=8, key=f"{seed}:{round_number}".encode())
    return int.from_bytes(digest.digest(), "big")


def page_tokens(text: str) -> int:
    """Tokens of a page as the keep budget counts them (whitespace words)."""
    return len(text.split())
