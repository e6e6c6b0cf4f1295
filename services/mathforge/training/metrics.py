"""Training progress: one JSON line per logged step on stdout, a Pushgateway, TensorBoard event
files (metrics.tensorboard_dir), a Weights & Biases run (metrics.wandb_project), a progress bar.

    metrics = TrainMetrics(config.metrics, stage="sft", total_steps=500, enabled=env.is_main,
                           out_dir=config.out_dir, run_config=config.as_dict())
    metrics.event("start")      # or "resume": opens the W&B run (a resume continues the same one)
    metrics.log(step, {"loss": 1.9, "lr": 5e-5, "grad_norm": 0.8, "tokens_per_s": 12000.0})

Lines look like {"event": "step", "stage": "sft", "step": 12, "loss": ...}; tests and dashboards
parse them. The numbers of "eval" events (held-out accuracy, reward-model scores) are charted too,
as <stage>/eval/<name>. Pushgateway failures are logged and never stop training. Every stage
(pretrain, SFT, reward models, GRPO) reports through this class, so each gets the same outputs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from mathforge.runtime.config import ConfigError
from mathforge.training.config import MetricsConfig
from mathforge.training.wandb_run import WandbRun, numbers, require_wandb

log = logging.getLogger(__name__)


class TrainMetrics:
    """Reports step metrics from the main process."""

    def __init__(
        self,
        config: MetricsConfig,
        stage: str,
        total_steps: int,
        enabled: bool = True,
        out_dir: str = ".",
        run_config: dict[str, Any] | None = None,
    ):
        self.config = config
        self.stage = stage
        self.enabled = enabled
        self.out_dir = out_dir
        self.run_config = run_config or {}
        require_wandb(config)
        self.wandb: WandbRun | None = None
        self.interrupted = False
        self.registry = CollectorRegistry()
        self.gauges: dict[str, Gauge] = {}
        self.bar: Any = None
        self.tensorboard: Any = None
        if enabled and config.tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(
                    "metrics.tensorboard_dir needs the tensorboard package (pip install tensorboard)"
                ) from None
            self.tensorboard = SummaryWriter(log_dir=config.tensorboard_dir, flush_secs=10)
        show_bar = config.progress_bar == "on" or (config.progress_bar == "auto" and sys.stderr.isatty())
        if enabled and show_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, desc=stage, unit="step", dynamic_ncols=True)

    def event(self, name: str, **fields: Any) -> None:
        """Prints one JSON line (start, resume, checkpoint, done ...)."""
        if not self.enabled:
            return
        if name in ("start", "resume"):
            self._open_wandb(resume=name == "resume")
        self.interrupted = self.interrupted or name == "interrupted"
        print(
            json.dumps({"event": name, "stage": self.stage, "time": round(time.time(), 3), **fields}),
            flush=True,
        )
        if name == "eval" and "step" in fields:
            scores = {key: value for key, value in fields.items() if key != "step"}
            self._chart(int(fields["step"]), scores, prefix="eval/")

    def _open_wandb(self, resume: bool) -> None:
        if self.config.wandb_project and self.wandb is None:
            self.wandb = WandbRun.open(self.config, self.stage, self.out_dir, self.run_config, resume)

    def _chart(self, step: int, values: dict[str, Any], prefix: str = "") -> None:
        """TensorBoard scalars and W&B values: the numbers among `values`."""
        if self.tensorboard is not None:
            for name, value in numbers(values).items():
                self.tensorboard.add_scalar(f"{self.stage}/{prefix}{name}", value, step)
        self._open_wandb(resume=False)  # a caller that logs without a start event
        if self.wandb is not None:
            self.wandb.log(step, values, prefix)

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(loss=f"{values.get('loss', float('nan')):.4f}", refresh=True)
        if step % self.config.log_every:
            return
        self.event("step", step=step, **values)
        self._chart(step, values)
        if self.config.pushgateway:
            self._push(step, values)

    def _push(self, step: int, values: dict[str, float]) -> None:
        for name, value in {"step": float(step), **values}.items():
            if name not in self.gauges:
                self.gauges[name] = Gauge(
                    f"mathforge_train_{name}", f"training {name}", ["stage"], registry=self.registry
                )
            self.gauges[name].labels(stage=self.stage).set(value)
        try:
            push_to_gateway(
                self.config.pushgateway,
                job=self.config.job_name,
                registry=self.registry,
                grouping_key={"stage": self.stage},
                timeout=5,
            )
        except OSError as exc:
            log.warning("pushgateway %s unreachable: %s", self.config.pushgateway, exc)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.close(failed=self.interrupted)
            self.wandb = None
