"""The chart's values schema covers every service's config fields: generated from the Config classes
(`python -m mathforge.runtime.schema`, `make schema`), so the committed file cannot drift from them,
and the real Helm engine refuses a mistyped key or a wrongly typed value under `config` before any
pod crash-loops on it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import helm_python
import pytest
from mathforge.runtime.config import ServiceConfig
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.schema import SCHEMA_PATH, generated_schema, main, render

CHART = Path(__file__).resolve().parents[2] / "helm" / "mathforge"


def test_committed_schema_is_the_generated_one():
    committed = SCHEMA_PATH.read_text()
    assert render(generated_schema(json.loads(committed))) == committed, (
        "run `make schema` (python -m mathforge.runtime.schema)"
    )
    assert main(["--check"]) == 0


def test_check_fails_when_a_field_is_missing_from_the_schema(tmp_path, capsys):
    schema = json.loads(SCHEMA_PATH.read_text())
    del schema["definitions"]["config-sampler"]["properties"]["max_new_tokens"]
    stale = tmp_path / "values.schema.json"
    stale.write_text(render(schema))
    assert main(["--check", "--schema", str(stale)]) == 1
    assert "python -m mathforge.runtime.schema" in capsys.readouterr().err
    assert main(["--schema", str(stale)]) == 0 and main(["--check", "--schema", str(stale)]) == 0


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_config_field_is_in_the_schema(name):
    schema = json.loads(SCHEMA_PATH.read_text())
    fields = {f.name for f in dataclasses.fields(SERVICES[name].load().Config)}
    assert set(schema["definitions"][f"config-{name}"]["properties"]) == fields
    common = {f.name for f in dataclasses.fields(ServiceConfig)}
    assert set(schema["definitions"]["config-common"]["properties"]) == common


@pytest.mark.parametrize(
    "bad",
    [
        {"services": {"sampler": {"config": {"max_new_token": 64}}}},  # typo
        {"services": {"evaluator": {"config": {"program_memory_bytes": "lots"}}}},
        {"services": {"dedup": {"config": {"admin_methods": "Reset"}}}},
        {"services": {"reward": {"config": {"reflection": "maybe"}}}},
        {"common": {"config": {"grace": 20}}},
        {"common": {"config": {"path_roots": {"model": "/checkpoints"}}}},
    ],
)
def test_helm_refuses_a_bad_service_config(bad):
    with helm_python.Chart.load(CHART) as chart, pytest.raises(helm_python.HelmValuesError) as caught:
        chart.validate_schema(bad)
    assert "config" in str(caught.value)


def test_helm_accepts_each_services_own_fields():
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(
            {
                "common": {"config": {"grace_s": 30, "log_level": "DEBUG"}},
                "services": {"sampler": {"config": {"max_new_tokens": 64}}},
            }
        )
