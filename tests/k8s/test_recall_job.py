"""The recall map Jobs: the manifest in k8s/data is what `--executor k8s` builds, valid for
Kubernetes 1.30 (strict); `--dry-run` prints one valid Indexed Job per phase of round 1, whose pods
run the real worker command on their own shard."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from mathforge.classifier.recall_executor import K8sSettings, build_job
from mathforge.classifier.web import generate_web
from mathforge.cli import build_parser, main

MANIFEST = Path(__file__).resolve().parents[2] / "k8s" / "data" / "recall-map-indexed-job.yaml"


@pytest.fixture(scope="module")
def job() -> dict:
    (document,) = list(yaml.safe_load_all(MANIFEST.read_text()))
    return document


def test_manifest_is_what_the_executor_builds(job) -> None:
    assert job == build_job(Path("/data/runs/recall/round-1/score"), 16, K8sSettings())


def test_manifest_is_valid_for_kubernetes_1_30_strict(job) -> None:
    kubernetes_validate.validate(job, "1.30.0", strict=True)
    broken = copy.deepcopy(job)
    broken["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("volume")
    generate_web(root / "web", 600, seed=0, shard_pages=100)
    return root


def test_dry_run_prints_one_strictly_valid_indexed_job_per_phase(mount: Path, capsys) -> None:
    out = mount / "runs" / "r"
    argv = ["data", "recall", "--web", str(mount / "web"), "--out", str(out), "--executor", "k8s"]
    assert main([*argv, "--dry-run", "--k8s-mount", str(mount), "--parallelism", "4"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"].rsplit("-", 1)[1] for d in documents] == ["sample", "score", "grow"]
    assert not out.exists(), "a dry run writes nothing"
    for document in documents:
        kubernetes_validate.validate(document, "1.30.0", strict=True)
        spec = document["spec"]
        assert spec["completionMode"] == "Indexed" and spec["completions"] == 6 and spec["parallelism"] == 4
        (container,) = spec["template"]["spec"]["containers"]
        assert (
            spec["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "mathforge-corpus"
        )
        assert container["volumeMounts"][0]["mountPath"] == str(mount)
        for index in (0, 5):
            args = [a.replace("$(JOB_COMPLETION_INDEX)", str(index)) for a in container["args"]]
            parsed, rest = build_parser().parse_known_args([*container["command"][1:], *args])
            assert not rest and parsed.handler.__name__ == "_recall_map" and parsed.index == index
            assert parsed.task.parent.parent == out.resolve() / "round-1"


def test_dry_run_refuses_paths_the_pods_cannot_see(mount: Path, capsys) -> None:
    argv = ["data", "recall", "--web", str(mount / "web"), "--out", str(mount / "r"), "--executor", "k8s"]
    assert main([*argv, "--dry-run", "--k8s-mount", "/data"]) == 2
    assert "not under /data" in capsys.readouterr().err
