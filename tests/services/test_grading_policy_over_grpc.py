"""Every grading policy setting reaches the grader over gRPC: the evaluator's Grade and GradeBatch and
the reward service's rule reward, on real servers on loopback. For each setting a pair whose verdict
flips with it gives both verdicts; an unset field keeps the default (the evaluator's, or the reward
server's --grading-policy); a bad value is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import grpc
import pytest
from mathforge.evaluator.policy import DEFAULT_POLICY, GradingPolicy
from mathforge.evaluator.policy_message import (
    check_message_covers_policy,
    policy_from_message,
    policy_to_message,
)
from mathforge.evaluator.service import Config as EvaluatorConfig
from mathforge.evaluator.service import create_service as create_evaluator
from mathforge.reward.service import Config as RewardConfig
from mathforge.reward.service import create_service as create_reward
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.evaluator import EvaluatorClient, policy_message
from mathforge.runtime.clients.reward import RewardClient
from mathforge.runtime.errors import RequestError
from mathforge.runtime.server import ServerThread
from mathforge.v1 import evaluator_pb2

# setting -> (prediction, gold, value under which they are equivalent, value under which they are not).
FLIPS: dict[str, tuple[str, str, Any, Any]] = {
    "decimal_comma": ("2,5", "2.5", "auto", "never"),
    "rounded_decimals": ("0.3333", "\\frac{1}{3}", "match", "exact"),
    "percent": ("50%", "50", "strip", "strict"),
    "units": ("5 cm", "5", "strip", "keep"),
    "tuples": ("(2, 1)", "(1, 2)", "unordered", "ordered"),
    "box": ("\\boxed{1} and then \\boxed{2}", "2", "last", "first"),
    "last_number_fallback": ("so it comes to 7", "7", True, False),
    # 0 is a real setting (exact numbers only), which is why rel_tol has presence in the proto.
    "rel_tol": ("1.0000001", "1", 1e-6, 0.0),
    "format": ("\\boxed{3}\n#### 4", "4", "gsm8k", "boxed"),
}
# timeout_s decides only how long a symbolic check may run; BAD shows the server reads it.
BAD = [
    ("decimal_comma", "sometimes"),
    ("rounded_decimals", "round"),
    ("percent", "half"),
    ("units", "drop"),
    ("tuples", "sorted"),
    ("box", "middle"),
    ("format", "latex"),
    ("rel_tol", math.nan),
    ("rel_tol", 2.0),
    ("timeout_s", 120.0),
    ("timeout_s", -1.0),
]


@pytest.fixture(scope="module")
def evaluator() -> Iterator[EvaluatorClient]:
    config = EvaluatorConfig(port=0, metrics_port=-1, auth="local", grade_threads=2, symbolic_workers=1)
    with (
        ServerThread(create_evaluator(config)) as server,
        EvaluatorClient(server.target, timeout_s=60, retry=NO_RETRY) as client,
    ):
        client.wait_ready(60)
        yield client


@pytest.fixture(scope="module")
def reward() -> Iterator[RewardClient]:
    # The server's own policy differs from the default in decimal_comma, so a request that leaves it
    # unset shows whose value it keeps.
    config = RewardConfig(
        port=0,
        metrics_port=-1,
        auth="local",
        grade_threads=2,
        symbolic_workers=1,
        grading_policy=json.dumps({"decimal_comma": "never"}),
    )
    with (
        ServerThread(create_reward(config)) as server,
        RewardClient(server.target, timeout_s=60, retry=NO_RETRY) as client,
    ):
        yield client


def _refusal(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_the_proto_carries_every_policy_setting_both_ways() -> None:
    check_message_covers_policy()
    assert set(FLIPS) | {"timeout_s"} == {f.name for f in fields(GradingPolicy)}
    custom = GradingPolicy(
        percent="fraction",
        units="keep",
        tuples="unordered",
        box="all",
        decimal_comma="never",
        rounded_decimals="exact",
        last_number_fallback=False,
        rel_tol=0.0,
        timeout_s=0.5,
        format="boxed",
    )
    for policy in (DEFAULT_POLICY, custom):
        wire = evaluator_pb2.GradingPolicy.FromString(policy_to_message(policy).SerializeToString())
        assert policy_from_message(wire) == policy
        # Fully set, the message wins over any base.
        other = custom if policy is DEFAULT_POLICY else DEFAULT_POLICY
        assert policy_from_message(wire, base=other) == policy
    assert policy_from_message(evaluator_pb2.GradingPolicy(), base=custom) is custom
    with pytest.raises(RequestError) as info:
        policy_from_message(evaluator_pb2.GradingPolicy(rounded_decimals="round"))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "rounded_decimals" in info.value.message


@pytest.mark.parametrize("setting", list(FLIPS))
def test_each_setting_flips_grade_and_grade_batch(evaluator: EvaluatorClient, setting: str) -> None:
    prediction, gold, yes, no = FLIPS[setting]
    assert evaluator.grade(prediction, gold, {setting: yes}).equivalent
    assert not evaluator.grade(prediction, gold, {setting: no}).equivalent
    # GradeBatch takes a policy per item: the two verdicts come back side by side.
    batch = evaluator_pb2.GradeBatchRequest(
        items=[
            evaluator_pb2.GradeRequest(prediction=prediction, gold=gold, policy=policy_message({setting: v}))
            for v in (yes, no)
        ]
    )
    reply = evaluator.call("GradeBatch", batch)
    assert [r.equivalent for r in reply.results] == [True, False]


@pytest.mark.parametrize("setting", list(FLIPS))
def test_each_setting_flips_the_rule_reward(reward: RewardClient, setting: str) -> None:
    prediction, gold, yes, no = FLIPS[setting]
    assert reward.rule([prediction], [gold], policy={setting: yes}) == [1.0]
    assert reward.rule([prediction], [gold], policy={setting: no}) == [0.0]


def test_unset_fields_keep_the_default(evaluator: EvaluatorClient, reward: RewardClient) -> None:
    # The evaluator's default reads a decimal comma and matches rounded decimals ...
    assert evaluator.grade("2,5", "2.5").equivalent
    assert evaluator.grade("2,5", "2.5", {"rounded_decimals": "exact"}).equivalent
    assert evaluator.grade("0.3333", "\\frac{1}{3}", {"decimal_comma": "never"}).equivalent
    assert evaluator.grade("1.0000001", "1", {"box": "last"}).equivalent  # rel_tol stays 1e-6
    # ... while the reward server was started with decimal_comma "never": a request that sets only
    # another field keeps the server's value, and the other defaults stay too.
    assert reward.rule(["2,5", "0.3333"], ["2.5", "\\frac{1}{3}"]) == [0.0, 1.0]
    assert reward.rule(["2,5", "0.3333"], ["2.5", "\\frac{1}{3}"], policy={"units": "keep"}) == [0.0, 1.0]
    assert reward.rule(["2,5"], ["2.5"], policy={"decimal_comma": "auto"}) == [1.0]


@pytest.mark.parametrize(("setting", "value"), BAD)
def test_a_bad_value_is_invalid_argument_naming_the_field(
    evaluator: EvaluatorClient, reward: RewardClient, setting: str, value: Any
) -> None:
    for call in (
        lambda: evaluator.grade("1", "1", {setting: value}),
        lambda: reward.rule(["\\boxed{1}"], ["1"], policy={setting: value}),
    ):
        code, details = _refusal(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert setting in details, details
