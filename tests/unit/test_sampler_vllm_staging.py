"""The vLLM backend's checkpoint staging, which runs before the engine is touched and needs no vllm."""

from __future__ import annotations

import asyncio

import pytest
from mathforge.models.checkpoint import save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.sampler.backend import WeightsError
from mathforge.sampler.vllm_backend import VllmBackend, tensor_shapes


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


@pytest.fixture(scope="module")
def serving(tmp_path_factory, tokenizer):
    path = save_model(
        build_model("tiny", len(tokenizer), seed=0), tokenizer, tmp_path_factory.mktemp("p") / "v0"
    )
    backend = VllmBackend(str(path))
    backend._shapes = tensor_shapes(path)  # what start() records from the serving checkpoint
    return backend


def test_a_checkpoint_of_the_same_shape_stages_with_its_size(serving, tokenizer, tmp_path):
    path = save_model(build_model("tiny", len(tokenizer), seed=1), tokenizer, tmp_path / "v1")
    staged = asyncio.run(serving.stage_weights(str(path)))
    assert staged.bytes == (path / "model.safetensors").stat().st_size
    shapes = tensor_shapes(path)
    assert shapes["lm_head.weight"] == ("F32", (len(tokenizer), 128))
    assert staged.payload is None and staged.path == str(path)


def test_a_checkpoint_of_another_shape_is_rejected(serving, tokenizer, tmp_path):
    other = save_model(build_model("small", len(tokenizer), seed=0), tokenizer, tmp_path / "small")
    with pytest.raises(WeightsError, match="does not fit the serving model"):
        asyncio.run(serving.stage_weights(str(other)))


def test_a_truncated_or_missing_checkpoint_is_rejected(serving, tokenizer, tmp_path):
    path = save_model(build_model("tiny", len(tokenizer), seed=1), tokenizer, tmp_path / "v1")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size - 100])
    with pytest.raises(WeightsError, match="unreadable safetensors"):
        asyncio.run(serving.stage_weights(str(path)))
    with pytest.raises(WeightsError, match="does not exist"):
        asyncio.run(serving.stage_weights(str(tmp_path / "nowhere")))
