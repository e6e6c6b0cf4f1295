"""A stage's Weights & Biases run (metrics.wandb_project), opened by TrainMetrics on the main process.

    run = WandbRun.open(config.metrics, stage="sft", out_dir="runs/sft", run_config={...}, resume=False)
    run.log(12, {"loss": 1.9, "lr": 5e-5})      # charted as sft/loss, sft/lr against sft/step
    run.close(failed=False)

Fields left empty fall back to W&B's own settings, so WANDB_ENTITY, WANDB_MODE, WANDB_DIR, WANDB_NAME,
WANDB_RUN_GROUP, WANDB_TAGS, WANDB_API_KEY and WANDB_BASE_URL work as they do for any W&B script;
the run's files go to <out_dir> unless metrics.wandb_dir or WANDB_DIR says otherwise.

A resumed stage continues the same W&B run: the run id is kept in <out_dir>/wandb-run-id. Steps are
charted against the stage's own step (`<stage>/step`), not W&B's internal counter, so the steps a
resume repeats (those after the last checkpoint) land on the same x values instead of being dropped
as out of order. In offline mode the resumed part is a second run directory with the same id, which
`wandb sync` uploads into the same run.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from mathforge.runtime.config import ConfigError
from mathforge.training.config import MetricsConfig

RUN_ID_FILE = "wandb-run-id"


def require_wandb(config: MetricsConfig) -> None:
    """A one-line ConfigError when W&B is asked for and not installed (checked on every process, so
    all ranks stop alike)."""
    if config.wandb_project and importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            "metrics.wandb_project needs the wandb package: pip install 'mathforge[wandb]' "
            "(or leave metrics.wandb_project empty)"
        )


def numbers(values: dict[str, Any]) -> dict[str, float]:
    """The values a chart can show: ints and floats (not bools, strings or lists)."""
    return {
        name: value
        for name, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


class WandbRun:
    """One stage's W&B run; `log` charts step values against `<stage>/step`."""

    def __init__(self, run: Any, stage: str):
        self.run = run
        self.stage = stage

    @classmethod
    def open(
        cls, config: MetricsConfig, stage: str, out_dir: str, run_config: dict[str, Any], resume: bool
    ) -> WandbRun:
        import wandb

        id_file = Path(out_dir) / RUN_ID_FILE
        settings: dict[str, Any] = {
            "project": config.wandb_project,
            "job_type": stage,
            "config": run_config,
            "dir": config.wandb_dir or os.environ.get("WANDB_DIR") or out_dir,
        }
        optional = {
            "entity": config.wandb_entity,
            "name": config.wandb_name,
            "group": config.wandb_group,
            "tags": list(config.wandb_tags),
            "mode": config.wandb_mode,
        }
        settings.update({key: value for key, value in optional.items() if value})
        if resume and id_file.is_file() and "WANDB_RUN_ID" not in os.environ:
            settings.update(id=id_file.read_text().strip(), resume="allow")
        Path(settings["dir"]).mkdir(parents=True, exist_ok=True)
        try:
            run = wandb.init(**settings)
        except wandb.Error as exc:
            # e.g. online without an API key: say what to set rather than a W&B traceback
            message = " ".join(str(exc).split())
            raise ConfigError(
                f"W&B: {message} (set WANDB_API_KEY, or metrics.wandb_mode=offline to log locally "
                "and `wandb sync` later)"
            ) from None
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run.id + "\n")
        run.define_metric(f"{stage}/step")
        run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
        return cls(run, stage)

    def log(self, step: int, values: dict[str, Any], prefix: str = "") -> None:
        charted = {f"{self.stage}/{prefix}{name}": value for name, value in numbers(values).items()}
        if charted:
            self.run.log({f"{self.stage}/step": step, **charted})

    def close(self, failed: bool) -> None:
        """Finishes the run (marked failed when the stage stopped early) and stops W&B's service
        process, so that no process outlives a stage that leaves without running exit handlers."""
        import wandb

        self.run.finish(exit_code=1 if failed else 0)
        wandb.teardown()
