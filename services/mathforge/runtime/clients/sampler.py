"""Typed client of the Sampler service (protos/mathforge/v1/sampler.proto).

with SamplerClient("127.0.0.1:50054") as sampler:
    texts = sampler.generate_texts(["User: 1+1?\\n\\nAssistant:"], n=4, temperature=0.7)
    for completion in sampler.generate_stream(["2+2="], n=8, temperature=1.0, seed=7): ...
    sampler.load_weights(3, "/shared/policy/step-3")      # version must increase
    sampler.policy().version, sampler.policy().checksum   # what it serves

with SamplerClient("127.0.0.1:50054", line="grpo-seed1") as run:   # one policy line of a shared sampler
    run.load_weights(1, "/shared/runs/grpo-seed1/v-00000001")     # every call names the line
    run.generate_texts(["2+2="], n=4, temperature=1.0)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from mathforge.runtime.client import ServiceClient
from mathforge.runtime.lines import DEFAULT_LINE
from mathforge.v1 import common_pb2, sampler_pb2, sampler_pb2_grpc


@dataclass(frozen=True)
class Sample:
    """One completion: its text, token ids, per-token logprobs, finish reason and weights version."""

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: str
    weights_version: int


def generate_request(
    prompts: Sequence[str | Sequence[int]],
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 0.0,
    top_k: int = 0,
    max_tokens: int = 0,
    stop: Sequence[str] = (),
    seed: int | None = None,
    require_version: int | None = None,
    min_version: int | None = None,
) -> sampler_pb2.GenerateRequest:
    """The GenerateRequest for prompts given as text or as token ids."""
    request = sampler_pb2.GenerateRequest(
        prompts=[
            sampler_pb2.Prompt(text=p) if isinstance(p, str) else sampler_pb2.Prompt(token_ids=list(p))
            for p in prompts
        ],
        params=sampler_pb2.SamplingParams(
            n=n, temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, stop=list(stop)
        ),
    )
    if seed is not None:
        request.params.seed = seed
    if require_version is not None:
        request.require_version = require_version
    if min_version is not None:
        request.min_version = min_version
    return request


class SamplerClient(ServiceClient):
    """`line`: the policy line every call of this client samples from, loads and asks about
    (sampler.proto; empty = the default line)."""

    service_name = "mathforge.v1.Sampler"
    stub_class = sampler_pb2_grpc.SamplerStub

    def __init__(self, target: str, *, line: str = DEFAULT_LINE, **options: Any):
        super().__init__(target, **options)
        self.line = line

    def generate(
        self,
        prompts: Sequence[str | Sequence[int]],
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 0.0,
        top_k: int = 0,
        max_tokens: int = 0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        require_version: int | None = None,
        timeout_s: float | None = None,
        min_version: int | None = None,
    ) -> sampler_pb2.GenerateResponse:
        """n completions per prompt (text, or token ids); the raw GenerateResponse."""
        request = generate_request(
            prompts, n, temperature, top_p, top_k, max_tokens, stop, seed, require_version, min_version
        )
        return self.send(request, timeout_s=timeout_s)

    def send(
        self, request: sampler_pb2.GenerateRequest, timeout_s: float | None = None
    ) -> sampler_pb2.GenerateResponse:
        """Sends a ready GenerateRequest (on this client's line unless the request names one)."""
        if not request.line:
            request.line = self.line
        return self.call(self.stub.Generate, request, timeout_s=timeout_s)

    def generate_stream(
        self,
        prompts: Sequence[str | Sequence[int]],
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 0.0,
        top_k: int = 0,
        max_tokens: int = 0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        require_version: int | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[sampler_pb2.Completion]:
        """Like `generate`, yielding each Completion as soon as the server finishes it (in any order;
        prompt_index and sample_index say which it is)."""
        request = generate_request(
            prompts, n, temperature, top_p, top_k, max_tokens, stop, seed, require_version
        )
        request.line = self.line
        yield from self.stream(self.stub.GenerateStream, request, timeout_s=timeout_s)

    def generate_samples(
        self, prompts: Sequence[str | Sequence[int]], n: int = 1, **params: object
    ) -> list[list[Sample]]:
        """Like `generate`, as Sample dataclasses: one list per prompt, ordered by sample index."""
        response = self.generate(prompts, n, **params)  # type: ignore[arg-type]
        return [
            [
                Sample(c.text, tuple(c.token_ids), tuple(c.logprobs), c.finish_reason, c.weights_version)
                for c in sorted(result.completions, key=lambda c: c.sample_index)
            ]
            for result in response.results
        ]

    def generate_texts(self, prompts: Sequence[str], n: int = 1, **params: object) -> list[list[str]]:
        """Only the completion texts: one list of n per prompt."""
        return [[s.text for s in samples] for samples in self.generate_samples(prompts, n, **params)]

    def load_weights(
        self, version: int, path: str, timeout_s: float = 600.0
    ) -> sampler_pb2.LoadWeightsResponse:
        """Swaps in the checkpoint at `path` as `version` (must be greater than the serving one)."""
        request = sampler_pb2.LoadWeightsRequest(version=version, path=path, line=self.line)
        return self.call(self.stub.LoadWeights, request, timeout_s=timeout_s)

    def load_weights_stream(
        self, version: int, stream: sampler_pb2.WeightStream, timeout_s: float = 600.0
    ) -> grpc.Future:
        """Starts LoadWeights in the collective mode and returns its future at once: the call only
        ends after the trainer has broadcast every bucket, so the trainer sends while it waits."""
        request = sampler_pb2.LoadWeightsRequest(version=version, stream=stream, line=self.line)
        return self.stub.LoadWeights.future(request, timeout=timeout_s)

    def policy(self, timeout_s: float | None = None) -> common_pb2.ServedModel:
        """The policy this replica serves on this client's line: version, checksum, dtype, path
        (version 0 and no path for a named line not loaded)."""
        for model in self.info(timeout_s).models:
            if model.kind == "policy" and model.line == self.line:
                return model
        return common_pb2.ServedModel(kind="policy", line=self.line)
