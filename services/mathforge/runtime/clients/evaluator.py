"""Typed client of the Evaluator service (protos/mathforge/v1/evaluator.proto).

with EvaluatorClient("127.0.0.1:50055") as evaluator:
    verdicts = evaluator.grade_batch([("\\\\boxed{1/2}", "0.5")])
    for event in evaluator.evaluate("gsm8k", sampler="127.0.0.1:50054", k=4, limit=20): ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mathforge.runtime.client import ServiceClient
from mathforge.v1 import evaluator_pb2, evaluator_pb2_grpc


def policy_message(policy: Mapping[str, Any] | None) -> evaluator_pb2.GradingPolicy:
    """A GradingPolicy message from a mapping of its fields (missing = the server's defaults)."""
    return evaluator_pb2.GradingPolicy(**dict(policy or {}))


class EvaluatorClient(ServiceClient):
    service_name = "mathforge.v1.Evaluator"
    stub_class = evaluator_pb2_grpc.EvaluatorStub

    def grade(
        self,
        prediction: str,
        gold: str,
        policy: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> evaluator_pb2.GradeResponse:
        request = evaluator_pb2.GradeRequest(prediction=prediction, gold=gold, policy=policy_message(policy))
        return self.call("Grade", request, timeout_s=timeout_s)

    def grade_batch(
        self,
        pairs: Sequence[tuple[str, str]],
        policy: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> list[evaluator_pb2.GradeResponse]:
        """Verdicts for (prediction, gold) pairs, in order."""
        message = policy_message(policy)
        request = evaluator_pb2.GradeBatchRequest(
            items=[evaluator_pb2.GradeRequest(prediction=p, gold=g, policy=message) for p, g in pairs]
        )
        return list(self.call("GradeBatch", request, timeout_s=timeout_s).results)

    def extract(self, text: str, policy: Mapping[str, Any] | None = None) -> tuple[str, str]:
        """(answer, method) of a model output."""
        reply = self.call("Extract", evaluator_pb2.ExtractRequest(text=text, policy=policy_message(policy)))
        return reply.answer, reply.method

    def run_program(
        self,
        code: str,
        stdin: str = "",
        wall_time_s: float = 0.0,
        cpu_time_s: float = 0.0,
        memory_bytes: int = 0,
        output_bytes: int = 0,
        timeout_s: float | None = None,
    ) -> evaluator_pb2.RunProgramResponse:
        request = evaluator_pb2.RunProgramRequest(
            code=code,
            stdin=stdin,
            wall_time_s=wall_time_s,
            cpu_time_s=cpu_time_s,
            memory_bytes=memory_bytes,
            output_bytes=output_bytes,
        )
        return self.call("RunProgram", request, timeout_s=timeout_s)

    def evaluate(
        self,
        benchmark: str,
        sampler: str,
        k: int = 1,
        limit: int = 0,
        temperature: float = 0.7,
        max_tokens: int = 0,
        prompt_style: str = "zero_shot",
        seed: int = 0,
        policy: Mapping[str, Any] | None = None,
        timeout_s: float = 24 * 3600,
    ) -> Iterator[evaluator_pb2.EvaluateEvent]:
        """Streams progress events, then the result event (metrics and per-item records)."""
        request = evaluator_pb2.EvaluateRequest(
            benchmark=benchmark,
            sampler=sampler,
            k=k,
            limit=limit,
            temperature=temperature,
            max_tokens=max_tokens,
            prompt_style=prompt_style,
            seed=seed,
            policy=policy_message(policy),
        )
        yield from self.stream("Evaluate", request, timeout_s=timeout_s)
