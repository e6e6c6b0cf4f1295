"""Iterative RL's reward-model half (DeepSeekMath §4): keep fresh policy samples with their labels, and at
each iteration boundary continue training the reward model on them with 10% replay of older ones.

    trainer = RewardModelTrainer(config, out_dir)
    record_samples(trainer, rollout, config, step)                     # every step, rank 0
    path = trainer.retrain(iteration=2, step=200)                      # <out>/reward-model/iteration-2/final

Samples of step s go to <out>/reward-model/samples/step-<s>.jsonl (written atomically, so a
resumed run rewrites a step's file rather than appending twice), each with the rule verifier's
verdict and whether it was cut at the token limit. At a boundary the last iteration's samples are
labelled into <out>/reward-model/labels/iteration-<i>.jsonl: an ORM by the answer's correctness, a
PRM the Math-Shepherd way (the policy continues every step prefix through the sampler; or, with
iterative.labels=outcome, the cheaper proxy). The retraining replays `replay_fraction` from all
earlier data: the RM's original training set (<out>/reward-model/original.jsonl, made once from
iterative.reward_model_config) and every earlier iteration's labels. iterative_data.py has the rules,
including those for blank and unfinished outputs.

The retraining itself is the reward stage as a job of its own (reward/retrain_job.py): locally a
separate torchrun process group, on a cluster a PyTorchJob created through `mathforge submit
reward`'s code (iterative.reward_job), waited for with iterative.reward_job_deadline_s; it resumes
from its own checkpoints if the trainer is restarted mid-way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from mathforge.models.checkpoint import write_text_atomic
from mathforge.reward.data import RewardExample, write_examples
from mathforge.reward.retrain_job import run_reward_job
from mathforge.reward.shepherd import Completer, ShepherdSettings
from mathforge.reward.steps import DEFAULT_SEPARATOR
from mathforge.reward.train_config import RewardTrainConfig
from mathforge.training.config import load_config
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.iterative_data import (
    RecordedSample,
    RetrainData,
    label_samples,
    read_samples,
    write_labels,
)
from mathforge.training.grpo.questions import prompt_text
from mathforge.training.grpo.rollout import Rollout
from mathforge.v1 import sampler_pb2

log = logging.getLogger(__name__)


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

    def labels_file(self, iteration: int) -> Path:
        return self.root / "labels" / f"iteration-{iteration}.jsonl"

    @property
    def original_file(self) -> Path:
        return self.root / "original.jsonl"

    def _reward_config(self):  # imported lazily: the reward stage pulls in its trainer
        from mathforge.reward.train_config import RewardTrainConfig
        from mathforge.training.config import load_config

        it = self.config.iterative
        config_file = ["--config", it.reward_model_config] if it.reward_model_config else []
        return load_config(RewardTrainConfig, [*config_file, f"reward.kind={it.reward_model_kind}"])

    def original_examples(self) -> Path | None:
        """The RM's original training set as a file (made once), or None when it had none we can
        name (no iterative.reward_model_config)."""
        if not self.config.iterative.reward_model_config:
            return None
        if not self.original_file.is_file():
            from mathforge.reward.trainer import load_data

            reward_config = self._reward_config()
            reward_config.data.replay = []
            examples: list[RewardExample] = load_data(reward_config, "train")
            if not examples:
                return None
            write_examples(self.original_file, examples, self.config.iterative.reward_model_kind)
        return self.original_file

    def prepare(
        self,
        iteration: int,
        step: int,
        complete: Completer | None = None,
        prompt: Callable[[str, str], str] | None = None,
    ) -> RetrainData:
        """Labels the last iteration's samples (once: a resumed retraining reuses the file) and
        lists the earlier data to replay."""
        it = self.config.iterative
        fresh = self._files(step - it.every, step)
        if not fresh:
            raise RuntimeError(
                f"no policy samples recorded in steps {step - it.every}..{step - 1} under {self.samples}"
            )
        labels = self.labels_file(iteration)
        if not labels.is_file():
            separator = (
                self._reward_config().reward.step_separator if it.reward_model_config else DEFAULT_SEPARATOR
            )
            settings = ShepherdSettings(
                samples_per_step=it.shepherd_samples_per_step,
                estimation=it.shepherd_estimation,
                step_separator=separator,
                batch_prompts=self.config.rollout.prompts_per_call,
            )
            examples = label_samples(
                read_samples(fresh), it.reward_model_kind, it.labels, separator, complete, settings, prompt
            )
            write_labels(labels, examples, it.reward_model_kind)
        original = self.original_examples()
        earlier = [self.labels_file(k) for k in range(1, iteration) if self.labels_file(k).is_file()]
        replay = [str(path) for path in ([original] if original else []) + earlier]
        return RetrainData([str(labels)], replay, it.replay_fraction if replay else 0.0)

    def retrain(
        self,
        iteration: int,
        step: int,
        complete: Completer | None = None,
        prompt: Callable[[str, str], str] | None = None,
    ) -> Path:
        """Continues the reward model on the last iteration's labelled samples, replaying earlier data."""
        it = self.config.iterative
        data = self.prepare(iteration, step, complete, prompt)
        previous = self.model_dir(iteration - 1)
        init = str(previous) if previous.is_dir() else it.reward_model_init
        overrides = [
            f"out_dir={self.root / f'iteration-{iteration}'}",
            f"seed={self.config.seed + iteration}",
            f"model.init_from={init}",
            f"reward.kind={it.reward_model_kind}",
            f"optim.lr={it.reward_model_lr}",
            f"batch.steps={it.reward_model_steps}",
            f"data.train={json.dumps(data.train)}",
            f"data.replay={json.dumps(data.replay)}",
            f"data.replay_share={data.share}",
            f"engine.device={self.config.engine.device}",
            "metrics.progress_bar=off",
        ]
        config_file = ["--config", it.reward_model_config] if it.reward_model_config else []
        overrides.append(f"job.name=mathforge-reward-iteration-{iteration}")
        rm_config = load_config(RewardTrainConfig, [*config_file, *overrides])
        return run_reward_job(rm_config, it.reward_job, it.reward_job_deadline_s, it.reward_job_processes)


