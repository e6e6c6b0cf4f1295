"""A JSON schema for monitoring.coreos.com/v1 PrometheusRule.

No installable package ships the Prometheus Operator's CRD schemas for Python, so this one is
written from the operator's API reference (PrometheusRuleSpec, RuleGroup, Rule): every field those
types define at their documented types, nothing else (a misspelt field fails), the required ones
required, durations in Prometheus's duration syntax, and a rule being either an alert or a
recording rule.
"""

from __future__ import annotations

DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {"type": "string", "pattern": DURATION, "minLength": 1}

RULE = {
    "type": "object",
    "required": ["expr"],
    "additionalProperties": False,
    "properties": {
        "record": {"type": "string", "minLength": 1},
        "alert": {"type": "string", "minLength": 1},
        # IntOrString in the CRD: PromQL text, or a number.
        "expr": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
}

RULE_GROUP = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "labels": STRING_MAP,
        "interval": _DURATION,
        "query_offset": _DURATION,
        "limit": {"type": "integer", "minimum": 0},
        "partial_response_strategy": {
            "type": "string",
            "pattern": "^([Aa][Bb][Oo][Rr][Tt]|[Ww][Aa][Rr][Nn])?$",
        },
        "rules": {"type": "array", "items": RULE},
    },
}


def operator_object_schema(kind: str, spec: dict) -> dict:
    """A Prometheus Operator object (monitoring.coreos.com/v1) of `kind` with the given spec schema:
    the envelope every such CRD shares (apiVersion, kind, metadata with a DNS-1123 name)."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {
                        "type": "string",
                        "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                        "maxLength": 253,
                    },
                    "namespace": {"type": "string"},
                    "labels": STRING_MAP,
                    "annotations": STRING_MAP,
                },
            },
            "spec": spec,
        },
    }


PROMETHEUS_RULE_SCHEMA = operator_object_schema(
    "PrometheusRule",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {"groups": {"type": "array", "items": RULE_GROUP}},
    },
)
