"""The one training loop of every stage: a Trainer owns the steps, metrics, checkpoints, resume and
the final save; a stage's TrainModule says how one batch trains.

    trainer = Trainer(config, env, engine, module, tokenizer)
    losses = trainer.fit()            # runs (or resumes) to batch.steps
    losses = run_distributed(config, lambda env: ...)   # a stage's entry: the process group around it

A TrainModule runs the forward and backward passes of one optimizer step (all its micro-steps) and
returns the step's loss, extra values to log and counts to turn into rates; the Trainer then steps
the optimizer, logs, lets the module evaluate, and checkpoints. A module that steps the optimizer
itself (GRPO's mu updates per batch) says so in its result. A module with work around the steps
(GRPO's services, rollout source and evaluations) does it in `begin`, `finish` and `close`.
Pretraining and SFT (training/trainer.py), the reward model (reward/trainer.py) and GRPO
(training/grpo/loop.py) are TrainModules over this loop.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from mathforge.models.checkpoint import save_model
from mathforge.training.checkpointing import resume_checkpoint, save_checkpoint
from mathforge.training.config import TrainConfig
from mathforge.training.distributed import DistEnv, finish_distributed, init_distributed
from mathforge.training.interrupt import Interrupted, Stopped, StopRequest, exit_now
from mathforge.training.metrics import TrainMetrics


@dataclass
class BatchResult:
    """What one optimizer step's forward and backward passes produced."""

    loss: float
    values: dict[str, float] = field(default_factory=dict)  # logged as they are
    counts: dict[str, float] = field(default_factory=dict)  # logged as <name>_per_s
    stepped: bool = False  # the module ran its optimizer steps itself (values carry grad_norm)


class TrainModule(ABC):
    """How one stage trains one batch, and the data position a checkpoint keeps. A stage implements
    `train_batch`, `state_dict` and `load_state_dict`; the other hooks do nothing unless overridden."""

    # True when every process's data position is the job's one global position, so a checkpoint
    # continues on another number of processes.
    shared_data: bool = False

    def start_info(self) -> dict[str, Any]:
        """Extra fields of the run's "start" event."""
        return {}

    def resume_info(self) -> dict[str, Any]:
        """Extra fields of the "resume" event (after load_state_dict)."""
        return {}

    def done_info(self) -> dict[str, Any]:
        """Extra fields of the "done" event."""
        return {}

    def begin(self, engine: Any, start_step: int, metrics: TrainMetrics) -> None:
        """Called once before the first step this process runs (after any resume)."""

    @abstractmethod
    def train_batch(self, engine: Any, step: int) -> BatchResult:
        """Runs step `step`'s forward and backward passes (and, when it says `stepped`, its
        optimizer steps)."""

    def after_step(self, engine: Any, step: int, done: bool, metrics: TrainMetrics) -> None:
        """Called after step `step` (counted from 1) is logged, before its checkpoint."""

    def finish(self, engine: Any, metrics: TrainMetrics) -> None:
        """Called after the last step, before the final save."""

    def close(self) -> None:
        """Called last, whether the run finished, was interrupted or failed."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The data position (and whatever else a resume needs) a checkpoint keeps."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what state_dict returned."""