def record_samples(trainer: RewardModelTrainer, rollout: Rollout, config: GrpoConfig, step: int) -> Path:
    """Writes the first `samples_per_question` outputs of each group with the rule verifier's verdict
    (whatever the reward) and whether each was cut at the token limit; labelled at the boundary."""
    keep = min(config.iterative.samples_per_question, rollout.group_size)
    chosen = [q * rollout.group_size + k for q in range(len(rollout.questions)) for k in range(keep)]
    lines = []
    for index in chosen:
        question = rollout.questions[index // rollout.group_size]
        truncated = bool(rollout.truncated[index]) if rollout.truncated else False
        sample = RecordedSample(
            question.question, rollout.texts[index], question.answer, bool(rollout.correct[index]), truncated
        )
        lines.append(json.dumps(sample.to_json()))
    path = trainer.sample_file(step)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def continuation_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str) -> Callable[[str, str], str]:
    """The prompt a step prefix is continued from: the rollout's own prompt, then the prefix."""
    return lambda question, prefix: prompt_text(tokenizer, question, instruction) + prefix


def policy_completer(link: Any, config: GrpoConfig, seed: int) -> Completer:
    """Math-Shepherd continuations from the policy the sampler serves (the trainer's current one),
    sampled as the rollouts are: same temperature, nucleus and token limit."""
    r = config.rollout

    def complete(prompts: list[str], n: int) -> list[list[str]]:
        params = sampler_pb2.SamplingParams(
            n=n,
            temperature=r.temperature,
            top_p=r.top_p,
            top_k=r.top_k,
            max_tokens=r.max_new_tokens,
            seed=seed,
        )
        texts: list[list[str]] = []
        for first in range(0, len(prompts), r.prompts_per_call):
            response = link.generate(prompts[first : first + r.prompts_per_call], params)
            for result in response.results:
                ordered = sorted(result.completions, key=lambda c: c.sample_index)
                texts.append([c.text for c in ordered])
        return texts

    return complete
