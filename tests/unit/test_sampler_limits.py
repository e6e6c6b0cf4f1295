"""Sampler request defaults, limits and config validation, without a server."""

from __future__ import annotations

import pytest
from mathforge.runtime.config import ConfigError
from mathforge.runtime.errors import RequestError
from mathforge.sampler.limits import SamplerLimits, check_settings, prompt_token_ids
from mathforge.sampler.service import Config
from mathforge.v1 import sampler_pb2

LIMITS = SamplerLimits(
    max_batch=4,
    max_n=8,
    max_prompt_tokens=64,
    max_new_tokens=32,
    default_max_tokens=16,
    max_stop_strings=2,
    max_stop_chars=8,
    max_model_len=128,
    vocab_size=512,
)


def test_zero_values_take_the_documented_defaults():
    settings = check_settings(sampler_pb2.SamplingParams(), LIMITS)
    assert (settings.n, settings.max_tokens, settings.temperature, settings.top_p, settings.top_k) == (
        1,
        16,
        0.0,
        1.0,
        0,
    )
    assert settings.greedy and settings.seed is None and settings.stop == ()
    seeded = check_settings(sampler_pb2.SamplingParams(seed=0, top_p=1.0), LIMITS)
    assert seeded.seed == 0 and seeded.top_p == 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stop": ["a", "b", "c"]}, "--max-stop-strings"),
        ({"stop": ["x" * 9]}, "stop string 0 has 9 characters"),
        ({"stop": [""]}, "stop string 0 is empty"),
        ({"top_k": -1}, "top_k is -1"),
        ({"max_tokens": -2}, "max_tokens is -2"),
        ({"n": -1}, "n is -1"),
        ({"temperature": 2.5}, "temperature is 2.5; use 0 .greedy. up to 2.0"),
        ({"seed": -1}, "seed is -1"),
    ],
)
def test_bad_sampling_params_are_rejected_naming_the_field(params, message):
    with pytest.raises(RequestError, match=message):
        check_settings(sampler_pb2.SamplingParams(**params), LIMITS)


def test_text_prompts_get_one_bos_and_token_prompts_are_kept():
    from mathforge.models.tokenizer import default_tokenizer

    tok = default_tokenizer()
    ids = prompt_token_ids(sampler_pb2.Prompt(text="2+2="), 0, tok)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    assert prompt_token_ids(sampler_pb2.Prompt(text="<s>2+2="), 0, tok) == ids
    assert prompt_token_ids(sampler_pb2.Prompt(token_ids=[5, 6]), 0, tok) == [5, 6]
    with pytest.raises(RequestError, match="sets both text and token_ids"):
        prompt_token_ids(sampler_pb2.Prompt(text="a", token_ids=[1]), 3, tok)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backend": "tgi"}, "backend 'tgi'"),
        ({"backend": "vllm"}, "needs a checkpoint"),
        ({"max_n": 0}, "--max-n"),
        ({"dtype": "int8"}, "dtype 'int8'"),
        ({"batch_wait_ms": -1}, "--batch-wait-ms"),
    ],
)
def test_config_rejects_values_the_service_cannot_run_with(fields, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_mapping(fields)
