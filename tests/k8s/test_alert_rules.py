"""The chart's alerts evaluated by Prometheus's own rule engine (`promtool`, Debian package
prometheus): the rules parse, each alert fires on the series of the failure it names, and none
fires on a healthy run. Skipped where promtool is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.test_chart import NAMESPACE, render

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian: prometheus) not installed")
ON = {"monitoring": {"prometheusRule": {"enabled": True}}}
SAMPLER = f'namespace="{NAMESPACE}", service="mathforge-sampler", job="sampler", pod="mathforge-sampler-0"'
CLASSIFIER = f'namespace="{NAMESPACE}", service="mathforge-classifier", job="classifier", method="/Score"'
GRPO = 'job="mathforge-grpo", stage="grpo"'


def _histogram(labels: str, bucket_counts: dict[str, str]) -> list[dict[str, str]]:
    return [
        {"series": f'mathforge_rpc_latency_seconds_bucket{{{labels}, le="{le}"}}', "values": values}
        for le, values in bucket_counts.items()
    ]


def _requests(code: str, values: str) -> dict[str, str]:
    return {
        "series": f'mathforge_rpc_requests_total{{{SAMPLER}, method="/Generate", code="{code}"}}',
        "values": values,
    }


# Minute by minute (interval 1m): each failure, and beside it the healthy shape of the same series.
FAILING = [
    {"series": f"up{{{SAMPLER}}}", "values": "1 1 0x45"},
    _requests("OK", "0+60x45"),
    _requests("UNAVAILABLE", "0+20x45"),
    # Every classifier call between 1 s and 2.5 s: p99 about 2.5 s, over the 2 s threshold.
    *_histogram(CLASSIFIER, {"1": "0x45", "2.5": "0+100x45", "+Inf": "0+100x45"}),
    {"series": f"mathforge_train_step{{{GRPO}}}", "values": "1 2 3 3x45"},
    {"series": f"mathforge_train_weights_version{{{GRPO}}}", "values": "10x45"},
    {"series": f"mathforge_sampler_weights_version{{{SAMPLER}}}", "values": "5x45"},
]
HEALTHY = [
    {"series": f"up{{{SAMPLER}}}", "values": "1x45"},
    _requests("OK", "0+60x45"),
    _requests("INVALID_ARGUMENT", "0+1x45"),
    *_histogram(CLASSIFIER, {"0.1": "0+100x45", "1": "0+100x45", "2.5": "0+100x45", "+Inf": "0+100x45"}),
    {"series": f"mathforge_train_step{{{GRPO}}}", "values": "1+1x45"},
    {"series": f"mathforge_train_weights_version{{{GRPO}}}", "values": "1+1x45"},
    {"series": f"mathforge_sampler_weights_version{{{SAMPLER}}}", "values": "0+1x45"},
]
ALERTS = [
    "MathforgeServiceNotReady",
    "MathforgeHighErrorRatio",
    "MathforgeHighP99Latency",
    "MathforgeGrpoStepsStalled",
    "MathforgeSamplerVersionLagging",
]


def _groups() -> list[dict[str, Any]]:
    (rule,) = [o for o in render(ON) if o["kind"] == "PrometheusRule"]
    return rule["spec"]["groups"]


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory) -> Path:
    """The rules as Prometheus loads them, annotations included (promtool checks their templates)."""
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": _groups()}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def alerting_file(tmp_path_factory) -> Path:
    """The same rules without annotations, which promtool's alert tests would otherwise compare
    as text: these tests are about when an alert fires and with which labels."""
    groups = _groups()
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = tmp_path_factory.mktemp("alerting") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _test_rules(rules: Path, series: list[dict[str, str]], expected: list[dict[str, Any]]) -> str:
    spec = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": expected}],
    }
    path = rules.with_name(f"test-{len(list(rules.parent.iterdir()))}.yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    run = _promtool("test", "rules", str(path))
    return run.stdout + run.stderr if run.returncode else ""


def test_rules_parse_with_prometheus(rules_file: Path) -> None:
    run = _promtool("check", "rules", str(rules_file))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def test_each_alert_fires_on_its_failure(alerting_file: Path) -> None:
    fired = {
        "MathforgeServiceNotReady": [
            {
                # The alert keeps the `up` sample's own labels.
                "exp_labels": {"severity": "critical", **_labels(SAMPLER)},
            }
        ],
        "MathforgeHighErrorRatio": [
            {"exp_labels": {"severity": "warning", "namespace": NAMESPACE, "job": "sampler"}}
        ],
        "MathforgeHighP99Latency": [
            {
                "exp_labels": {
                    "severity": "warning",
                    "namespace": NAMESPACE,
                    "job": "classifier",
                    "method": "/Score",
                    "component": "classifier",
                }
            }
        ],
        "MathforgeGrpoStepsStalled": [{"exp_labels": {"severity": "warning", **_labels(GRPO)}}],
        "MathforgeSamplerVersionLagging": [{"exp_labels": {"severity": "warning"}}],
    }
    expected = [{"eval_time": "40m", "alertname": name, "exp_alerts": fired[name]} for name in ALERTS]
    failures = _test_rules(alerting_file, FAILING, expected)
    assert not failures, failures


def test_no_alert_fires_on_a_healthy_run(alerting_file: Path) -> None:
    expected = [{"eval_time": "40m", "alertname": name, "exp_alerts": []} for name in ALERTS]
    failures = _test_rules(alerting_file, HEALTHY, expected)
    assert not failures, failures


def test_the_rule_test_fails_when_an_alert_is_expected_but_silent(alerting_file: Path) -> None:
    """The harness itself can fail: a healthy run does not raise the stalled-steps alert."""
    expected = [
        {"eval_time": "40m", "alertname": "MathforgeGrpoStepsStalled", "exp_alerts": [{"exp_labels": {}}]}
    ]
    assert "MathforgeGrpoStepsStalled" in _test_rules(alerting_file, HEALTHY, expected)


def _labels(selector: str) -> dict[str, str]:
    return dict(
        (key.strip(), value.strip().strip('"'))
        for key, value in (pair.split("=", 1) for pair in selector.split(","))
    )
