"""Iterative RL's reward-model half (DeepSeekMath §4): keep fresh policy samples with their labels, and at
each iteration boundary continue training the reward model on them with 10% replay of older ones.

    trainer = RewardModelTrainer(config, out_dir)
    record_samples(trainer, rollout, config, step)                     # every step, rank 0
    path = trainer.retrain(iteration=2, step=200)                      # <out>/reward-model/iteration-2/final

Samples of step s go to <out>/reward-model/samples/step-<s>.jsonl (written atomically, so a
resumed run rewrites a step's file rather than appending twice). Labels come from the rule
verifier: ORM examples are labelled by the answer's correctness; PRM examples label every step
with the outcome (a proxy; Math-Shepherd rollouts per step are not run here).

The retraining itself is the reward stage (`python -m mathforge.reward.train`) in a child process
of its own, so its process group and memory do not mix with the trainer's; it resumes from its own
checkpoints if the trainer is restarted mid-way.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from mathforge.models.checkpoint import write_text_atomic
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.rollout import Rollout

log = logging.getLogger(__name__)

# The child is a single process: it must not join the trainer's process group.
_DISTRIBUTED_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "TORCHELASTIC_RUN_ID",
)


class RewardModelTrainer:
    """Where the samples and the retrained reward models of a run live, and how one is retrained."""

    def __init__(self, config: GrpoConfig, out_dir: Path):
        self.config = config
        self.root = out_dir / "reward-model"
        self.samples = self.root / "samples"

    def sample_file(self, step: int) -> Path:
        return self.samples / f"step-{step:08d}.jsonl"

    def model_dir(self, iteration: int) -> Path:
        return self.root / f"iteration-{iteration}" / "final"

    def _files(self, first: int, stop: int) -> list[str]:
        found = []
        for path in sorted(self.samples.glob("step-*.jsonl")):
            step = int(path.stem.removeprefix("step-"))
            if first <= step < stop:
                found.append(str(path))
        return found

    def retrain(self, iteration: int, step: int) -> Path:
        """Continues the reward model on the samples of the last iteration, replaying older ones."""
        it = self.config.iterative
        fresh = self._files(step - it.every, step)
        replay = self._files(0, step - it.every)
        if not fresh:
            raise RuntimeError(
                f"no policy samples recorded in steps {step - it.every}..{step - 1} under {self.samples}"
            )
        previous = self.model_dir(iteration - 1)
        init = str(previous) if previous.is_dir() else it.reward_model_init
        overrides = [
            f"out_dir={self.root / f'iteration-{iteration}'}",
            f"seed={self.config.seed + iteration}",
            f"model.init_from={init}",
            f"reward.kind={it.reward_model_kind}",
            f"optim.lr={it.reward_model_lr}",
            f"batch.steps={it.reward_model_steps}",
            f"data.train={json.dumps(fresh)}",
            f"data.replay={json.dumps(replay)}",
            f"data.replay_share={it.replay_fraction if replay else 0.0}",
            f"engine.device={self.config.engine.device}",
            "metrics.progress_bar=off",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _DISTRIBUTED_VARIABLES}
        config_file = ["--config", it.reward_model_config] if it.reward_model_config else []
        command = [sys.executable, "-m", "mathforge.reward.train", *config_file, *overrides]
        log.info("retraining the reward model: %s", " ".join(command))
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"reward-model retraining failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return self.model_dir(iteration)


def record_samples(trainer: RewardModelTrainer, rollout: Rollout, config: GrpoConfig, step: int) -> Path:
    """Writes the first `samples_per_question` outputs of each group, labelled by the rule verifier."""
    keep = min(config.iterative.samples_per_question, rollout.group_size)
    chosen = [q * rollout.group_size + k for q in range(len(rollout.questions)) for k in range(keep)]
    correct = [rollout.correct[i] for i in chosen]  # the rule verifier's, whatever the reward
    lines = []
    for index, label in zip(chosen, correct, strict=True):
        question = rollout.questions[index // rollout.group_size]
        row: dict[str, object] = {
            "question": question.question,
            "response": rollout.texts[index],
            "reference": question.answer,
        }
        if config.iterative.reward_model_kind == "orm":
            row["correct"] = label
        else:
            steps = max(1, len([line for line in rollout.texts[index].split("\n") if line.strip()]))
            row["step_labels"] = [1.0 if label else 0.0] * steps
        lines.append(json.dumps(row))
    path = trainer.sample_file(step)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
