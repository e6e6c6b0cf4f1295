"""Choosing the next token from a model's logits (temperature, top-k, top-p, greedy) and finding
stop strings in a growing completion, with the semantics vLLM uses, so both backends agree.

    tokens = choose_tokens(logits, settings, [rng.random() for rng in rngs])   # one per row
    matcher = StopMatcher(("\\n\\n",))
    cut = matcher.find(tokenizer, token_ids)                # char offset of a stop string, or None
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from mathforge.sampler.backend import SamplingSettings


def sampling_probs(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """The distribution to sample from: logits / temperature, then top-k, then top-p, renormalised.

    `logits` is (rows, vocab) float32; the result has the same shape and sums to 1 per row.
    """
    scaled = logits / settings.temperature
    vocab = scaled.shape[-1]
    if 0 < settings.top_k < vocab:
        kth = torch.topk(scaled, settings.top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if 0.0 < settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        # Keep the smallest prefix whose mass reaches top_p; the most likely token always stays.
        sorted_probs = sorted_probs.masked_fill(before >= settings.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def row_rng(seed: int, prompt_index: int, sample_index: int) -> random.Random:
    """The random stream of one sample: a function of the request's seed and the sample's place
    only, so a sample is the same whatever else is in the batch and whenever its siblings stop."""
    return random.Random(f"{seed}:{prompt_index}:{sample_index}")


def choose_tokens(
    logits: torch.Tensor, settings: SamplingSettings, uniforms: Sequence[float]
) -> torch.Tensor:
    """One token id per row of `logits` (rows, vocab): argmax when greedy, else the token whose
    cumulative probability under `sampling_probs` first exceeds that row's uniform draw."""
    if settings.greedy:
        return logits.argmax(dim=-1)
    cdf = sampling_probs(logits, settings).double().cumsum(dim=-1)
    draws = torch.tensor(uniforms, dtype=torch.float64, device=logits.device)[:, None] * cdf[:, -1:]
    picked = torch.searchsorted(cdf, draws, right=True).squeeze(1)
    return picked.clamp_(max=logits.shape[-1] - 1)


def decode_text(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int]) -> str:
    """The text of a completion as callers see it (special tokens such as EOS left out)."""
    return tokenizer.decode(list(token_ids), skip_special_tokens=True)


class StopMatcher:
    """Finds the first stop string in a completion, looking only at its tail on each new token."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        # A character is at most 4 UTF-8 bytes and a byte-level token at least one byte, so the
        # last 4 * len + 1 tokens always hold a stop string that the newest token completed.
        self.window = 4 * max((len(s) for s in self.stops), default=0) + 1

    def __bool__(self) -> bool:
        return bool(self.stops)

    def find(self, tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int]) -> int | None:
        """Offset in the completion's text where the earliest stop string begins, or None."""
        if not self.stops:
            return None
        tail = decode_text(tokenizer, token_ids[-self.window :])
        if not any(stop in tail for stop in self.stops):
            return None
        text = decode_text(tokenizer, token_ids)
        found = [i for i in (text.find(stop) for stop in self.stops) if i >= 0]
        return min(found) if found else None
