"""Resumable training checkpoints: written by all processes together, published atomically,
verified before use, and readable by any world size and engine.

    <out_dir>/step-<n>/
        model/              safetensors weights + config + tokenizer (loadable by models.load_model)
        train_state/        fp32 weights, AdamW moments, step count, LRs and schedule, per parameter
                            name (train_state.py: the same files from DDP, ZeRO-2 and ZeRO-3)
        rank-<r>.json       that process's RNG states and data position
        trainer_state.json  step, tokens seen, world size, whether the data position is global
        config.yaml         the effective config of the run
        MANIFEST.json       size and SHA-256 of every file above, written last
    <out_dir>/latest        "step-<n>", replaced last

Every process writes into `.step-<n>.staging/` and hashes the files it wrote; once all are done,
rank 0 writes the manifest, fsyncs, renames the directory to `step-<n>/` and only then points
`latest` at it. A run killed at any moment leaves `latest` naming a complete checkpoint, and the
next save or resume removes what the killed save left behind.

On resume the processes verify the checkpoint's files against its manifest (split between them);
a damaged step is skipped with a warning naming the file, and the newest intact older step is
used. Nothing in a checkpoint is unpickled: tensors are safetensors, the rest is JSON.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist
from transformers import PreTrainedTokenizerBase

from mathforge.models.checkpoint import (
    LATEST,
    CheckpointError,
    capture_rng_state,
    checkpoint_files,
    checkpoint_step,
    fsync_tree,
    manifest_entries,
    publish_directory,
    read_manifest,
    restore_rng_state,
    step_dir_name,
    verify_files,
    write_latest,
    write_manifest,
    write_model_files,
)
from mathforge.training.config import TrainConfig, dump_config
from mathforge.training.distributed import DistEnv, barrier
from mathforge.training.train_state import assign_owners, load_train_state, save_train_state

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
TRAIN_STATE_DIR = "train_state"


@dataclass
class ResumedState:
    """What a resumed run continues from."""

    step: int
    tokens: int
    data_state: dict[str, Any]
    path: Path | None = None
    world_size: int = 0  # the world size that wrote it


def _gather(value: Any, env: DistEnv) -> list[Any]:
    if not env.distributed:
        return [value]
    found: list[Any] = [None] * env.world_size
    dist.all_gather_object(found, value)
    return found


def clean_leftovers(out: Path) -> list[Path]:
    """Removes what killed saves leave in a run directory: staging directories, temporary
    `latest` files and retired step directories. Rank 0 only, with no save in progress."""
    removed = []
    for pattern in (".step-*.staging", f".{LATEST}.tmp-*", ".step-*.old-*", ".step-*.tmp-*"):
        for path in out.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d leftovers of interrupted saves under %s", len(removed), out)
    return removed


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    engine: Any,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    env: DistEnv,
    data_state: dict[str, Any],
    tokens: int,
    shared_data: bool = False,
) -> Path:
    """Writes step-<step>/ with every process and moves `latest` to it. Collective.

    `shared_data` says every process's data state is the same global position (so a run on
    another world size can continue it)."""
    out = Path(out_dir)
    final = out / step_dir_name(step)
    staging = out / f".{final.name}.staging"
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out)
        staging.mkdir()
    barrier()
    written = [
        f"{TRAIN_STATE_DIR}/{name}" for name in save_train_state(engine, staging / TRAIN_STATE_DIR, env)
    ]
    state_dict = engine.full_state_dict()
    if env.is_main:
        write_model_files(engine.module, tokenizer, staging / "model", state_dict)
        written += [f"model/{name}" for name in checkpoint_files(staging / "model")]
        trainer_state = {
            "step": step,
            "tokens": tokens,
            "world_size": env.world_size,
            "shared_data": shared_data,
        }
        (staging / TRAINER_STATE).write_text(json.dumps(trainer_state))
        (staging / "config.yaml").write_text(dump_config(config))
        written += [TRAINER_STATE, "config.yaml"]
    rank_file = f"rank-{env.rank}.json"
    (staging / rank_file).write_text(json.dumps({"rng": capture_rng_state(), "data": data_state}))
    written.append(rank_file)
    # Each process hashes what it wrote, so a 7B checkpoint is checksummed by all of them at once.
    entries = _gather(manifest_entries(staging, written), env)
    if env.is_main:
        fsync_tree(staging)
        write_manifest(staging, {k: v for part in entries for k, v in part.items()})
        publish_directory(staging, final)
        write_latest(out, step)
        _prune(out, config.checkpoint.keep_last, keep=final)
    barrier()
    return final


def step_directories(out: Path) -> list[Path]:
    """The run's step-<n> directories, newest first."""
    found = [p for p in out.glob("step-*") if p.is_dir() and p.name.removeprefix("step-").isdigit()]
    return sorted(found, key=checkpoint_step, reverse=True)


