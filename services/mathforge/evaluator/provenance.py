"""What produced an evaluation's answers, for its report: the model (directory, a digest of its weight
files, the weights version the sampler served), and the code (mathforge's version and, when run from
a git checkout, the commit). Also `local_sampler`, the in-process sampler `eval run --model DIR`
starts when no --sampler address is given."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mathforge

PACKAGE_DIR = Path(mathforge.__file__).resolve().parent


def weights_digest(model_dir: str | Path) -> str:
    """SHA-256 over the directory's weight files (name and content, in name order): the same weights
    give the same digest wherever they are copied. Raises ValueError when there are none."""
    directory = Path(model_dir)
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("*.bin"))
    if not files:
        raise ValueError(f"{directory}: no *.safetensors or *.bin weight files (is it a model directory?)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def code_version() -> dict[str, Any]:
    """mathforge's version, plus the git commit (and whether the tree has uncommitted changes) when
    the package runs from a git checkout; `git_commit` is null otherwise (an installed wheel)."""
    version: dict[str, Any] = {"mathforge": mathforge.__version__, "git_commit": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return version
    version["git_commit"] = commit
    version["git_dirty"] = bool(status.strip())
    return version


def sampler_model(info: Any) -> dict[str, Any]:
    """The model fields of a sampler's ServiceInfo: what it serves and at which weights version."""
    return {
        "served_model": info.model,
        "weights_version": int(info.model_version),  # serving now, after the run
        "random_weights": bool(info.random_weights),
        "backend": info.backend,
        "sampler_software_version": info.software_version,
    }


@contextmanager
def local_sampler(model_dir: str, device: str, dtype: str, max_new_tokens: int) -> Iterator[str]:
    """Serves `model_dir` with the sampler service on a free loopback port in this process; yields
    its address and stops it on exit. Raises ConfigError when the checkpoint cannot be loaded."""
    from mathforge.runtime.server import ServerThread
    from mathforge.sampler.service import Config, create_service

    config = Config.from_mapping(
        {
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": -1,
            "auth": "local",
            "reflection": False,
            "model_path": model_dir,
            "device": device,
            "dtype": dtype,
            "max_new_tokens": max(max_new_tokens, 1),
            "grace_s": 1.0,
        }
    )
    with ServerThread(create_service(config)) as server:
        yield server.target
