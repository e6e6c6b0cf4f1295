"""Resumable training checkpoints, written by all processes together and published atomically.

    <out_dir>/step-<n>/
        model/              safetensors weights + config + tokenizer (loadable by models.load_model)
        optimizer.pt        optimizer + scheduler (DDP), or deepspeed/ (DeepSpeed's sharded states)
        rank-<r>.pt         that process's RNG states (python, numpy, torch) and data position
        trainer_state.json  step, tokens seen, world size
        config.yaml         the effective config of the run
    <out_dir>/latest        "step-<n>", replaced last

Every process writes into `.step-<n>.staging/`; once all are done (a barrier), rank 0 fsyncs it,
renames it to `step-<n>/` and only then points `latest` at it. A run killed at any moment leaves
`latest` naming a complete checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from mathforge.models.checkpoint import (
    capture_rng_state,
    checkpoint_step,
    fsync_tree,
    latest_checkpoint,
    publish_directory,
    restore_rng_state,
    step_dir_name,
    write_latest,
    write_model_files,
)
from mathforge.training.config import TrainConfig, dump_config
from mathforge.training.distributed import DistEnv, barrier
from mathforge.training.engines import DDPEngine, DeepSpeedEngine

TRAINER_STATE = "trainer_state.json"


@dataclass
class ResumedState:
    """What a resumed run continues from."""

    step: int
    tokens: int
    data_state: dict[str, Any]


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    engine: DDPEngine | DeepSpeedEngine,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    env: DistEnv,
    data_state: dict[str, Any],
    tokens: int,
) -> Path:
    """Writes step-<step>/ with every process and moves `latest` to it. Collective."""
    out = Path(out_dir)
    final = out / step_dir_name(step)
    staging = out / f".{final.name}.staging"
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    barrier()
    engine.save(staging)
    state_dict = engine.full_state_dict()
    if env.is_main:
        write_model_files(engine.module, tokenizer, staging / "model", state_dict)
        (staging / TRAINER_STATE).write_text(
            json.dumps({"step": step, "tokens": tokens, "world_size": env.world_size})
        )
        (staging / "config.yaml").write_text(dump_config(config))
    torch.save({"rng": capture_rng_state(), "data": data_state}, staging / f"rank-{env.rank}.pt")
    barrier()
    if env.is_main:
        fsync_tree(staging)
        publish_directory(staging, final)
        write_latest(out, step)
        _prune(out, config.checkpoint.keep_last, keep=final)
    barrier()
    return final


def _prune(out: Path, keep_last: int, keep: Path) -> None:
    if keep_last <= 0:
        return
    steps = sorted((p for p in out.glob("step-*") if p.is_dir()), key=checkpoint_step)
    for old in steps[:-keep_last]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def resume_checkpoint(
    out_dir: str | Path, engine: DDPEngine | DeepSpeedEngine, env: DistEnv
) -> ResumedState | None:
    """Loads the checkpoint `latest` names into the engine and this process's RNGs; None if none."""
    step_dir = latest_checkpoint(out_dir)
    if step_dir is None:
        return None
    meta = json.loads((step_dir / TRAINER_STATE).read_text())
    if meta["world_size"] != env.world_size:
        raise RuntimeError(
            f"{step_dir} was written by {meta['world_size']} processes but this run has {env.world_size}; "
            "each process resumes its own data position, so run with the same number of processes "
            "(or start a new out_dir from its model/ with model.init_from)"
        )
    engine.load(step_dir)
    rank_state = torch.load(step_dir / f"rank-{env.rank}.pt", weights_only=False)
    restore_rng_state(rank_state["rng"])
    return ResumedState(step=int(meta["step"]), tokens=int(meta["tokens"]), data_state=rank_state["data"])
