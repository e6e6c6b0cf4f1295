"""metrics.wandb_project: a stage's step values and config in a Weights & Biases run, offline (nothing
reaches the network), read back from the run's .wandb file; a resumed stage continues the same run."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from mathforge.runtime.config import ConfigError
from mathforge.training.config import MetricsConfig
from mathforge.training.metrics import TrainMetrics
from mathforge.training.sft import SftConfig
from wandb.proto import wandb_internal_pb2

REPO = Path(__file__).resolve().parents[2]
BLOCK = 32 * 1024  # a .wandb file is a leveldb-style log: 32 KiB blocks of checksummed chunks
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record W&B wrote to a run's .wandb file (what `wandb sync` would upload)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a .wandb file"
    records, pending, pos = [], b"", 7  # 7 = magic, version
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def run_contents(run_dir: Path) -> dict:
    """The run record, the history rows (user keys only) and the exit code of one run directory."""
    (wandb_file,) = run_dir.glob("run-*.wandb")
    out: dict = {"history": [], "exit_code": None}
    for record in wandb_records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"] = {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "history":
            row = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in record.history.item
            }
            out["history"].append({k: v for k, v in row.items() if not k.startswith("_")})
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {
        **env,
        "PYTHONPATH": str(REPO / "services"),
        "OMP_NUM_THREADS": "1",
        "HOME": str(tmp_path / "home"),  # no ~/.netrc key or wandb settings of the user's
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_ERROR_REPORTING": "false",
        **extra,
    }


def sft(out: Path, steps: int, env: dict[str, str], *overrides: str) -> list[dict]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mathforge.training.sft",
            "--config",
            "configs/tiny/sft.yaml",
            f"out_dir={out}",
            f"batch.steps={steps}",
            "checkpoint.every=2",
            "data.synthetic_problems=32",
            "metrics.progress_bar=off",
            "metrics.wandb_project=mathforge-test",
            *overrides,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"event"')]


@pytest.mark.slow
def test_an_sft_run_and_its_resume_log_to_one_offline_wandb_run(tmp_path):
    out = tmp_path / "sft"
    # First run: mode and group from W&B's own environment variables, tags from the config.
    env = offline_env(tmp_path, WANDB_MODE="offline", WANDB_RUN_GROUP="recipe-1")
    lines = sft(out, 2, env, "metrics.wandb_tags=[tiny,cpu]")
    steps = [line for line in lines if line["event"] == "step"]
    (first_dir,) = (out / "wandb").glob("offline-run-*")
    first = run_contents(first_dir)

    run_id = (out / "wandb-run-id").read_text().strip()
    assert first["run"].run_id == run_id and first_dir.name.endswith(run_id)
    assert first["run"].project == "mathforge-test" and first["run"].job_type == "sft"
    assert first["run"].run_group == "recipe-1" and list(first["run"].tags) == ["tiny", "cpu"]
    assert first["config"]["optim"]["lr"] == 2e-3 and first["config"]["batch"]["steps"] == 2
    assert [row["sft/step"] for row in first["history"]] == [1, 2]
    assert [row["sft/loss"] for row in first["history"]] == [line["loss"] for line in steps]
    assert first["history"][1]["sft/tokens"] == steps[1]["tokens"]
    assert first["exit_code"] == 0

    # The resume (mode from the config this time) continues the same W&B run at step 3.
    lines = sft(out, 4, offline_env(tmp_path), "metrics.wandb_mode=offline")
    assert lines[0]["event"] == "resume" and lines[0]["step"] == 2
    (second_dir,) = set((out / "wandb").glob("offline-run-*")) - {first_dir}
    second = run_contents(second_dir)
    assert second["run"].run_id == run_id
    assert [row["sft/step"] for row in second["history"]] == [3, 4]
    losses = [line["loss"] for line in lines if line["event"] == "step"]
    assert [row["sft/loss"] for row in second["history"]] == losses
    assert second["config"]["batch"]["steps"] == 4


def test_eval_events_are_charted_beside_the_step_values(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    config = MetricsConfig(progress_bar="off", wandb_project="p", wandb_mode="offline", wandb_name="rm-1")
    metrics = TrainMetrics(config, "reward", 2, out_dir=str(tmp_path), run_config={"seed": 3})
    metrics.event("start")
    metrics.log(1, {"loss": 0.7, "note": "skipped", "flag": True})
    metrics.event("eval", step=1, auc=0.75, problems=40, split="held-out")
    metrics.event("interrupted", step=1, resume_step=0)
    metrics.close()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    contents = run_contents(run_dir)
    assert contents["run"].display_name == "rm-1" and contents["config"]["seed"] == 3
    assert contents["history"] == [
        {"reward/step": 1, "reward/loss": 0.7},
        {"reward/step": 1, "reward/eval/auc": 0.75, "reward/eval/problems": 40},
    ]
    assert contents["exit_code"] == 1  # stopped early: the run is marked failed
    assert capsys.readouterr().out.count('"event"') == 4  # the JSON lines are unchanged


def test_without_wandb_installed_every_process_gets_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an import finds when it is not installed
    for enabled in (True, False):  # ranks other than the main one stop alike, not in a collective
        with pytest.raises(ConfigError, match=r"pip install 'mathforge\[wandb\]'"):
            TrainMetrics(MetricsConfig(progress_bar="off", wandb_project="p"), "sft", 1, enabled=enabled)
    TrainMetrics(MetricsConfig(progress_bar="off"), "sft", 1).close()  # off: wandb is never needed


def test_online_without_an_api_key_is_one_line_saying_what_to_set(tmp_path, monkeypatch):
    for name in [name for name in os.environ if name.startswith("WANDB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    config = MetricsConfig(progress_bar="off", wandb_project="p")
    metrics = TrainMetrics(config, "sft", 1, out_dir=str(tmp_path))
    with pytest.raises(ConfigError) as raised:
        metrics.event("start")
    assert "\n" not in str(raised.value)
    assert "WANDB_API_KEY" in str(raised.value) and "metrics.wandb_mode=offline" in str(raised.value)


def test_the_mode_is_checked_with_the_config():
    from mathforge.training.config import config_from_mapping

    values = {"metrics": {"wandb_mode": "ofline"}, "data": {"synthetic_problems": 10}}
    with pytest.raises(ConfigError, match=r"metrics\.wandb_mode 'ofline' is not online, offline or disabled"):
        config_from_mapping(SftConfig, values).validate()
