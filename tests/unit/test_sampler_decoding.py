"""Token choice (temperature, top-k, top-p), stop strings, and the batched KV-cache decoding loop."""

from __future__ import annotations

import pytest
import torch
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.sampler.backend import GenerationJob, Sample, SamplingSettings
from mathforge.sampler.decoding import DecodeRequest, decode_batch
from mathforge.sampler.sampling import StopMatcher, choose_tokens, sampling_probs


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model(
        "tiny",
        len(tokenizer),
        seed=0,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ).eval()


LOGITS = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))


def test_top_k_keeps_only_the_k_most_likely_tokens():
    probs = sampling_probs(LOGITS, SamplingSettings(temperature=1.0, top_k=2))
    assert probs[0].tolist() == pytest.approx([2 / 3, 1 / 3, 0, 0])


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    probs = sampling_probs(LOGITS, SamplingSettings(temperature=1.0, top_p=0.7))
    assert probs[0].tolist() == pytest.approx([2 / 3, 1 / 3, 0, 0])
    tiny_p = sampling_probs(LOGITS, SamplingSettings(temperature=1.0, top_p=0.01))
    assert tiny_p[0].tolist() == pytest.approx([1, 0, 0, 0])


def test_temperature_below_one_sharpens_the_distribution():
    probs = sampling_probs(LOGITS, SamplingSettings(temperature=0.5))
    expected = torch.tensor([0.5, 0.25, 0.15, 0.1]) ** 2
    assert probs[0].tolist() == pytest.approx((expected / expected.sum()).tolist())


def test_choose_tokens_follows_the_distribution_and_greedy_takes_argmax():
    grid = [(i + 0.5) / 1000 for i in range(1000)]
    picks = choose_tokens(LOGITS.expand(1000, 4), SamplingSettings(temperature=1.0), grid)
    counts = torch.bincount(picks, minlength=4).tolist()
    assert counts == [500, 250, 150, 100]
    assert choose_tokens(LOGITS, SamplingSettings(temperature=0.0), [0.99]).tolist() == [0]


def test_stop_matcher_finds_the_earliest_stop_string(tokenizer):
    ids = tokenizer.encode("x = 12; y = 7\n\nthen z", add_special_tokens=False)
    matcher = StopMatcher(["\n\n", "y ="])
    assert matcher.find(tokenizer, ids) == len("x = 12; ")
    assert StopMatcher(["never"]).find(tokenizer, ids) is None
    assert not StopMatcher([])


def _run(model, tokenizer, jobs: list[tuple[GenerationJob, int]]) -> list[list[Sample]]:
    out: list[list[Sample]] = [[] for _ in jobs]
    requests = [DecodeRequest(job, out[i].append, seed) for i, (job, seed) in enumerate(jobs)]
    decode_batch(model, tokenizer, requests, {tokenizer.eos_token_id})
    return [sorted(samples, key=lambda s: (s.prompt_index, s.sample_index)) for samples in out]


def _prompt(tokenizer, text: str) -> list[int]:
    return [tokenizer.bos_token_id, *tokenizer.encode(text, add_special_tokens=False)]