def _prune(out: Path, keep_last: int, keep: Path) -> None:
    if keep_last <= 0:
        return
    for old in step_directories(out)[keep_last:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _latest_step(out: Path) -> int | None:
    """The step `latest` names; None when there is no pointer or it is unreadable (warned)."""
    pointer = out / LATEST
    if not pointer.exists():
        return None
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    if not (name.startswith("step-") and name.removeprefix("step-").isdigit()):
        log.warning("%s does not name a step directory (%r); using the newest intact step", pointer, name)
        return None
    return int(name.removeprefix("step-"))


def _verify(step_dir: Path, env: DistEnv) -> list[str]:
    """Checks a step directory against its manifest, the files split between the processes;
    returns the problems found (empty when intact). Collective."""
    problems: list[str] = []
    try:
        entries = read_manifest(step_dir)
    except CheckpointError as exc:
        entries = {}
        problems.append(str(exc))
    names = sorted(entries)
    owners = assign_owners([entries[n]["size"] for n in names], env.world_size)
    mine = {n: entries[n] for n, owner in zip(names, owners, strict=True) if owner == env.rank}
    try:
        verify_files(step_dir, mine)
    except CheckpointError as exc:
        problems.append(str(exc))
    found = _gather(problems, env)
    return sorted({p for part in found for p in part})


def find_intact_checkpoint(out_dir: str | Path, env: DistEnv) -> Path | None:
    """The newest step directory, no newer than `latest`, whose files match its manifest; None
    when the run has no checkpoint yet. A damaged step is passed over with a warning naming the
    file; CheckpointError when steps exist but none is intact. Collective."""
    out = Path(out_dir)
    latest = _latest_step(out)
    steps = step_directories(out)
    if latest is None and not (out / LATEST).exists():
        return None
    candidates = [s for s in steps if latest is None or checkpoint_step(s) <= latest]
    if latest is not None and not (out / step_dir_name(latest)).is_dir():
        log.warning(
            "%s names %s, which does not exist; using the newest intact step",
            out / LATEST,
            step_dir_name(latest),
        )
    reasons = []
    for step_dir in candidates:
        problems = _verify(step_dir, env)
        if not problems:
            return step_dir
        reasons.append(f"{step_dir.name}: {problems[0]}")
        if env.is_main:
            log.warning(
                "checkpoint %s is damaged, falling back to an older step: %s", step_dir, "; ".join(problems)
            )
    raise CheckpointError(
        f"{out}: no intact checkpoint to resume from ({'; '.join(reasons) or 'no step directories'}); "
        "start a new out_dir or set checkpoint.resume=false"
    )


def resume_checkpoint(out_dir: str | Path, engine: Any, env: DistEnv) -> ResumedState | None:
    """Loads the newest intact checkpoint into the engine and this process's RNGs; None if none.

    The weights and optimizer state load into any world size and engine. The data position
    does too when the checkpoint's is global (`shared_data`); a per-process position needs the
    same number of processes."""
    out = Path(out_dir)
    if env.is_main and out.is_dir():
        clean_leftovers(out)
    barrier()
    step_dir = find_intact_checkpoint(out, env)
    if step_dir is None:
        return None
    meta = json.loads((step_dir / TRAINER_STATE).read_text())
    saved_world = int(meta["world_size"])
    if saved_world != env.world_size and not meta.get("shared_data", False):
        raise RuntimeError(
            f"{step_dir} was written by {saved_world} processes but this run has {env.world_size}; "
            "each process resumes its own data position, so run with the same number of processes "
            "(or start a new out_dir from its model/ with model.init_from)"
        )
    load_train_state(engine, step_dir / TRAIN_STATE_DIR, env)
    # A process beyond the old world size takes an existing process's RNG stream; the data position
    # is global here, so any process's is everyone's.
    rank_file = step_dir / f"rank-{env.rank % saved_world}.json"
    try:
        own = json.loads(rank_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{rank_file}: unreadable ({exc})") from exc
    restore_rng_state(own["rng"])
    return ResumedState(
        step=int(meta["step"]),
        tokens=int(meta["tokens"]),
        data_state=own["data"],
        path=step_dir,
        world_size=saved_world,
    )
