"""GradingPolicy <-> its proto message (mathforge.v1.GradingPolicy), field by field.

The mapping follows the dataclass's fields by name, so a policy setting the proto lacks fails
`check_message_covers_policy` (run by the tests) rather than silently reaching gRPC callers as its
default. An unset field keeps the base policy's value: a field with presence (proto3 `optional`)
is unset when absent, any other when it holds its zero value ("" or 0), which no setting accepts.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from typing import Any

from mathforge.evaluator.policy import DEFAULT_POLICY, GradingPolicy
from mathforge.runtime.errors import RequestError
from mathforge.v1 import evaluator_pb2

_FIELDS = evaluator_pb2.GradingPolicy.DESCRIPTOR.fields_by_name


def check_message_covers_policy() -> None:
    """ValueError naming every policy setting the proto message cannot carry."""
    missing = [f.name for f in fields(GradingPolicy) if f.name not in _FIELDS]
    if missing:
        raise ValueError(f"mathforge.v1.GradingPolicy lacks the policy settings {missing}")


def _is_set(message: evaluator_pb2.GradingPolicy, name: str) -> bool:
    if _FIELDS[name].has_presence:
        return message.HasField(name)
    return bool(getattr(message, name))


def policy_from_message(
    message: evaluator_pb2.GradingPolicy, base: GradingPolicy = DEFAULT_POLICY
) -> GradingPolicy:
    """`base` with the message's set fields; INVALID_ARGUMENT naming a bad field."""
    changes: dict[str, Any] = {
        f.name: getattr(message, f.name) for f in fields(GradingPolicy) if _is_set(message, f.name)
    }
    if not changes:
        return base
    try:
        return replace(base, **changes)
    except ValueError as exc:
        raise RequestError.invalid(f"policy: {exc}") from None


def policy_to_message(policy: GradingPolicy) -> evaluator_pb2.GradingPolicy:
    """Every field of the policy set explicitly, so the receiver's defaults cannot change it."""
    return evaluator_pb2.GradingPolicy(**asdict(policy))
