"""Batched sampling with a KV cache for a transformers causal LM: several requests' prompts in one
left-padded batch, n samples per prompt, each sample drawing from its own random stream seeded by
(request seed, prompt index, sample index), so it is reproducible whatever else shares the batch.

    decode_batch(model, tokenizer, [DecodeRequest(job, on_sample, seed=7)], eos_ids={2})
    decode_batch(..., more=take_queued, max_rows=512)    # requests join while it runs

The prompts are run once (prefill) and their cache rows copied n times, so a group of G samples
pays for its prompt once. Rows that finish are dropped from the cache, so the batch shrinks as
completions end, and requests that arrive meanwhile are prefilled and join the running batch
between two steps (continuous batching): their cache rows are left-padded to the batch's width,
which padding and position ids make invisible, and columns that have become padding for every
row are cut off, so the width follows the longest live row. The log-probability returned for each
token is the model's own log-softmax of its raw logits at that position (before temperature,
top-k and top-p), the quantity GRPO's ratio and KL terms need.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
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
    #: Called once every sample of the job has been sent (or dropped, if the job was cancelled).
    on_done: Callable[[], None] | None = None


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


def _pad_left(cache: DynamicCache, mask: torch.Tensor, columns: int) -> torch.Tensor:
    """Widens every cache layer and the mask by `columns` masked positions on the left."""
    for layer in cache.layers:
        layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, columns, 0))
        layer.values = torch.nn.functional.pad(layer.values, (0, 0, columns, 0))
    return torch.nn.functional.pad(mask, (columns, 0))


class _Batch:
    """The rows being decoded, their cache and attention mask; rows leave as they finish and
    requests join between steps."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, eos_ids: set[int]):
        self.model, self.tokenizer, self.eos_ids = model, tokenizer, eos_ids
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Keyed by a per-batch request number and dropped when a request is done, so a batch that
        # keeps taking requests in does not keep the finished ones.
        self.requests: dict[int, DecodeRequest] = {}
        self.matchers: dict[int, StopMatcher] = {}
        self.rows_left: dict[int, int] = {}
        self.admitted = 0
        self.rows: list[_Row] = []
        self.cache = DynamicCache()
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)
        self.logits = torch.zeros((0, 0), device=self.device)

    def admit(self, requests: Sequence[DecodeRequest]) -> None:
        """Prefills the prompts of `requests` and adds their sample rows to the batch."""
        prompts: list[Sequence[int]] = []
        row_prompt: list[int] = []
        rows: list[_Row] = []
        for request in requests:
            r_index, self.admitted = self.admitted, self.admitted + 1
            settings = request.job.settings
            self.requests[r_index] = request
            self.matchers[r_index] = StopMatcher(settings.stop)
            self.rows_left[r_index] = len(request.job.prompts) * settings.n
            for p_index, prompt in enumerate(request.job.prompts):
                place = request.job.prompt_offset + p_index
                for s_index in range(settings.n):
                    row_prompt.append(len(prompts))
                    rng = row_rng(request.seed, place, s_index)
                    rows.append(_Row(r_index, place, s_index, settings.max_tokens, rng))
                prompts.append(prompt)
        ids, mask = _left_padded(prompts, self.pad_id)
        cache = DynamicCache()
        logits = self._forward(cache, ids, mask, _positions(mask))
        # Copy each prompt's cache row and last logits to its n sample rows.
        select = torch.tensor(row_prompt, dtype=torch.long, device=self.device)
        cache.batch_select_indices(select)
        mask, logits = mask.to(self.device)[select], logits[select]
        if not self.rows:
            self.cache, self.mask, self.logits, self.rows = cache, mask, logits, rows
            return
        width, new_width = self.mask.shape[1], mask.shape[1]
        if new_width < width:
            mask = _pad_left(cache, mask, width - new_width)
        elif width < new_width:
            self.mask = _pad_left(self.cache, self.mask, new_width - width)
        for layer, joining in zip(self.cache.layers, cache.layers, strict=True):
            layer.keys = torch.cat([layer.keys, joining.keys])
            layer.values = torch.cat([layer.values, joining.values])
        self.mask = torch.cat([self.mask, mask])
        self.logits = torch.cat([self.logits, logits])
        self.rows += rows

    def _forward(
        self, cache: DynamicCache, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float()

    def _keep(self, keep: list[int]) -> None:
        """Drops every row not in `keep` and the columns that are padding for all that remain."""
        where = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(where)
        self.mask = self.mask[where]
        first = int(self.mask.any(dim=0).nonzero()[0])
        if first > 0:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]

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
            else:
                self._row_done(row.request)
        if len(keep) < len(self.rows):
            self.rows = [self.rows[i] for i in keep]
            if not keep:
                return
            self._keep(keep)
            chosen = chosen[torch.tensor(keep, dtype=torch.long, device=self.device)]
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        positions = self.mask.sum(dim=-1, keepdim=True) - 1
        self.logits = self._forward(self.cache, chosen[:, None], self.mask, positions)

    def _row_done(self, r_index: int) -> None:
        self.rows_left[r_index] -= 1
        if self.rows_left[r_index] > 0:
            return
        request = self.requests.pop(r_index)
        del self.matchers[r_index], self.rows_left[r_index]
        if request.on_done is not None:
            request.on_done()

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
    more: Callable[[int], Sequence[DecodeRequest]] | None = None,
    max_rows: int = 0,
) -> None:
    """Runs `requests` to completion; each sample goes to its request's callback as soon as it
    finishes (EOS, a stop string, or max_tokens). Between steps, `more(free_rows)` may hand over
    requests of at most that many rows to join the batch, up to `max_rows` rows in all."""
    if not requests:
        return
    batch = _Batch(model, tokenizer, eos_ids)
    batch.admit(requests)
    while batch.rows:
        batch.step()
        free = max_rows - len(batch.rows)
        if more is not None and batch.rows and free > 0 and (joining := more(free)):
            batch.admit(joining)
