"""The scoring Indexed Job manifest: valid for Kubernetes 1.30 (strict), one shard slice per
completion index, and a command line the real CLI parses."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from mathforge.cli import build_parser
from mathforge.corpus import parse_shard_spec

MANIFEST = Path(__file__).resolve().parents[2] / "k8s" / "data" / "score-indexed-job.yaml"


@pytest.fixture(scope="module")
def job() -> dict:
    (document,) = list(yaml.safe_load_all(MANIFEST.read_text()))
    return document


def test_score_job_is_valid_for_kubernetes_1_30_strict(job) -> None:
    kubernetes_validate.validate(job, "1.30.0", strict=True)


def test_strict_validation_rejects_a_misspelt_field(job) -> None:
    broken = copy.deepcopy(job)
    broken["spec"]["completionsMode"] = broken["spec"].pop("completionMode")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def test_each_index_scores_its_own_slice_with_the_real_cli(job) -> None:
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    field = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    for index in (0, spec["completions"] - 1):
        argv = [a.replace("$(JOB_COMPLETION_INDEX)", str(index)) for a in container["args"]]
        args, rest = build_parser().parse_known_args([*container["command"][1:], *argv])
        assert not rest and args.handler.__name__ == "_score"
        assert parse_shard_spec(args.shard) == (index, spec["completions"])
        assert args.input == "/data/corpus" and str(args.model) == "/data/models/classifier.bin"


def test_score_pods_are_hardened(job) -> None:
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
    security = pod["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert pod["containers"][0]["resources"]["limits"]["cpu"] == "1"
