"""Typed client of the Reward service.

with RewardClient("127.0.0.1:50053") as reward:
    rewards = reward.rule(responses, references)                     # [1.0, 0.0, ...]
    results = reward.score(items, kind="mix", weights={"rule": 1.0, "prm": 0.5})
    results[0].reward, [s.reward for s in results[0].steps]
    reward.load_model("orm", version=3, path="/checkpoints/rm/iter-3")

with RewardClient("127.0.0.1:50053", line="iterative-seed0") as run:   # one line of a shared service
    run.load_model("prm", version=1, path="/runs/iterative-seed0/reward-model/iteration-1")
    run.score(items, kind="prm")        # this line's PRM; the default line's ORM if it loaded none
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mathforge.runtime.client import ServiceClient
from mathforge.runtime.clients.evaluator import policy_message
from mathforge.runtime.lines import DEFAULT_LINE
from mathforge.v1 import reward_pb2, reward_pb2_grpc

KINDS = {
    "rule": reward_pb2.REWARD_RULE,
    "orm": reward_pb2.REWARD_ORM,
    "prm": reward_pb2.REWARD_PRM,
    "mix": reward_pb2.REWARD_MIX,
}


@dataclass(frozen=True)
class StepScore:
    """One PRM step: its reward, tokens [token_start, token_end) and characters [char_start, char_end)
    of the response."""

    reward: float
    token_start: int
    token_end: int
    char_start: int
    char_end: int


@dataclass(frozen=True)
class ScoredItem:
    """The reward of one item; steps for PRM (and a mix with prm); the rule's verdict when computed."""

    reward: float
    steps: list[StepScore] = field(default_factory=list)
    correct: bool = False
    extracted_answer: str = ""


@dataclass(frozen=True)
class ScoreResult:
    items: list[ScoredItem]
    model_versions: dict[str, int]

    @property
    def rewards(self) -> list[float]:
        return [item.reward for item in self.items]


class RewardClient(ServiceClient):
    """`line`: the reward-model line every call of this client scores with, loads into and asks
    about (reward.proto; empty = the default line)."""

    service_name = "mathforge.v1.Reward"
    stub_class = reward_pb2_grpc.RewardStub

    def __init__(self, target: str, *, line: str = DEFAULT_LINE, **options: Any):
        super().__init__(target, **options)
        self.line = line

    def score(
        self,
        items: Sequence[tuple[str, str, str]],
        kind: str = "rule",
        weights: Mapping[str, float] | None = None,
        format_penalty: float = 0.0,
        timeout_s: float | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Scores (question, response, reference) triples; kind is rule, orm, prm or mix (with weights).
        `policy`: GradingPolicy fields for the rule reward (missing = the server's --grading-policy)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        request = reward_pb2.RewardRequest(
            items=[reward_pb2.RewardItem(question=q, response=r, reference=ref) for q, r, ref in items],
            kind=KINDS[kind],
            weights=dict(weights or {}),
            format_penalty=format_penalty,
            policy=policy_message(policy),
        )
        reply = self.send(request, timeout_s=timeout_s)
        scored = [
            ScoredItem(
                reward=result.reward,
                steps=[
                    StepScore(s.reward, s.token_start, s.token_end, s.char_start, s.char_end)
                    for s in result.steps
                ],
                correct=result.correct,
                extracted_answer=result.extracted_answer,
            )
            for result in reply.results
        ]
        return ScoreResult(scored, dict(reply.model_versions))

    def send(
        self, request: reward_pb2.RewardRequest, timeout_s: float | None = None
    ) -> reward_pb2.RewardResponse:
        """Sends a ready RewardRequest (on this client's line unless it names one); the raw response."""
        if not request.line:
            request.line = self.line
        return self.call(self.stub.Score, request, timeout_s=timeout_s)

    def rule(
        self,
        responses: Sequence[str],
        references: Sequence[str],
        format_penalty: float = 0.0,
        timeout_s: float | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> list[float]:
        """Rule rewards (1/0 minus the format penalty) of responses against their references."""
        items = [("", r, ref) for r, ref in zip(responses, references, strict=True)]
        return self.score(
            items, "rule", format_penalty=format_penalty, timeout_s=timeout_s, policy=policy
        ).rewards

    def load_model(self, kind: str, version: int, path: str, timeout_s: float = 600.0) -> float:
        """Switches the served ORM or PRM to the model at `path` as `version`; returns load seconds."""
        request = reward_pb2.LoadRewardModelRequest(kind=kind, version=version, path=path, line=self.line)
        return float(self.call(self.stub.LoadModel, request, timeout_s=timeout_s).load_seconds)

    def model_versions(self, timeout_s: float | None = None, own: bool = False) -> dict[str, int]:
        """{kind: version} of the reward models this replica scores this client's line with (from
        Info's typed models: the line's own, else the default line's); `own`: only those loaded
        into this client's named line."""
        models = self.info(timeout_s).models
        versions = (
            {} if own and self.line else {m.kind: int(m.version) for m in models if m.line == DEFAULT_LINE}
        )
        if self.line:
            versions.update({m.kind: int(m.version) for m in models if m.line == self.line})
        return versions
