"""Checkpoints are verified before a resume uses them: a flipped byte in any file of the latest step
or a truncated optimizer state falls back to the previous intact step with a warning naming the
file, a pickle planted in a checkpoint is never executed, and leftovers of killed saves go away."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from mathforge.models.checkpoint import CheckpointError, checkpoint_files, manifest_entries
from mathforge.models.tokenizer import default_tokenizer
from mathforge.training.checkpointing import find_intact_checkpoint
from mathforge.training.config import config_from_mapping
from mathforge.training.distributed import init_distributed
from mathforge.training.sft import SftConfig, make_stream
from mathforge.training.trainer import prepare_model, train


def run(out: Path, steps: int) -> tuple[list[float], list[dict]]:
    config = config_from_mapping(
        SftConfig,
        {
            "out_dir": str(out),
            "seed": 0,
            "model": {"preset": "tiny"},
            "optim": {"lr": 2e-3},
            "batch": {"seq_len": 64, "micro_batch_size": 2, "global_batch_tokens": 256, "steps": steps},
            "engine": {"device": "cpu"},
            "checkpoint": {"every": 2, "keep_last": 3},
            "metrics": {"progress_bar": "off"},
            "data": {"synthetic_problems": 32},
        },
    )
    env = init_distributed("cpu")
    tokenizer = default_tokenizer()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        losses = train(
            config, env, prepare_model(config, tokenizer), tokenizer, make_stream(config, tokenizer, env)
        )
    events = [json.loads(line) for line in output.getvalue().splitlines() if line.startswith('{"event"')]
    return losses, events


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[float]]:
    """A run with checkpoints at steps 2 and 4, and the losses of an uninterrupted 6-step run."""
    root = tmp_path_factory.mktemp("verify")
    straight, _ = run(root / "straight", steps=6)
    run(root / "run", steps=4)
    return root / "run", straight


def _copy(trained_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained_dir, out)
    return out


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_any_file_of_the_latest_step_falls_back_to_the_previous_one(
    trained, tmp_path, caplog
):
    files = [*checkpoint_files(trained[0] / "step-4"), "MANIFEST.json"]
    assert {"model/model.safetensors", "rank-0.json", "trainer_state.json"} <= set(files)
    assert any(f.startswith("train_state/state-") for f in files)
    env = init_distributed("cpu")
    for index, name in enumerate(files):
        out = tmp_path / f"case-{index}"
        shutil.copytree(trained[0], out)
        _flip_byte(out / "step-4" / name)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mathforge.training.checkpointing"):
            chosen = find_intact_checkpoint(out, env)
        assert chosen == out / "step-2", name
        assert name in caplog.text and "step-4" in caplog.text, name


def test_a_damaged_latest_step_resumes_from_the_previous_one_with_the_uninterrupted_losses(trained, tmp_path):
    out = _copy(trained[0], tmp_path)
    _flip_byte(out / "step-4" / "model" / "model.safetensors")
    resumed, events = run(out, steps=6)
    assert events[0]["event"] == "resume" and events[0]["step"] == 2
    assert resumed == pytest.approx(trained[1][2:], abs=1e-6)


def test_a_truncated_optimizer_state_falls_back_to_the_previous_step(trained, tmp_path, caplog):
    out = _copy(trained[0], tmp_path)
    state_file = next((out / "step-4" / "train_state").glob("state-*.safetensors"))
    with open(state_file, "r+b") as handle:
        handle.truncate(state_file.stat().st_size // 3)
    with caplog.at_level(logging.WARNING, logger="mathforge.training.checkpointing"):
        resumed, events = run(out, steps=6)
    assert state_file.name in caplog.text and "truncated" in caplog.text
    assert events[0]["step"] == 2
    assert resumed == pytest.approx(trained[1][2:], abs=1e-6)


def test_no_intact_step_is_an_error_not_a_fresh_start(trained, tmp_path):
    out = _copy(trained[0], tmp_path)
    for step in ("step-2", "step-4"):
        (out / step / "rank-0.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint.*rank-0\.json"):
        run(out, steps=6)


class _Payload:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("target", ["train_state", "rank-0.json"])
def test_a_pickle_planted_in_a_checkpoint_is_never_executed(trained, tmp_path, target):
    out = _copy(trained[0], tmp_path)
    marker = tmp_path / "executed"
    payload = tmp_path / "payload.pt"
    torch.save({"state": _Payload(marker)}, payload)
    # The payload is live: an unpickling load runs it.
    torch.load(payload, weights_only=False)
    assert marker.exists()
    marker.unlink()
    step = out / "step-4"
    victim = (
        next((step / "train_state").glob("state-*.safetensors")) if target == "train_state" else step / target
    )
    shutil.copy(payload, victim)
    for legacy in ("optimizer.pt", "rank-0.pt"):
        shutil.copy(payload, step / legacy)
    # Whoever can write the volume can rewrite the manifest too: the load itself must not unpickle.
    manifest = json.loads((step / "MANIFEST.json").read_text())
    manifest["files"].update(manifest_entries(step, [str(victim.relative_to(step))]))
    (step / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match=victim.name):
        run(out, steps=6)
    assert not marker.exists()
    assert pickle.dumps(0)  # pickle itself still works in this process


def test_leftovers_of_killed_saves_are_removed_by_the_next_resume(trained, tmp_path):
    out = _copy(trained[0], tmp_path)
    (out / ".step-6.staging" / "model").mkdir(parents=True)
    (out / ".step-6.staging" / "model" / "model.safetensors").write_bytes(b"partial")
    (out / ".latest.tmp-1a2b3c4d").write_text("step-6\n")
    (out / ".step-2.old-99aa88bb").mkdir()
    resumed, events = run(out, steps=6)
    assert events[0]["step"] == 4 and len(resumed) == 2
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
