"""The reward-model training config: the training stages' TrainConfig with a `reward` and a `data`
section and reward-specific defaults (DeepSeekMath §4: learning rate 2e-5, 10% replay).

    config = load_config(RewardTrainConfig, ["--config", "configs/tiny/reward-orm.yaml", "optim.lr=1e-3"])
"""

from __future__ import annotations

import dataclasses

from mathforge.reward.steps import DEFAULT_SEPARATOR
from mathforge.training.config import (
    BatchConfig,
    CheckpointConfig,
    ConfigError,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    option,
)


@dataclasses.dataclass
class RewardOptimConfig(OptimConfig):
    """AdamW for reward models (DeepSeekMath §4: learning rate 2e-5; betas and decay as in §2)."""

    lr: float = option(2e-5, "learning rate (DeepSeekMath §4: the reward model was trained at 2e-5)")


@dataclasses.dataclass
class RewardScheduleConfig(ScheduleConfig):
    """Constant rate after an optional warm-up (the paper gives no RM schedule; our choice)."""

    kind: str = option("constant", "constant (default for reward models) or multistep")
    warmup_steps: int = option(0, "linear warm-up steps to the rate (our choice: none)")


@dataclasses.dataclass
class RewardBatchConfig(BatchConfig):
    """Examples per step and per micro-batch; seq_len is the longest example kept, in tokens."""

    seq_len: int = option(2048, "examples longer than this many tokens (prompt + response) are skipped")
    micro_batch_size: int = option(4, "examples per process per forward/backward")
    global_batch_tokens: int = option(
        0, "not used by reward training: reward.examples_per_step sets the batch"
    )
    steps: int = option(1000, "optimizer steps (our choice; the paper does not give one)")


@dataclasses.dataclass
class RewardCheckpointConfig(CheckpointConfig):
    every: int = option(200, "save a resumable checkpoint every N steps (and at the end)")


@dataclasses.dataclass
class RewardSection:
    """What kind of reward model is trained and how its steps are read."""

    kind: str = option("orm", "orm (one score per response, read at EOS) or prm (one per step)")
    step_separator: str = option(
        DEFAULT_SEPARATOR, "PRM steps are the text between separators (default: newline)"
    )
    examples_per_step: int = option(64, "examples per optimizer step over all processes (our choice)")
    eval_every: int = option(100, "evaluate on data.eval every N steps (and at the end); 0 = only at the end")


@dataclasses.dataclass
class RewardDataConfig:
    """Training, held-out and replay data (JSON lines; reward/data.py has the formats)."""

    train: list[str] = option([], "JSON-lines files of labelled examples")
    eval: list[str] = option([], "held-out files; ORM: AUC, PRM: step AUC and accuracy")
    replay: list[str] = option([], "historical examples, replayed when continuing an earlier reward model")
    replay_share: float = option(0.1, "share of the training set drawn from replay (DeepSeekMath §4: 10%)")
    synthetic_train: int = option(
        0, "with no data.train: generate this many synthetic examples (tests, demo)"
    )
    synthetic_eval: int = option(0, "with no data.eval: this many held-out synthetic examples")
    synthetic_difficulty: int = option(1, "operations per synthetic problem (1-5)")


@dataclasses.dataclass
class RewardTrainConfig(TrainConfig):
    """Reward-model training: ORM or PRM from labelled examples."""

    stage: str = option("reward", "the stage's name, used for job and metric names")
    out_dir: str = option(
        "runs/reward", "checkpoints in <out_dir>/step-<n>/, the reward model in <out_dir>/final"
    )
    optim: RewardOptimConfig = dataclasses.field(default_factory=RewardOptimConfig)
    schedule: RewardScheduleConfig = dataclasses.field(default_factory=RewardScheduleConfig)
    batch: RewardBatchConfig = dataclasses.field(default_factory=RewardBatchConfig)
    checkpoint: RewardCheckpointConfig = dataclasses.field(default_factory=RewardCheckpointConfig)
    reward: RewardSection = dataclasses.field(default_factory=RewardSection)
    data: RewardDataConfig = dataclasses.field(default_factory=RewardDataConfig)

    def validate(self) -> None:
        super().validate()
        checks = [
            (self.reward.kind in ("orm", "prm"), f"reward.kind {self.reward.kind!r} is not orm or prm"),
            (bool(self.reward.step_separator), "reward.step_separator must not be empty"),
            (self.reward.examples_per_step >= 1, "reward.examples_per_step must be >= 1"),
            (self.reward.eval_every >= 0, "reward.eval_every must be >= 0"),
            (
                0 <= self.data.replay_share < 1,
                f"data.replay_share {self.data.replay_share} is outside [0, 1)",
            ),
            (
                bool(self.data.train) or self.data.synthetic_train > 0,
                "no training data: set data.train (JSON-lines files) or data.synthetic_train",
            ),
            (
                self.data.synthetic_train >= 0 and self.data.synthetic_eval >= 0,
                "synthetic counts must be >= 0",
            ),
            (1 <= self.data.synthetic_difficulty <= 5, "data.synthetic_difficulty must be 1..5"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per process per step, so that a step sees reward.examples_per_step examples."""
        per_micro = self.batch.micro_batch_size * world_size
        if self.reward.examples_per_step % per_micro:
            raise ConfigError(
                f"reward.examples_per_step {self.reward.examples_per_step} is not a multiple of "
                f"batch.micro_batch_size {self.batch.micro_batch_size} x {world_size} processes = {per_micro}"
            )
        return self.reward.examples_per_step // per_micro