class Trainer:
    """Runs a TrainModule's steps with checkpoints every `checkpoint.every` steps and exact resume."""

    def __init__(
        self,
        config: TrainConfig,
        env: DistEnv,
        engine: Any,
        module: TrainModule,
        tokenizer: PreTrainedTokenizerBase,
    ):
        self.config = config
        self.env = env
        self.engine = engine
        self.module = module
        self.tokenizer = tokenizer
        self.metrics = TrainMetrics(
            config.metrics,
            config.stage,
            config.batch.steps,
            enabled=env.is_main,
            out_dir=config.out_dir,
            run_config=config.as_dict(),
        )
        self.tokens = 0
        self.final: Path | None = None

    def _resume(self) -> int:
        config = self.config
        resumed = (
            resume_checkpoint(config.out_dir, self.engine, self.env) if config.checkpoint.resume else None
        )
        if resumed is None:
            self.metrics.event(
                "start",
                world_size=self.env.world_size,
                accumulation=self.engine.accumulation,
                device=str(self.env.device),
                engine=config.engine.kind,
                **self.module.start_info(),
                config=config.as_dict(),
            )
            return 0
        self.tokens = resumed.tokens
        self.module.load_state_dict(resumed.data_state)
        details = dict(self.module.resume_info())
        if resumed.world_size != self.env.world_size:
            details["from_world_size"] = resumed.world_size
        self.metrics.event("resume", step=resumed.step, out_dir=config.out_dir, **details)
        return resumed.step

    def fit(self) -> list[float]:
        """Runs (or resumes) to batch.steps; returns the losses of the steps this call ran. Raises
        Interrupted, on every rank at the same step, when a rank was signalled (SIGINT, SIGTERM)."""
        try:
            start = self._resume()
            with StopRequest() as stop:
                try:
                    self.module.begin(self.engine, start, self.metrics)  # GRPO waits for its services here
                except Stopped:  # signalled while waiting (stop_at_once): nothing trained, nothing to save
                    self._stop(start, start, stop)
                losses = self._steps(start, stop)
            self.module.finish(self.engine, self.metrics)
            self._save_final()
            self.metrics.close()
        finally:
            self.module.close()
        return losses

    def _steps(self, start: int, stop: StopRequest) -> list[float]:
        config, engine = self.config, self.engine
        losses: list[float] = []
        saved = start
        if start < config.batch.steps and stop.agreed(self.env):  # signalled before the first step
            self._stop(start, saved, stop)
        for step in range(start, config.batch.steps):
            began = time.perf_counter()
            lr = engine.lr()
            result = self.module.train_batch(engine, step)
            grad_norm = 0.0 if result.stepped else engine.step()
            elapsed = time.perf_counter() - began
            self.tokens += int(result.counts.get("tokens", 0))
            losses.append(result.loss)
            values = {"loss": result.loss, "lr": lr, "grad_norm": grad_norm}
            values.update({f"{name}_per_s": count / elapsed for name, count in result.counts.items()})
            if "tokens" in result.counts:
                values["tokens"] = float(self.tokens)
            values.update(result.values)
            self.metrics.log(step + 1, values)
            done = step + 1 == config.batch.steps
            self.module.after_step(engine, step + 1, done, self.metrics)
            if (step + 1) % config.checkpoint.every == 0 or done:
                path = save_checkpoint(
                    config.out_dir,
                    step + 1,
                    engine,
                    self.tokenizer,
                    config,
                    self.env,
                    self.module.state_dict(),
                    self.tokens,
                    shared_data=self.module.shared_data,
                )
                self.metrics.event("checkpoint", step=step + 1, path=str(path))
                saved = step + 1
            if not done and stop.agreed(self.env):
                self._stop(step + 1, saved, stop)
        return losses

    def _stop(self, step: int, saved: int, stop: StopRequest) -> NoReturn:
        self.metrics.event("interrupted", step=step, resume_step=saved)
        self.metrics.close()
        raise Interrupted(step, saved, stop.signum)

    def _save_final(self) -> None:
        state_dict = self.engine.full_state_dict()  # collective under ZeRO-3
        final = Path(self.config.out_dir) / "final"
        if self.env.is_main:
            save_model(self.engine.module, self.tokenizer, final, state_dict)
            done: dict[str, Any] = {"tokens": self.tokens} if self.tokens else {}
            done.update(self.module.done_info())
            self.metrics.event("done", step=self.config.batch.steps, **done, final=str(final))
        self.final = final


Result = TypeVar("Result")


def run_distributed(config: TrainConfig, body: Callable[[DistEnv], Result]) -> Result:
    """Runs `body` in the run's process group and leaves the group whatever happens. A run stopped by
    Ctrl-C or SIGTERM (Interrupted) says on rank 0 where a rerun resumes and ends the process at once
    with 128 + the signal: the group is left and every checkpoint is whole by then, and the
    interpreter's own exit could spend seconds collecting a large run's data."""
    env = init_distributed(config.engine.device, use_deepspeed=config.engine.kind == "deepspeed")
    hf_logging.disable_progress_bar()  # the run's own metrics lines are the progress report
    interrupted: Interrupted | None = None
    try:
        return body(env)
    except Interrupted as exc:
        if env.is_main:
            print(f"{config.stage}: {exc}", file=sys.stderr, flush=True)
        interrupted = exc
        raise SystemExit(exc.exit_code) from None
    finally:
        finish_distributed()
        if interrupted is not None:
            exit_now(interrupted.exit_code)
