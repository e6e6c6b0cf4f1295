"""Saves and loads models atomically, and finds the latest training checkpoint of a run.

    save_model(model, tokenizer, "runs/sft/final")        # safetensors + config + tokenizer
    model, tokenizer = load_model("runs/sft/final")       # CheckpointError if missing or corrupt
    step_dir = latest_checkpoint("runs/sft")              # runs/sft/step-400, or None

A training checkpoint ends with a MANIFEST.json of every file's size and SHA-256, written last;
`verify_manifest` checks a directory against it before anything in it is used.

A directory is written under a temporary sibling name, fsynced, then renamed into place, so a
reader sees the old checkpoint or the whole new one, never half of one (when an existing
directory is replaced, a reader can find none for the instant between two renames; it gets a
CheckpointError and can retry). A training run's
checkpoints are `<out>/step-<n>/` with a `latest` file naming the newest; `latest` is replaced
last and atomically, so it only ever names a complete checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from mathforge.models.presets import parse_dtype

LATEST = "latest"
MANIFEST = "MANIFEST.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt or does not fit the model or tokenizer."""


def fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yields a temporary sibling of `target` to fill; on success it replaces `target` whole.

    On an exception the temporary directory is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        publish_directory(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def publish_directory(staging: Path, target: Path) -> None:
    """Renames a complete `staging` directory to `target`, replacing an older `target`."""
    if target.exists():
        # A directory cannot be replaced by rename in one step: move the old one aside first.
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, retired)
        os.rename(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, target)
    _fsync_dir(target.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Writes a small file under a temporary name, fsyncs it and renames it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_model_files(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    directory: Path,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """Writes weights (safetensors), config and tokenizer into an existing directory, non-atomically;
    `save_model` wraps it in an atomic rename."""
    model.save_pretrained(str(directory), state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    directory: str | Path,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Writes a loadable model directory (safetensors weights, config, tokenizer) atomically."""
    target = Path(directory)
    with atomic_directory(target) as staging:
        write_model_files(model, tokenizer, staging, state_dict)
    return target


def _check_weights(directory: Path) -> None:
    files = [directory / WEIGHTS]
    if not files[0].exists():
        files = sorted(directory.glob("model-*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory}: no {WEIGHTS} (is this a model checkpoint directory?)")
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                    handle.get_slice(name).get_shape()
        except Exception as exc:
            raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc
        size = path.stat().st_size
        if size == 0:
            raise CheckpointError(f"{path}: empty weights file")


def load_model(
    directory: str | Path, dtype: str | torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Loads a model and its tokenizer from a checkpoint directory, offline.

    Raises CheckpointError naming the problem when the directory is missing, a file is truncated or
    corrupt, or the tokenizer's vocabulary does not fit the model's embeddings.
    """
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory does not exist")
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: no config.json (is this a model checkpoint directory?)")
    _check_weights(path)
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable config or tokenizer ({exc})") from exc
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {len(tokenizer)} tokens but the model's vocabulary is {config.vocab_size}"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path),
            local_files_only=True,
            dtype=parse_dtype(dtype) or "auto",
        )
    except Exception as exc:
        raise CheckpointError(f"{path}: weights do not load into {config.architectures} ({exc})") from exc
    return model.to(device), tokenizer


# ---- training-state checkpoints ------------------------------------------------------------------
def step_dir_name(step: int) -> str:
    return f"step-{step}"


def write_latest(out_dir: str | Path, step: int) -> None:
    """Points `<out_dir>/latest` at step-<step>; call it only once that checkpoint is complete."""
    write_text_atomic(Path(out_dir) / LATEST, step_dir_name(step) + "\n")


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint directory `latest` names, or None when the run has none yet."""
    pointer = Path(out_dir) / LATEST
    if not pointer.exists():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    if not name.startswith("step-") or "/" in name:
        raise CheckpointError(f"{pointer}: does not name a step directory ({name!r})")
    step_dir = Path(out_dir) / name
    if not step_dir.is_dir():
        raise CheckpointError(f"{pointer} names {name}, which does not exist")
    return step_dir


def checkpoint_step(step_dir: str | Path) -> int:
    """The step number of a `step-<n>` directory."""
    return int(Path(step_dir).name.removeprefix("step-"))


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's generators (and CUDA's when present), as plain
    JSON values, so a checkpoint never needs unpickling to restore them."""
    version, internal, gauss = random.getstate()
    legacy = np.random.get_state(legacy=True)
    if not isinstance(legacy, tuple):  # numpy gives the dict form only for another bit generator
        raise TypeError(f"numpy's global generator is {legacy['bit_generator']}, not MT19937")
    name, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Puts back states taken by `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# ---- manifests -----------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_entries(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of the named files (paths relative to `directory`)."""
    return {
        name: {"size": (directory / name).stat().st_size, "sha256": file_sha256(directory / name)}
        for name in names
    }


def checkpoint_files(directory: Path) -> list[str]:
    """Every file under `directory` but the manifest, as sorted relative paths."""
    return sorted(
        str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST
    )


def write_manifest(directory: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Writes MANIFEST.json; call it after every other file of the checkpoint is complete."""
    write_text_atomic(directory / MANIFEST, json.dumps({"format": 1, "files": entries}, indent=1) + "\n")


def read_manifest(directory: Path) -> dict[str, dict[str, Any]]:
    """The manifest's {relative path: {size, sha256}}; CheckpointError if it is missing or unreadable."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != 1:
            raise ValueError(f"format {manifest.get('format')!r}, this version reads 1")
        files = manifest["files"]
        return {str(name): {"size": int(e["size"]), "sha256": str(e["sha256"])} for name, e in files.items()}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (the save did not finish)") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from exc


def verify_files(directory: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Checks the named files' sizes and checksums; CheckpointError naming the first bad file."""
    for name, expected in entries.items():
        path = directory / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise CheckpointError(f"{directory / MANIFEST}: names a file outside the checkpoint ({name!r})")
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in the manifest)")
        size = path.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(f"{path}: {size} bytes, the manifest says {expected['size']} (truncated?)")
        if file_sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{path}: checksum differs from the manifest (the file is damaged)")
