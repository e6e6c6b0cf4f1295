"""Checks a whole GenerateRequest against the sampler's limits before any work, and turns it into
token-id prompts and SamplingSettings. Over a limit is RESOURCE_EXHAUSTED naming the limit and its
flag; malformed input is INVALID_ARGUMENT naming the prompt or field."""

from __future__ import annotations

import math
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from mathforge.runtime.errors import RequestError, check_count, require
from mathforge.sampler.backend import SamplingSettings
from mathforge.v1 import sampler_pb2

MAX_TEMPERATURE = 2.0
#: Prompt text bytes allowed per prompt token before tokenizing: far above what any tokenizer
#: averages (3-5), so a text refused here could never fit max_prompt_tokens.
PROMPT_BYTES_PER_TOKEN = 32


@dataclass(frozen=True)
class SamplerLimits:
    """What one request may ask for (0 = the server's default for default_max_tokens only)."""

    max_batch: int
    max_n: int
    max_prompt_tokens: int
    max_new_tokens: int
    default_max_tokens: int
    max_stop_strings: int
    max_stop_chars: int
    #: The model's context, prompt and completion together.
    max_model_len: int
    vocab_size: int

    def as_info(self) -> dict[str, int]:
        return {
            "max_batch": self.max_batch,
            "max_n": self.max_n,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_new_tokens": self.max_new_tokens,
            "default_max_tokens": self.default_max_tokens,
            "max_stop_strings": self.max_stop_strings,
            "max_model_len": self.max_model_len,
            "vocab_size": self.vocab_size,
        }


def check_settings(params: sampler_pb2.SamplingParams, limits: SamplerLimits) -> SamplingSettings:
    """The request's sampling settings with defaults applied; RequestError for a bad or over-limit value."""
    n = params.n or 1
    require(n >= 1, f"n is {params.n}; ask for at least 1 sample per prompt")
    if n > limits.max_n:
        raise RequestError.exhausted(f"n is {n}, over the {limits.max_n} samples-per-prompt limit (--max-n)")
    max_tokens = params.max_tokens or min(limits.default_max_tokens, limits.max_new_tokens)
    require(max_tokens >= 1, f"max_tokens is {params.max_tokens}; it must be at least 1 (0 = server default)")
    if max_tokens > limits.max_new_tokens:
        raise RequestError.exhausted(
            f"max_tokens is {max_tokens}, over the {limits.max_new_tokens} new-token limit (--max-new-tokens)"
        )
    temperature = float(params.temperature)
    # vLLM accepts temperatures up to 2 only; the same bound on both backends keeps one API.
    require(
        math.isfinite(temperature) and 0 <= temperature <= MAX_TEMPERATURE,
        f"temperature is {params.temperature}; use 0 (greedy) up to {MAX_TEMPERATURE}",
    )
    top_p = float(params.top_p)
    require(
        math.isfinite(top_p) and 0 <= top_p <= 1,
        f"top_p is {params.top_p}; it must be in [0, 1] (0 or 1 = off)",
    )
    require(params.top_k >= 0, f"top_k is {params.top_k}; it must be >= 0 (0 = off)")
    stops = list(params.stop)
    check_count(len(stops), limits.max_stop_strings, "stop strings", "max-stop-strings")
    for i, stop in enumerate(stops):
        require(bool(stop), f"stop string {i} is empty")
        if len(stop) > limits.max_stop_chars:
            raise RequestError.exhausted(
                f"stop string {i} has {len(stop)} characters, over the {limits.max_stop_chars} limit"
            )
    require(
        not params.HasField("seed") or params.seed >= 0, f"seed is {params.seed}; use a non-negative integer"
    )
    return SamplingSettings(
        n=n,
        temperature=temperature,
        top_p=top_p if 0 < top_p < 1 else 1.0,
        top_k=params.top_k,
        max_tokens=max_tokens,
        stop=tuple(stops),
        seed=params.seed if params.HasField("seed") else None,
    )


def prompt_token_ids(prompt: sampler_pb2.Prompt, index: int, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The prompt as token ids: its ids as given, or its text encoded with BOS in front (once)."""
    has_text, has_ids = bool(prompt.text), len(prompt.token_ids) > 0
    require(has_text or has_ids, f"prompt {index} is empty; set text or token_ids")
    require(not (has_text and has_ids), f"prompt {index} sets both text and token_ids; set exactly one")
    if has_ids:
        return list(prompt.token_ids)
    ids: list[int] = tokenizer.encode(prompt.text, add_special_tokens=False)
    bos = tokenizer.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids.insert(0, bos)
    return ids


def check_request(
    request: sampler_pb2.GenerateRequest, limits: SamplerLimits, tokenizer: PreTrainedTokenizerBase
) -> tuple[list[list[int]], SamplingSettings]:
    """Validates the whole request and returns (prompts as token ids, settings)."""
    count = len(request.prompts)
    require(count > 0, "request has no prompts; send at least one")
    if count > limits.max_batch:
        raise RequestError.exhausted(
            f"request has {count} prompts, over the {limits.max_batch} limit (--max-batch)"
        )
    settings = check_settings(request.params, limits)
    # Bytes first: tokenizing a text far over the token limit costs seconds and memory for nothing.
    max_bytes = limits.max_prompt_tokens * PROMPT_BYTES_PER_TOKEN
    for i, prompt in enumerate(request.prompts):
        size = len(prompt.text.encode("utf-8"))
        if size > max_bytes:
            raise RequestError.exhausted(
                f"prompt {i} is {size} bytes, over the {max_bytes}-byte limit ({PROMPT_BYTES_PER_TOKEN} "
                f"bytes for each of the --max-prompt-tokens {limits.max_prompt_tokens} tokens)"
            )
    prompts = []
    for i, prompt in enumerate(request.prompts):
        ids = prompt_token_ids(prompt, i, tokenizer)
        if len(ids) > limits.max_prompt_tokens:
            raise RequestError.exhausted(
                f"prompt {i} has {len(ids)} tokens, over the {limits.max_prompt_tokens} limit "
                "(--max-prompt-tokens)"
            )
        bad = next((t for t in ids if not 0 <= t < limits.vocab_size), None)
        require(
            bad is None, f"prompt {i} has token id {bad}, outside the vocabulary [0, {limits.vocab_size})"
        )
        if len(ids) + settings.max_tokens > limits.max_model_len:
            raise RequestError.exhausted(
                f"prompt {i} has {len(ids)} tokens; with max_tokens {settings.max_tokens} that is over the "
                f"model's {limits.max_model_len}-token context"
            )
        prompts.append(ids)
    return prompts, settings
