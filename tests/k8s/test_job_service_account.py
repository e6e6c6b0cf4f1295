"""Training pods carry a Kubernetes API token only when a job names its ServiceAccount (the chart's
trainerRbac account, for iterative RL's reward-model job), on both job APIs."""

from __future__ import annotations

import pytest
import yaml
from mathforge.cli import main as mathforge_main


def _pod_specs(capsys, *overrides: str, api: str) -> list[dict]:
    argv = ["submit", "grpo", "--config", "configs/paper-7b/grpo.yaml", "--api", api, *overrides, "--dry-run"]
    assert mathforge_main(argv) == 0
    specs = []
    for doc in yaml.safe_load_all(capsys.readouterr().out):
        if not doc:
            continue
        if doc["kind"] == "PyTorchJob":
            specs += [r["template"]["spec"] for r in doc["spec"]["pytorchReplicaSpecs"].values()]
        elif doc["kind"] == "ClusterTrainingRuntime":
            jobs = doc["spec"]["template"]["spec"]["replicatedJobs"]
            specs += [j["template"]["spec"]["template"]["spec"] for j in jobs]
    assert specs
    return specs


@pytest.mark.parametrize("api", ["pytorchjob", "trainjob"])
def test_no_api_token_unless_a_service_account_is_named(capsys, api):
    for spec in _pod_specs(capsys, api=api):
        assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    for spec in _pod_specs(capsys, "job.service_account=mathforge-trainer", api=api):
        assert spec["serviceAccountName"] == "mathforge-trainer"
        assert spec["automountServiceAccountToken"] is True
