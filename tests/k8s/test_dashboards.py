"""The chart's Grafana dashboards and PrometheusRule: valid Grafana JSON shipped in ConfigMaps the
Grafana sidecar loads (only when asked), a PrometheusRule valid against the operator's CRD fields,
and every metric any query or alert names really exported: by the five services running on
loopback after real calls (scraped from their /metrics) or by a GRPO trainer's push to a
Pushgateway endpoint during a real one-step run against those services."""

from __future__ import annotations

import copy
import http.server
import importlib.util
import json
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import kubernetes_validate
import pytest
from mathforge.models.checkpoint import save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.runtime.server import ServerThread

from tests.k8s.monitoring import exported_names, promql_metric_names
from tests.k8s.prometheusrule_schema import PROMETHEUS_RULE_SCHEMA
from tests.k8s.test_chart import CHART, KUBE_VERSION, NAMESPACE, render

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
ON = {"monitoring": {"dashboards": {"enabled": True}, "prometheusRule": {"enabled": True}}}
# Series Prometheus makes itself for every scrape target: the not-ready alert reads it.
PROMETHEUS_SERIES = {"up"}
GRPO_JOB = "mathforge-grpo"


def _grpc_check() -> Any:
    """The chart's helm-test script (files/grpc_check.py): one real call per service."""
    spec = importlib.util.spec_from_file_location("grpc_check", CHART / "files" / "grpc_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    tokenizer = default_tokenizer()
    model = build_model(
        "tiny",
        vocab_size=len(tokenizer),
        seed=5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return save_model(model, tokenizer, tmp_path_factory.mktemp("policy") / "sft")


@pytest.fixture(scope="module")
def services(policy_dir, tmp_path_factory) -> Iterator[dict[str, ServerThread]]:
    """The five services, each with its /metrics on an ephemeral loopback port, after one real call."""
    from mathforge.classifier.service import Config as ClassifierConfig
    from mathforge.classifier.service import create_service as classifier
    from mathforge.dedup.config import Config as DedupConfig
    from mathforge.dedup.service import create_service as dedup
    from mathforge.evaluator.service import Config as EvaluatorConfig
    from mathforge.evaluator.service import create_service as evaluator
    from mathforge.reward.service import Config as RewardConfig
    from mathforge.reward.service import create_service as reward
    from mathforge.sampler.service import Config as SamplerConfig
    from mathforge.sampler.service import create_service as sampler

    scratch = tmp_path_factory.mktemp("services")
    common = {"port": 0, "metrics_port": 0}
    built = {
        "classifier": classifier(ClassifierConfig(**common, builtin_model_dir=str(scratch / "classifier"))),
        "dedup": dedup(DedupConfig(**common, store_path=str(scratch / "dedup"))),
        "reward": reward(RewardConfig(**common, random_model_preset="tiny", grade_threads=1)),
        "sampler": sampler(SamplerConfig(**common, model_path=str(policy_dir), max_new_tokens=16)),
        "evaluator": evaluator(EvaluatorConfig(**common, grade_threads=1, symbolic_workers=1)),
    }
    check = _grpc_check()
    running: dict[str, ServerThread] = {}
    try:
        for name, service in built.items():
            running[name] = ServerThread(service).start()
            _, call = check.CALLS[name]
            with grpc.insecure_channel(running[name].target) as channel:
                grpc.channel_ready_future(channel).result(timeout=60)
                call(channel, 60.0)
        yield running
    finally:
        for server in running.values():
            server.stop()


@pytest.fixture(scope="module")
def service_metrics(services) -> set[str]:
    names: set[str] = set()
    for server in services.values():
        names |= exported_names(_scrape(server.metrics_port))
    return names


class _Pushgateway(http.server.BaseHTTPRequestHandler):
    """Takes pushes the way the Pushgateway does (PUT/POST of a text exposition) and keeps them."""

    pushes: list[tuple[str, str]] = []

    def _take(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        _Pushgateway.pushes.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    do_PUT = do_POST = _take

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def trainer_metrics(services, policy_dir, tmp_path_factory) -> set[str]:
    """The names a real GRPO step pushes: one step of the tiny recipe against the services above."""
    gateway = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pushgateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        command = [
            sys.executable,
            "-m",
            "mathforge.training.grpo",
            "--config",
            "configs/tiny/grpo.yaml",
            f"model.init_from={policy_dir}",
            f"out_dir={tmp_path_factory.mktemp('grpo')}",
            "batch.steps=1",
            f"services.sampler={services['sampler'].target}",
            f"services.reward={services['reward'].target}",
            "rollout.questions_per_step=2",
            "rollout.group_size=2",
            "rollout.max_new_tokens=4",
            "rollout.prompts_per_call=2",
            "batch.micro_batch_size=4",
            "task.synthetic_problems=20",
            "eval.every=0",
            "metrics.progress_bar=off",
            f"metrics.pushgateway=127.0.0.1:{gateway.server_port}",
            f"metrics.job_name={GRPO_JOB}",
        ]
        env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": ""}
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        gateway.shutdown()
        gateway.server_close()
    assert _Pushgateway.pushes, "the trainer pushed nothing"
    path, body = _Pushgateway.pushes[-1]
    assert path == f"/metrics/job/{GRPO_JOB}/stage/grpo"
    return exported_names(body)


def _dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return queries


def _rules(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


# ---- the dashboards ---------------------------------------------------------------------------
def check_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    """The structure Grafana's dashboard JSON model requires of a provisioned dashboard: identity
    and schema version, unique panel ids, panels on the 24-column grid without overlap, each
    query panel reading the datasource variable, and no query naming an undefined variable."""
    assert {"uid", "title", "schemaVersion", "panels", "templating", "time"} <= dashboard.keys()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in {"row", "timeseries", "stat"}
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "hwxy") and grid["x"] + grid["w"] <= 24
        taken = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        cells |= taken
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs)), panel["title"]
    for query in _dashboard_queries(dashboard):
        for name in re.findall(r"\$\{?(\w+)", query):
            assert name.startswith("__") or name in variables, f"${name} is not a variable: {query}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_grafana_json(path: Path) -> None:
    check_grafana_dashboard(json.loads(path.read_text()))


def test_dashboard_check_catches_an_undefined_variable_and_an_overlap() -> None:
    dashboard = json.loads((CHART / "dashboards" / "services.json").read_text())
    broken = copy.deepcopy(dashboard)
    broken["panels"][1]["targets"][0]["expr"] += ' + on() vector(0) * count(up{pod="$pods"})'
    with pytest.raises(AssertionError, match=r"\$pods is not a variable"):
        check_grafana_dashboard(broken)
    overlapping = copy.deepcopy(dashboard)
    overlapping["panels"][2]["gridPos"] = dict(overlapping["panels"][1]["gridPos"])
    with pytest.raises(AssertionError, match="overlaps"):
        check_grafana_dashboard(overlapping)


def test_dashboards_ship_only_when_asked_in_configmaps_for_the_grafana_sidecar() -> None:
    assert not [o for o in render() if o["metadata"]["name"].startswith("mathforge-dashboard")]
    assert not [o for o in render() if o["kind"] == "PrometheusRule"]
    maps = {
        o["metadata"]["name"]: o
        for o in render(ON)
        if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"
    }
    assert set(maps) == {f"mathforge-dashboard-{p.stem}" for p in DASHBOARDS}
    for path in DASHBOARDS:
        config_map = maps[f"mathforge-dashboard-{path.stem}"]
        kubernetes_validate.validate(config_map, KUBE_VERSION, strict=True)
        (text,) = config_map["data"].values()
        assert json.loads(text) == json.loads(path.read_text())
    elsewhere = render(
        {
            "monitoring": {
                "dashboards": {"enabled": True, "namespace": "monitoring", "annotations": {"f": "x"}}
            }
        }
    )
    placed = [o for o in elsewhere if o["metadata"]["name"].startswith("mathforge-dashboard")]
    assert {(o["metadata"]["namespace"], o["metadata"]["annotations"]["f"]) for o in placed} == {
        ("monitoring", "x")
    }


@pytest.mark.slow
def test_every_dashboard_query_names_a_metric_the_code_exports(service_metrics, trainer_metrics) -> None:
    exported = service_metrics | trainer_metrics
    for path in DASHBOARDS:
        for query in _dashboard_queries(json.loads(path.read_text())):
            names = promql_metric_names(query)
            assert names, f"{path.name}: no metric in {query}"
            missing = names - exported
            assert not missing, f"{path.name}: {sorted(missing)} exported by no service or trainer: {query}"


@pytest.mark.slow
def test_live_scrapes_hold_the_metric_families_the_dashboards_are_built_on(
    service_metrics, trainer_metrics
) -> None:
    """The check above is only as good as the scrape: it holds the RPC metrics with real calls and
    the trainer's GRPO step numbers, and a misspelt name would not be in it."""
    assert {"mathforge_rpc_requests_total", "mathforge_rpc_latency_seconds_bucket"} <= service_metrics
    assert {"mathforge_train_reward_mean", "mathforge_train_kl", "mathforge_train_step"} <= trainer_metrics
    assert not promql_metric_names("rate(mathforge_rpc_request_total[5m])") <= service_metrics


# ---- the PrometheusRule -----------------------------------------------------------------------
def _rendered_rule(values: dict[str, Any] = ON) -> dict[str, Any]:
    (rule,) = [o for o in render(values) if o["kind"] == "PrometheusRule"]
    return rule


def test_prometheus_rule_validates_against_the_crd_schema() -> None:
    rule = _rendered_rule()
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    alerts = {r["alert"] for r in _rules(rule)}
    assert alerts == {
        "MathforgeServiceNotReady",
        "MathforgeHighErrorRatio",
        "MathforgeHighP99Latency",
        "MathforgeGrpoStepsStalled",
        "MathforgeSamplerVersionLagging",
    }
    assert rule["metadata"]["namespace"] == NAMESPACE


def test_prometheus_rule_schema_catches_a_misspelt_field_and_a_bad_duration() -> None:
    rule = _rendered_rule()
    misspelt = copy.deepcopy(rule)
    first = misspelt["spec"]["groups"][0]["rules"][0]
    first["expression"] = first.pop("expr")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(misspelt, PROMETHEUS_RULE_SCHEMA)
    bad_for = copy.deepcopy(rule)
    bad_for["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_for, PROMETHEUS_RULE_SCHEMA)


def test_alert_thresholds_and_selectors_follow_the_values() -> None:
    values = copy.deepcopy(ON)
    values["monitoring"]["prometheusRule"].update(
        errorRatio=0.2, samplerVersionLag=5, grpoJob="team-grpo", grpoStalledAfter="1h"
    )
    values["services"] = {"classifier": {"enabled": False}}
    rules = {r["alert"]: r for r in _rules(_rendered_rule(values))}
    assert rules["MathforgeHighErrorRatio"]["expr"].rstrip().endswith("> 0.2")
    assert rules["MathforgeSamplerVersionLagging"]["expr"].rstrip().endswith("> 5")
    assert 'job="team-grpo"' in rules["MathforgeGrpoStepsStalled"]["expr"]
    assert "[1h]" in rules["MathforgeGrpoStepsStalled"]["expr"]
    assert "classifier" not in rules["MathforgeServiceNotReady"]["expr"]
    latency = [r for r in _rules(_rendered_rule(values)) if r["alert"] == "MathforgeHighP99Latency"]
    assert len(latency) == 4  # one per enabled service, each with its own threshold


@pytest.mark.slow
def test_every_alert_names_a_metric_the_code_exports(service_metrics, trainer_metrics) -> None:
    exported = service_metrics | trainer_metrics | PROMETHEUS_SERIES
    for rule in _rules(_rendered_rule()):
        names = promql_metric_names(rule["expr"])
        assert names and not names - exported, f"{rule['alert']}: {sorted(names - exported)}"
