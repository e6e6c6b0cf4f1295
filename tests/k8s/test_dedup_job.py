"""The dedup Indexed Job manifest: valid for Kubernetes 1.30 (strict), runs `mathforge data dedup`
against the shared Redis, and its command line parses with the real CLI."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from mathforge.cli import build_parser
from mathforge.dedup.config import Config

MANIFEST = Path(__file__).resolve().parents[2] / "k8s" / "data" / "dedup-indexed-job.yaml"


@pytest.fixture(scope="module")
def job() -> dict:
    (document,) = list(yaml.safe_load_all(MANIFEST.read_text()))
    return document


def test_job_is_valid_for_kubernetes_1_30_strict(job):
    kubernetes_validate.validate(job, "1.30.0", strict=True)


def test_job_is_indexed_with_one_shard_slice_per_completion(job):
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["mathforge", "data", "dedup"]
    assert f"--shard-count={spec['completions']}" in container["args"]


def test_job_targets_the_shared_redis_with_a_valid_config(job):
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MATHFORGE_STORE"] == "redis" and env["MATHFORGE_REDIS_URL"].startswith("redis://")
    config = Config.from_args([], env=env)
    assert (config.store, config.redis_prefix) == ("redis", "mathforge:dedup")
    args, rest = build_parser().parse_known_args([*container["command"][1:], *container["args"]])
    assert args.handler.__name__ == "dedup_command" and args.shard_count == job["spec"]["completions"]
    assert args.benchmarks == ["/data/benchmarks"]
    assert Config.from_args(rest, env=env).store == "redis"


def test_pods_carry_the_labels_the_redis_network_policy_admits(job):
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "dedup"
    assert labels["app.kubernetes.io/name"] == "mathforge"
    security = job["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
