"""The Sampler service on a tiny model with the transformers backend, over real gRPC on loopback."""

from __future__ import annotations

import shutil
import threading

import grpc
import pytest
import torch
from mathforge.models.checkpoint import load_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.runtime.server import ServerThread
from mathforge.sampler.service import Config, create_service
from prometheus_client import generate_latest

from tests.e2e.policies import tiny_policy

PROMPTS = ["What is 2+2? Answer:", "Solve x + 3 = 5."]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny policies with different weights and the same tokenizer: (old, new)."""
    root = tmp_path_factory.mktemp("policies")
    return tiny_policy(root / "v0", seed=0), tiny_policy(root / "v1", seed=1)


@pytest.fixture(scope="module")
def server(checkpoints):
    config = Config(
        port=0,
        metrics_port=-1,
        model_path=str(checkpoints[0]),
        max_n=8,
        max_batch=4,
        max_new_tokens=32,
        default_max_tokens=8,
        max_prompt_tokens=64,
    )
    with ServerThread(create_service(config)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with SamplerClient(server.target, timeout_s=60) as sampler:
        yield sampler


def _recomputed_logprobs(model, prompt_ids, completion_ids) -> list[float]:
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    start = len(prompt_ids) - 1
    return [logprobs[start + i, token].item() for i, token in enumerate(completion_ids)]


def test_generate_returns_n_samples_per_prompt_tagged_with_the_version(client):
    response = client.generate(PROMPTS, n=3, temperature=1.0, max_tokens=6, seed=1)
    assert response.weights_version == 0
    assert len(response.results) == len(PROMPTS)
    for result in response.results:
        assert result.prompt_token_ids[0] == default_tokenizer().bos_token_id
        assert [c.sample_index for c in result.completions] == [0, 1, 2]
        for completion in result.completions:
            assert 1 <= len(completion.token_ids) <= 6
            assert len(completion.logprobs) == len(completion.token_ids)
            assert completion.weights_version == 0
            assert completion.finish_reason in ("stop", "length")


def test_logprobs_equal_the_models_own_log_softmax(client, checkpoints):
    model, _ = load_model(checkpoints[0])
    response = client.generate(PROMPTS, n=2, temperature=1.3, top_k=40, top_p=0.9, max_tokens=12, seed=3)
    checked = 0
    for result in response.results:
        for completion in result.completions:
            expected = _recomputed_logprobs(model, result.prompt_token_ids, completion.token_ids)
            assert list(completion.logprobs) == pytest.approx(expected, abs=1e-4)
            checked += len(expected)
    assert checked >= 8


def test_same_seed_gives_the_same_samples_and_another_seed_differs(client):
    first = client.generate(PROMPTS, n=4, temperature=1.0, max_tokens=10, seed=11)
    again = client.generate(PROMPTS, n=4, temperature=1.0, max_tokens=10, seed=11)
    other = client.generate(PROMPTS, n=4, temperature=1.0, max_tokens=10, seed=12)

    def tokens(response):
        return [[list(c.token_ids) for c in r.completions] for r in response.results]

    assert tokens(first) == tokens(again)
    assert tokens(first) != tokens(other)
    # n samples of one prompt are distinct draws, not copies.
    assert len({tuple(t) for t in tokens(first)[0]}) > 1


def test_stop_strings_and_max_tokens_are_respected(client):
    free = client.generate(PROMPTS, n=4, temperature=1.0, max_tokens=20, seed=5)
    # A stop string that the unconstrained samples contain: a letter from the middle of one of them.
    text = "".join(c.text[2:] for r in free.results for c in r.completions)
    stop = next(ch for ch in text if ch.isascii() and ch.isalpha())
    stopped = client.generate(PROMPTS, n=4, temperature=1.0, max_tokens=20, seed=5, stop=[stop])
    stop_hits = 0
    for before, after in zip(free.results, stopped.results, strict=True):
        for a, b in zip(before.completions, after.completions, strict=True):
            assert stop not in b.text
            if stop in a.text:
                stop_hits += 1
                assert b.finish_reason == "stop"
                assert b.text == a.text[: a.text.index(stop)]
                assert len(b.token_ids) <= len(a.token_ids)
    assert stop_hits >= 1
    capped = client.generate(PROMPTS, n=2, temperature=1.0, max_tokens=3, seed=5)
    for result in capped.results:
        for completion in result.completions:
            assert len(completion.token_ids) <= 3
            assert completion.finish_reason == ("length" if len(completion.token_ids) == 3 else "stop")


def test_greedy_and_token_id_prompts_match_text_prompts(client):
    by_text = client.generate(PROMPTS[:1], max_tokens=8)
    ids = list(by_text.results[0].prompt_token_ids)
    by_ids = client.generate([ids], max_tokens=8, n=2)
    assert list(by_ids.results[0].completions[0].token_ids) == list(
        by_text.results[0].completions[0].token_ids
    )
    assert list(by_ids.results[0].completions[1].token_ids) == list(
        by_text.results[0].completions[0].token_ids
    )


def test_stream_yields_every_completion_once_as_soon_as_it_finishes(client):
    params = {"n": 3, "temperature": 1.0, "max_tokens": 20, "seed": 21, "stop": ["e", "a", " "]}
    streamed = list(client.generate_stream(PROMPTS, **params))
    assert sorted((c.prompt_index, c.sample_index) for c in streamed) == [
        (p, s) for p in range(2) for s in range(3)
    ]
    # Every row gains one token per step, so completions that stop earlier are sent earlier.
    lengths = [len(c.token_ids) for c in streamed]
    assert lengths == sorted(lengths) and len(set(lengths)) > 1
    unary = client.generate(PROMPTS, **params)
    expected = {
        (p, c.sample_index): list(c.token_ids) for p, r in enumerate(unary.results) for c in r.completions
    }
    assert {(c.prompt_index, c.sample_index): list(c.token_ids) for c in streamed} == expected


def test_stream_of_a_stale_or_bad_request_fails_with_its_status(client):
    with pytest.raises(grpc.RpcError) as err:
        list(client.generate_stream(PROMPTS, require_version=5))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not the required 5" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        list(client.generate_stream(PROMPTS, n=100))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("kwargs", "code", "names"),
    [
        ({"prompts": ["a"] * 5}, grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-batch"),
        ({"n": 9}, grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-n"),
        ({"max_tokens": 33}, grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-new-tokens"),
        ({"prompts": ["word " * 200]}, grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-prompt-tokens"),
        ({"prompts": [[1, 99999]]}, grpc.StatusCode.INVALID_ARGUMENT, "outside the vocabulary"),
        ({"prompts": [""]}, grpc.StatusCode.INVALID_ARGUMENT, "prompt 0 is empty"),
        ({"temperature": -1.0}, grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
        ({"top_p": 1.5}, grpc.StatusCode.INVALID_ARGUMENT, "top_p"),
    ],
)
def test_requests_over_a_limit_or_malformed_name_the_problem(client, kwargs, code, names):
    args = {"prompts": PROMPTS, **kwargs}
    with pytest.raises(grpc.RpcError) as err:
        client.generate(**args)
    assert err.value.code() == code
    assert names in err.value.details()


def test_info_describes_model_backend_version_and_limits(client, checkpoints):
    info = client.info()
    assert info.service == "mathforge.v1.Sampler"
    assert info.backend == "transformers"
    assert info.random_weights is False
    assert info.model == str(checkpoints[0]) or info.model_version > 0
    assert info.limits["max_n"] == 8 and info.limits["max_new_tokens"] == 32
    assert info.limits["max_model_len"] == 1024
    assert info.details["device"] == "cpu"


def test_random_weight_model_is_labelled_and_deterministic():
    def first_completion() -> tuple[list[int], bool]:
        config = Config(port=0, metrics_port=-1, max_new_tokens=8)
        with ServerThread(create_service(config)) as running, SamplerClient(running.target) as sampler:
            info = sampler.info()
            response = sampler.generate(["2+2="], max_tokens=6)
            return list(response.results[0].completions[0].token_ids), info.random_weights

    first, labelled = first_completion()
    assert labelled is True
    assert first_completion()[0] == first


# ---- weights ------------------------------------------------------------------------------
def _greedy(client, **kwargs):
    response = client.generate(PROMPTS, max_tokens=8, **kwargs)
    return response.weights_version, [list(r.completions[0].token_ids) for r in response.results]


def test_load_weights_under_concurrent_load_switches_outputs_with_no_failed_call(tmp_path, checkpoints):
    config = Config(port=0, metrics_port=-1, model_path=str(checkpoints[0]), max_new_tokens=16)
    service = create_service(config)
    with ServerThread(service) as running, SamplerClient(running.target, timeout_s=60) as sampler:
        _, old_tokens = _greedy(sampler)
        results: list[tuple[int, list[list[int]]]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    results.append(_greedy(sampler))
                except BaseException as exc:  # collected: the test fails on any of them
                    errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        while len(results) < 3:
            threading.Event().wait(0.01)
        loaded = sampler.load_weights(1, str(checkpoints[1]))
        after = len(results)
        while len(results) < after + 3:
            threading.Event().wait(0.01)
        stop.set()
        for thread in threads:
            thread.join()
        assert not errors
        assert loaded.version == 1 and loaded.bytes > 100_000 and loaded.load_seconds > 0
        _, new_tokens = _greedy(sampler, require_version=1)
        assert new_tokens != old_tokens
        # Every call saw one whole version: old outputs under 0, new outputs under 1.
        for version, tokens in results:
            assert tokens == (old_tokens if version == 0 else new_tokens)
        assert {v for v, _ in results} == {0, 1}
        value = service.registry.get_sample_value
        calls = len(results) + 2  # the hammering calls and the two greedy ones before and after
        assert value("mathforge_sampler_weights_version") == 1
        assert value("mathforge_sampler_weight_loads_total", {"result": "ok"}) == 1
        assert value("mathforge_sampler_requests_total", {"result": "ok"}) == calls
        assert value("mathforge_sampler_time_to_first_token_seconds_count") == calls
        generated = sum(len(t) for _, outputs in results for t in outputs) + sum(
            map(len, old_tokens + new_tokens)
        )
        assert value("mathforge_sampler_tokens_generated_total") == generated
        assert "mathforge_sampler_queue_depth" in generate_latest(service.registry).decode()


def test_corrupt_checkpoint_is_rejected_and_the_old_weights_keep_serving(tmp_path, checkpoints):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(checkpoints[1], corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    config = Config(port=0, metrics_port=-1, model_path=str(checkpoints[0]), max_new_tokens=16)
    with (
        ServerThread(create_service(config)) as running,
        SamplerClient(running.target, timeout_s=60) as sampler,
    ):
        before = _greedy(sampler)
        for version, path, code in [
            (1, str(corrupt), grpc.StatusCode.FAILED_PRECONDITION),
            (1, str(tmp_path / "missing"), grpc.StatusCode.FAILED_PRECONDITION),
            (0, str(checkpoints[1]), grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                sampler.load_weights(version, path)
            assert err.value.code() == code
            assert "still serving version 0" in err.value.details() or "not greater" in err.value.details()
        assert sampler.info().model_version == 0
        assert _greedy(sampler) == before
        with pytest.raises(grpc.RpcError) as err:
            _greedy(sampler, require_version=1)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # A good checkpoint still loads after the failures.
        assert sampler.load_weights(1, str(checkpoints[1])).version == 1
        assert _greedy(sampler, require_version=1)[1] != before[1]