def test_a_sample_is_the_same_alone_and_batched_with_other_traffic(model, tokenizer):
    mine = GenerationJob([_prompt(tokenizer, "1+1=")], SamplingSettings(n=3, temperature=1.0, max_tokens=12))
    other = GenerationJob(
        [_prompt(tokenizer, "a much longer prompt that pads the batch on the left"), _prompt(tokenizer, "z")],
        SamplingSettings(n=2, temperature=0.8, top_k=20, max_tokens=5, stop=("e",)),
    )
    alone = _run(model, tokenizer, [(mine, 42)])[0]
    together = _run(model, tokenizer, [(other, 7), (mine, 42)])[1]
    assert [s.token_ids for s in alone] == [s.token_ids for s in together]
    for a, b in zip(alone, together, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    assert len({tuple(s.token_ids) for s in alone}) == 3


def test_greedy_decoding_matches_transformers_generate(model, tokenizer):
    prompt = _prompt(tokenizer, "The answer is")
    ours = _run(
        model, tokenizer, [(GenerationJob([prompt], SamplingSettings(temperature=0.0, max_tokens=10)), 0)]
    )
    reference = model.generate(
        torch.tensor([prompt]), max_new_tokens=10, do_sample=False, eos_token_id=tokenizer.eos_token_id
    )[0, len(prompt) :].tolist()
    assert ours[0][0].token_ids == reference


def test_eos_ends_a_sample_and_is_kept_with_its_logprob(model, tokenizer):
    prompt = _prompt(tokenizer, "2+2")
    settings = SamplingSettings(temperature=0.0, max_tokens=10)
    free = _run(model, tokenizer, [(GenerationJob([prompt], settings), 0)])[0][0]
    assert free.finish_reason == "length" and len(free.token_ids) == 10
    eos = free.token_ids[3]
    out: list[Sample] = []
    decode_batch(model, tokenizer, [DecodeRequest(GenerationJob([prompt], settings), out.append, 0)], {eos})
    cut = free.token_ids.index(eos) + 1
    assert out[0].finish_reason == "stop"
    assert out[0].token_ids == free.token_ids[:cut]
    assert out[0].logprobs == pytest.approx(free.logprobs[:cut], abs=1e-6)


def test_a_request_larger_than_the_batch_is_split_without_changing_any_sample(tokenizer):
    import asyncio

    from mathforge.sampler.transformers_backend import TransformersBackend

    prompts = [_prompt(tokenizer, text) for text in ("a", "bb", "1+1=", "x y z", "7")]
    job_settings = SamplingSettings(n=3, temperature=1.0, max_tokens=6, seed=9)

    async def samples(max_rows: int) -> list[tuple[int, int, list[int]]]:
        backend = TransformersBackend(max_batch_rows=max_rows)
        model = await backend.start()
        out: list[Sample] = []
        job = GenerationJob(prompts, job_settings)
        await backend.generate(job, model, out.append)
        await backend.close()
        assert job.first_token_at is not None
        return sorted((s.prompt_index, s.sample_index, s.token_ids) for s in out)

    whole, split = asyncio.run(samples(64)), asyncio.run(samples(3))
    assert [(p, s) for p, s, _ in split] == [(p, s) for p in range(5) for s in range(3)]
    assert split == whole


def test_a_cancelled_request_leaves_the_batch_and_the_others_finish(model, tokenizer):
    gone = GenerationJob([_prompt(tokenizer, "a")], SamplingSettings(n=4, temperature=1.0, max_tokens=50))
    kept = GenerationJob([_prompt(tokenizer, "b")], SamplingSettings(n=2, temperature=1.0, max_tokens=5))
    out: list[Sample] = []
    gone.cancelled = True
    requests = [DecodeRequest(gone, out.append, 1), DecodeRequest(kept, out.append, 2)]
    decode_batch(model, tokenizer, requests, {tokenizer.eos_token_id})
    assert sorted((s.prompt_index, s.sample_index) for s in out) == [(0, 0), (0, 1)]
    assert all(len(s.token_ids) <= 5 for s in out)


LONG = "a long first prompt, longer than the other one"


@pytest.mark.parametrize(
    ("running_prompt", "running_tokens", "joining_prompts"),
    [
        (LONG, 6, ["2+2=", "x"]),  # the joiner is padded to the batch; then the batch is trimmed
        ("x", 12, [LONG, "2+2="]),  # the running rows are padded to the joiner's width
    ],
)
def test_a_request_joining_a_running_batch_samples_as_if_alone(
    model, tokenizer, running_prompt, running_tokens, joining_prompts
):
    running = GenerationJob(
        [_prompt(tokenizer, running_prompt)],
        SamplingSettings(n=2, temperature=1.0, max_tokens=running_tokens),
    )
    joiner = GenerationJob(
        [_prompt(tokenizer, text) for text in joining_prompts],
        SamplingSettings(n=3, temperature=0.9, top_k=50, max_tokens=8, stop=("e",)),
    )
    alone = _run(model, tokenizer, [(joiner, 5)])[0]
    joined: list[Sample] = []
    done: list[str] = []
    offers: list[int] = []

    def more(free_rows: int) -> list[DecodeRequest]:
        offers.append(free_rows)
        if len(offers) != 4:  # join after the running request's 4th token
            return []
        return [DecodeRequest(joiner, joined.append, 5, on_done=lambda: done.append("joiner"))]

    first = DecodeRequest(running, lambda s: None, 1, on_done=lambda: done.append("running"))
    decode_batch(model, tokenizer, [first], {tokenizer.eos_token_id}, more, max_rows=16)
    joined.sort(key=lambda s: (s.prompt_index, s.sample_index))
    assert [s.token_ids for s in joined] == [s.token_ids for s in alone]
    for a, b in zip(alone, joined, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    assert offers[0] == 14 and sorted(done) == ["joiner", "running"]
