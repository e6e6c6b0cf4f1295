"""metrics.tensorboard_dir: every stage's step metrics as TensorBoard scalars, read back with
TensorBoard's own event reader."""

from __future__ import annotations

from mathforge.training.config import MetricsConfig
from mathforge.training.metrics import TrainMetrics
from mathforge.training.sft import SftConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def test_step_metrics_become_tensorboard_scalars(tmp_path, capsys):
    config = MetricsConfig(progress_bar="off", tensorboard_dir=str(tmp_path / "tb"))
    metrics = TrainMetrics(config, stage="sft", total_steps=3)
    for step, loss in enumerate([2.5, 2.0, 1.5], start=1):
        metrics.log(step, {"loss": loss, "lr": 1e-3, "tokens": 512, "note": "text is skipped"})
    metrics.close()

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"sft/loss", "sft/lr", "sft/tokens"}
    losses = [(e.step, e.value) for e in events.Scalars("sft/loss")]
    assert losses == [(1, 2.5), (2, 2.0), (3, 1.5)]
    assert capsys.readouterr().out.count('"event": "step"') == 3  # the JSON lines are still there


def test_only_the_main_process_writes_events(tmp_path):
    config = MetricsConfig(progress_bar="off", tensorboard_dir=str(tmp_path / "tb"))
    metrics = TrainMetrics(config, stage="grpo", total_steps=1, enabled=False)
    metrics.log(1, {"loss": 1.0})
    metrics.close()
    assert not (tmp_path / "tb").exists()


def test_stage_configs_take_the_setting():
    from mathforge.training.config import config_from_mapping

    values = {"metrics": {"tensorboard_dir": "runs/tb"}, "data": {"synthetic_problems": 10}}
    config = config_from_mapping(SftConfig, values)
    assert config.metrics.tensorboard_dir == "runs/tb"
