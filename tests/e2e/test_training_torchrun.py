"""Two-process CPU runs of the training stages under torchrun (gloo): the loss falls, a run killed
with SIGKILL resumes from its latest checkpoint with the losses of an uninterrupted run, and the
DeepSpeed ZeRO-2 engine on the CPU accelerator computes the same losses as DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mathforge.models.checkpoint import latest_checkpoint, load_model

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO / "services"),
        HF_HUB_OFFLINE="1",
        TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"),
    )
    return env


def run_stage(stage: str, out: Path, *overrides: str, kill_after_step: int = 0) -> dict[int, float]:
    """Runs a stage to the end (or SIGKILLs the whole job once step `kill_after_step` is logged);
    returns {step: loss} from its JSON lines."""
    command = [
        *TORCHRUN,
        "-m",
        f"mathforge.training.{stage}",
        "--config",
        f"configs/tiny/{stage}.yaml",
        f"out_dir={out}",
        *overrides,
    ]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    losses: dict[int, float] = {}
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail[-40:], line]
        if line.startswith("{"):
            event = json.loads(line)
            if event["event"] == "step":
                losses[event["step"]] = event["loss"]
                if kill_after_step and event["step"] >= kill_after_step:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
    code = proc.wait(timeout=300)
    if not kill_after_step:
        assert code == 0, "".join(tail)
    return losses


def test_pretrain_loss_falls_and_killed_run_resumes_with_identical_losses(tmp_path):
    # 14 steps: even if the kill lands after the step-8 save, 5 steps remain to compare.
    steps = ["batch.steps=14", "checkpoint.every=4"]
    reference = run_stage("pretrain", tmp_path / "reference", *steps)
    assert sorted(reference) == list(range(1, 15))
    assert reference[14] < reference[1] - 1.0

    killed = tmp_path / "killed"
    before = run_stage("pretrain", killed, *steps, kill_after_step=6)
    assert max(before) >= 6
    resume_from = latest_checkpoint(killed)
    assert resume_from is not None and resume_from.name in ("step-4", "step-8")
    start = int(resume_from.name.removeprefix("step-"))

    after = run_stage("pretrain", killed, *steps)
    assert min(after) == start + 1
    for step in range(start + 1, start + 6):
        assert after[step] == pytest.approx(reference[step], abs=1e-6), step
    model, tokenizer = load_model(killed / "final")
    assert model.config.vocab_size == len(tokenizer)


def test_sft_ddp_and_deepspeed_zero2_train_the_same_and_loss_falls(tmp_path):
    steps = ["batch.steps=10", "checkpoint.every=5"]
    ddp = run_stage("sft", tmp_path / "ddp", *steps)
    assert ddp[10] < ddp[1] - 1.0
    zero2 = run_stage(
        "sft",
        tmp_path / "zero2",
        "batch.steps=4",
        "checkpoint.every=4",
        "engine.kind=deepspeed",
        "engine.deepspeed_config=configs/deepspeed/zero2.json",
    )
    for step in range(1, 5):
        assert zero2[step] == pytest.approx(ddp[step], abs=1e-4), step
    assert (tmp_path / "zero2" / "step-4" / "train_state" / "train_state.json").is_file()
    model, _ = load_model(tmp_path / "zero2" / "final")
    assert model.config.num_hidden_layers == 2
