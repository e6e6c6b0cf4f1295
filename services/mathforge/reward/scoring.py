"""What a Score request asks for, checked whole before any work, and how the components' scores
combine into its results.

    plan = plan_request(request, limits)            # RequestError for a bad request, nothing done
    results = combine(plan, rule_scores, orm_scores, prm_scores, prm_steps)

Components are "rule", "orm" and "prm". REWARD_RULE, REWARD_ORM and REWARD_PRM are one component
with weight 1; REWARD_MIX is the weighted sum over `weights`. A PRM contributes the mean of its step
scores to the scalar reward (0 for a response with no steps) and its steps to `steps`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mathforge.reward.rule import RuleScore
from mathforge.reward.steps import StepSpan
from mathforge.runtime.errors import RequestError, check_bytes, check_count, require
from mathforge.v1 import reward_pb2

COMPONENTS = ("rule", "orm", "prm")
_SINGLE = {reward_pb2.REWARD_RULE: "rule", reward_pb2.REWARD_ORM: "orm", reward_pb2.REWARD_PRM: "prm"}
_KIND_NAMES = {
    reward_pb2.REWARD_RULE: "rule",
    reward_pb2.REWARD_ORM: "orm",
    reward_pb2.REWARD_PRM: "prm",
    reward_pb2.REWARD_MIX: "mix",
}
MAX_FORMAT_PENALTY = 1.0


@dataclass(frozen=True)
class Limits:
    max_items: int
    max_text_bytes: int


@dataclass(frozen=True)
class Plan:
    """A checked request: its kind's name, the weight of each component used, and its items."""

    kind: str
    weights: dict[str, float]
    questions: list[str]
    responses: list[str]
    references: list[str]
    format_penalty: float


def plan_request(request: reward_pb2.RewardRequest, limits: Limits) -> Plan:
    """Validates a whole Score request; RequestError (INVALID_ARGUMENT / RESOURCE_EXHAUSTED) names
    the first problem. Model availability is checked by the service."""
    items = list(request.items)
    require(len(items) > 0, "request has no items; send at least one (question, response, reference)")
    check_count(len(items), limits.max_items, "items", "max-items")
    kind = request.kind
    if kind not in _KIND_NAMES:
        raise RequestError.invalid(
            f"unknown reward kind {kind}; use REWARD_RULE, REWARD_ORM, REWARD_PRM or REWARD_MIX"
        )
    if kind == reward_pb2.REWARD_MIX:
        weights = dict(request.weights)
        unknown = sorted(set(weights) - set(COMPONENTS))
        require(not unknown, f"unknown mix weights {unknown}; components are {', '.join(COMPONENTS)}")
        for name, value in weights.items():
            require(math.isfinite(value), f"mix weight {name!r} is {value}; weights must be finite numbers")
        weights = {name: value for name, value in weights.items() if value != 0}
        require(bool(weights), "REWARD_MIX needs at least one non-zero weight among rule, orm, prm")
    else:
        require(not request.weights, f"weights are only for REWARD_MIX, not {_KIND_NAMES[kind]}")
        weights = {_SINGLE[kind]: 1.0}
    penalty = request.format_penalty
    require(
        math.isfinite(penalty) and 0 <= penalty <= MAX_FORMAT_PENALTY,
        f"format_penalty is {penalty}; it must be between 0 and {MAX_FORMAT_PENALTY}",
    )
    for i, item in enumerate(items):
        for field_name, text in (
            ("question", item.question),
            ("response", item.response),
            ("reference", item.reference),
        ):
            if len(text) * 4 > limits.max_text_bytes:  # only long texts need encoding to be measured
                check_bytes(
                    i,
                    len(text.encode("utf-8")),
                    limits.max_text_bytes,
                    f"{field_name} of item",
                    "max-text-bytes",
                )
        if "rule" in weights:
            require(
                bool(item.reference.strip()),
                f"item {i} has no reference answer; the rule reward compares against one",
            )
    return Plan(
        _KIND_NAMES[kind],
        weights,
        [it.question for it in items],
        [it.response for it in items],
        [it.reference for it in items],
        penalty,
    )


def combine(
    plan: Plan,
    rule: list[RuleScore] | None,
    orm: list[list[float]] | None,
    prm: list[list[float]] | None,
    prm_steps: list[list[StepSpan]] | None,
) -> list[reward_pb2.RewardResult]:
    """One RewardResult per item: the weighted scalar, the PRM steps and the rule's verdict."""
    results = []
    for i in range(len(plan.responses)):
        result = reward_pb2.RewardResult()
        total = 0.0
        if rule is not None:
            total += plan.weights["rule"] * rule[i].reward
            result.correct = rule[i].correct
            result.extracted_answer = rule[i].extracted_answer
        if orm is not None:
            total += plan.weights["orm"] * orm[i][0]
        if prm is not None and prm_steps is not None:
            scores = prm[i]
            total += plan.weights["prm"] * (sum(scores) / len(scores) if scores else 0.0)
            for score, span in zip(scores, prm_steps[i], strict=True):
                result.steps.add(
                    reward=score,
                    token_start=span.token_start,
                    token_end=span.token_end,
                    char_start=span.char_start,
                    char_end=span.char_end,
                )
        result.reward = total
        results.append(result)
    return results
