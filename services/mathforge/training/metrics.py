"""Training progress: one JSON line per logged step on stdout, a Pushgateway, TensorBoard event
files (metrics.tensorboard_dir), a progress bar.

    metrics = TrainMetrics(config.metrics, stage="sft", total_steps=500, enabled=env.is_main)
    metrics.log(step, {"loss": 1.9, "lr": 5e-5, "grad_norm": 0.8, "tokens_per_s": 12000.0})

Lines look like {"event": "step", "stage": "sft", "step": 12, "loss": ...}; tests and dashboards
parse them. Pushgateway failures are logged and never stop training. Every stage (pretrain, SFT,
reward models, GRPO) reports through this class, so each gets the same outputs.
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

log = logging.getLogger(__name__)


class TrainMetrics:
    """Reports step metrics from the main process."""

    def __init__(self, config: MetricsConfig, stage: str, total_steps: int, enabled: bool = True):
        self.config = config
        self.stage = stage
        self.enabled = enabled
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
        if self.enabled:
            print(
                json.dumps({"event": name, "stage": self.stage, "time": round(time.time(), 3), **fields}),
                flush=True,
            )

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(loss=f"{values.get('loss', float('nan')):.4f}", refresh=True)
        if step % self.config.log_every:
            return
        self.event("step", step=step, **values)
        if self.tensorboard is not None:
            for name, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.tensorboard.add_scalar(f"{self.stage}/{name}", value, step)
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
