"""What a training entrypoint says about its command line: --help lists every field with its
default, --print-config the effective config, and a bad file, key, value or path is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mathforge.reward.train_config import RewardTrainConfig
from mathforge.training.config import load_config, stage_config
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.sft import SftConfig

REPO = Path(__file__).resolve().parents[2]


def _exit(capsys, cls, argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        stage_config(cls, argv, prog="stage")
    out, err = capsys.readouterr()
    return int(stopped.value.code or 0), out, err


def test_help_lists_every_field_with_its_default(capsys):
    code, out, _ = _exit(capsys, GrpoConfig, ["--help"])
    assert code == 0
    assert "objective.beta = 0.04: weight of the k3 KL" in out
    assert "rollout.group_size = 64:" in out and "--print-config" in out


def test_print_config_gives_a_loadable_effective_config(capsys, tmp_path):
    code, out, _ = _exit(
        capsys, SftConfig, ["--config", "configs/tiny/sft.yaml", "optim.lr=0.01", "--print-config"]
    )
    assert code == 0
    printed = tmp_path / "effective.yaml"
    printed.write_text(out)
    again = load_config(SftConfig, ["--config", str(printed)])
    assert again.optim.lr == 0.01 and again.metrics.log_every == 1  # a default filled in
    assert yaml.safe_load(out)["stage"] == "sft"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["checkpoint.evry=3"], "unknown config key 'checkpoint.evry'"),
        (["optim.lr=fast"], "optim.lr"),
        (["--config", "/no/such.yaml"], "--config /no/such.yaml: no such file"),
        (["--config", "{broken}"], "not valid YAML"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_2(capsys, tmp_path, argv, expected):
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: {lr: [\n")
    argv = [str(broken) if a == "{broken}" else a for a in argv]
    code, out, err = _exit(capsys, RewardTrainConfig, argv)
    assert code == 2 and not out
    assert err.count("\n") == 1 and err.startswith("stage: ") and expected in err, err


@pytest.mark.slow
def test_a_mistyped_init_from_is_one_line_not_a_hub_lookup(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "services"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mathforge.training.sft",
            "--config",
            "configs/tiny/sft.yaml",
            f"out_dir={tmp_path}",
            "model.init_from=runs/nope",
            "batch.steps=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        "sft: runs/nope: no such directory (model.init_from and model.tokenizer name a local checkpoint)"
    ]
