"""Batched sampling with a KV cache for a transformers causal LM: several requests' prompts in one
left-padded batch, n samples per prompt, each sample drawing from its own random stream seeded by
(request seed, prompt index, sample index), so it is reproducible whatever else shares the batch.

    decode_batch(model, tokenizer, [DecodeRequest(job, on_sample, seed=7)], eos_ids={2})

The prompts are run once (prefill) and their cache rows copied n times, so a group of G samples
pays for its prompt once. Rows that finish are dropped from the cache, so the batch shrinks as
completions end. The log-probability returned for each token is the model's own log-softmax of
its raw logits at that position (before temperature, top-k and top-p), the quantity GRPO's ratio
and KL terms need.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from mathforge.sampler.backend import (
    FINISH_LENGTH,
    FINISH_STOP,
    GenerationJob,
    Sample,
    SampleCallback,
)
from mathforge.sampler.sampling import StopMatcher, choose_tokens, decode_text, row_rng


@dataclass
class DecodeRequest:
    """One request's share of a batch: its job, where finished samples go, and its seed."""

    job: GenerationJob
    on_sample: SampleCallback
    seed: int


@dataclass
class _Row:
    request: int
    prompt_index: int
    sample_index: int
    max_tokens: int
    rng: random.Random
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


def _left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        if prompt:
            ids[i, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            mask[i, width - len(prompt) :] = 1
    return ids, mask


def _positions(mask: torch.Tensor) -> torch.Tensor:
    # Positions count real tokens only, so a left-padded prompt sees the same positions as alone.
    return (mask.cumsum(dim=-1) - 1).clamp(min=0)


class _Batch:
    """The rows being decoded, their cache and attention mask, shrinking as rows finish."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        requests: Sequence[DecodeRequest],
        eos_ids: set[int],
    ):
        self.model, self.tokenizer, self.requests, self.eos_ids = model, tokenizer, requests, eos_ids
        self.matchers = [StopMatcher(r.job.settings.stop) for r in requests]
        self.device = next(model.parameters()).device
        self.rows: list[_Row] = []
        prompts: list[Sequence[int]] = []
        row_prompt: list[int] = []
        for r_index, request in enumerate(requests):
            settings = request.job.settings
            for p_index, prompt in enumerate(request.job.prompts):
                for s_index in range(settings.n):
                    row_prompt.append(len(prompts))
                    place = request.job.prompt_offset + p_index
                    rng = row_rng(request.seed, place, s_index)
                    self.rows.append(_Row(r_index, place, s_index, settings.max_tokens, rng))
                prompts.append(prompt)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids, mask = _left_padded(prompts, pad_id)
        self.cache = DynamicCache()
        logits = self._forward(ids, mask, _positions(mask))
        # Copy each prompt's cache row and last logits to its n sample rows.
        select = torch.tensor(row_prompt, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(select)
        self.mask = mask.to(self.device)[select]
        self.logits = logits[select]

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float()

    def step(self) -> None:
        """Samples one token for every live row, emits finished samples, advances the rest."""
        logprobs = torch.log_softmax(self.logits, dim=-1)
        chosen = torch.empty(len(self.rows), dtype=torch.long, device=self.logits.device)
        by_request: dict[int, list[int]] = {}
        for i, row in enumerate(self.rows):
            by_request.setdefault(row.request, []).append(i)
        for r_index, indices in by_request.items():
            request = self.requests[r_index]
            where = torch.tensor(indices, dtype=torch.long, device=self.logits.device)
            uniforms = [self.rows[i].rng.random() for i in indices]
            chosen[where] = choose_tokens(self.logits[where], request.job.settings, uniforms)
        chosen_logprobs = logprobs.gather(1, chosen[:, None]).squeeze(1).tolist()
        now = time.monotonic()
        for r_index in by_request:
            job = self.requests[r_index].job
            if job.first_token_at is None:
                job.first_token_at = now
        keep: list[int] = []
        for i, (row, token, logprob) in enumerate(
            zip(self.rows, chosen.tolist(), chosen_logprobs, strict=True)
        ):
            row.token_ids.append(token)
            row.logprobs.append(logprob)
            # A cancelled request's rows leave the batch without a sample: nobody waits for it.
            if not self.requests[row.request].job.cancelled and not self._finish_if_done(row):
                keep.append(i)
        if len(keep) < len(self.rows):
            self.rows = [self.rows[i] for i in keep]
            if not keep:
                return
            where = torch.tensor(keep, dtype=torch.long, device=self.device)
            self.cache.batch_select_indices(where)
            self.mask = self.mask[where]
            chosen = chosen[where]
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        positions = self.mask.sum(dim=-1, keepdim=True) - 1
        self.logits = self._forward(chosen[:, None], self.mask, positions)

    def _finish_if_done(self, row: _Row) -> bool:
        matcher = self.matchers[row.request]
        text: str | None = None
        if row.token_ids[-1] in self.eos_ids:
            reason = FINISH_STOP
        elif matcher and (cut := matcher.find(self.tokenizer, row.token_ids)) is not None:
            reason, text = FINISH_STOP, decode_text(self.tokenizer, row.token_ids)[:cut]
        elif len(row.token_ids) >= row.max_tokens:
            reason = FINISH_LENGTH
        else:
            return False
        if text is None:
            text = decode_text(self.tokenizer, row.token_ids)
        sample = Sample(row.prompt_index, row.sample_index, row.token_ids, row.logprobs, text, reason)
        self.requests[row.request].on_sample(sample)
        return True


@torch.inference_mode()
def decode_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[DecodeRequest],
    eos_ids: set[int],
) -> None:
    """Runs every request to completion in one batch; each sample goes to its request's callback
    as soon as it finishes (EOS, a stop string, or max_tokens)."""
    if not requests:
        return
    batch = _Batch(model, tokenizer, requests, eos_ids)
    while batch.rows:
        batch.step()
