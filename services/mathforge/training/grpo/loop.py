"""The GRPO loop of DeepSeekMath §4 over the sampler and reward services, with exact resume: a
TrainModule on the shared Trainer (train_loop.py: checkpoints, resume, Ctrl-C/SIGTERM, final save).

    torchrun --nproc_per_node=1 -m mathforge.training.grpo --config configs/tiny/grpo.yaml

Each step: take the next scored batch from the rollout source (G outputs per question, sampled
from the published policy version v, or with rollout.max_staleness = k from a version at most k
behind while the trainer was updating); compute group-relative advantages; run mu clipped updates
with the k3 KL to pi_ref; publish the weights as v+1 and make the sampler load them; log the step's
metrics; checkpoint.
Every `iterative.every` steps the reward model is retrained on fresh policy samples with replay and
pi_ref is reset to the current policy. A step's effects (optimizer step, published version,
question position) are committed together by its checkpoint, so a run killed at any moment and
restarted repeats no committed step and loses none. The question position committed is the one
after the last batch trained on: batches sampled ahead and not yet trained on are drawn again, in
the same order, by the resumed run, so each question is trained on exactly once. Every process
draws each whole batch from the one question order and trains on its slice, so that position is
the job's, and a checkpoint resumes on another number of processes or another engine.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mathforge.models.checkpoint import save_model
from mathforge.training.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
)
from mathforge.training.grpo.batches import BatchCollector
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.evaluation import held_out_accuracy, held_out_questions
from mathforge.training.grpo.iterative import (
    RewardModelTrainer,
    continuation_prompt,
    policy_completer,
    record_samples,
)
from mathforge.training.grpo.publish import PolicyPublisher
from mathforge.training.grpo.questions import QuestionPool
from mathforge.training.grpo.rollout import Rollout
from mathforge.training.grpo.rollout_source import (
    LatestPolicyLink,
    OnPolicySource,
    OverlappedSource,
    RolloutSource,
    VersionRegistry,
    check_staleness,
)
from mathforge.training.grpo.services import LoadedModel, ServiceLink
from mathforge.training.grpo.state import RunState
from mathforge.training.grpo.step_metrics import rollout_source_metrics, step_metrics
from mathforge.training.grpo.update import UpdateSettings, policy_update
from mathforge.training.interrupt import stop_at_once
from mathforge.training.metrics import TrainMetrics
from mathforge.training.objective.methods import (
    METHODS,
    CoefficientSettings,
    logprob_sums,
    method_coefficients,
)
from mathforge.training.objective.sources import method_source
from mathforge.training.sharded_load import FrozenModel, load_frozen
from mathforge.training.train_loop import BatchResult, TrainModule


class GrpoModule(TrainModule):
    """GRPO's TrainModule: pi_ref, the question pool, the services, the rollout source and the run
    state around the shared Trainer's steps. One batch is one GRPO step: mu clipped updates
    (optimizer steps of their own), then the weights published as the next version."""

    # Every process draws each whole batch from the same question order (or reads the whole cached
    # batch, for the offline methods) and takes its slice, so the data position is global.
    shared_data = True

    def __init__(self, config: GrpoConfig, env: DistEnv, tokenizer: PreTrainedTokenizerBase):
        self.config = config
        self.env = env
        self.tokenizer = tokenizer
        self.out = Path(config.out_dir)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.pool = QuestionPool.from_config(config.task, config.seed)
        self.state = RunState(reference=config.model.init_from)
        self.link = ServiceLink(config.services)
        self.versions = VersionRegistry()  # the one record of the policy versions this run published
        self.background_link: ServiceLink | None = None  # the overlapped sampler's own link
        self.source: RolloutSource | None = None
        self.settings = UpdateSettings.from_config(config, off_policy=config.rollout.max_staleness > 0)
        self.publisher = PolicyPublisher(config.services, self.link, env, self.out)
        self.rm_trainer = (
            RewardModelTrainer(config, self.out) if config.iterative.retrain_reward_model else None
        )
        self.method = METHODS[config.objective.method]
        if not self.method.kl:  # only GRPO's coefficient has the KL part (DeepSeekMath §5.2.1)
            self.settings = dataclasses.replace(
                self.settings, clip=dataclasses.replace(self.settings.clip, beta=0.0)
            )
        self.wants_reference = self.settings.clip.beta > 0 or self.method.needs_reference
        self.frozen: FrozenModel | None = None  # pi_ref: partitioned under ZeRO-3 (sharded_load.py)
        self.engine: Any = None  # the Trainer's, given by begin()
        self.metrics: TrainMetrics | None = None
        self.last: Rollout | None = None  # the batch trained on last (its pool position is committed)

    @property
    def policy(self) -> PreTrainedModel:
        return self.engine.module  # type: ignore[no-any-return]

    @property
    def reference(self) -> torch.nn.Module | None:
        return self.frozen.model if self.frozen is not None else None

    def event(self, name: str, **fields: Any) -> None:
        assert self.metrics is not None, "begin() gives the module the run's metrics"
        self.metrics.event(name, **fields)

    # ---- the Trainer's hooks ---------------------------------------------------------------
    def start_info(self) -> dict[str, Any]:
        return {"outputs_per_step": self.config.outputs_per_step}

    def resume_info(self) -> dict[str, Any]:
        return {"weights_version": self.state.weights_version}

    def done_info(self) -> dict[str, Any]:
        return {"weights_version": self.versions.current.version}

    def state_dict(self) -> dict[str, Any]:
        assert self.last is not None, "a checkpoint follows a trained batch"
        return self.checkpoint_state(self.last)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = RunState.from_dict(state)
        self.pool.load_state_dict(self.state.questions)

    def begin(self, engine: Any, start_step: int, metrics: TrainMetrics) -> None:
        self.engine, self.metrics = engine, metrics
        if self.wants_reference:
            self.load_reference(self.state.reference, start_step)
        self.sync_policy()
        if start_step == 0:
            self.evaluate(0)
        self.source = self.rollout_source(start_step)

    def train_batch(self, engine: Any, step: int) -> BatchResult:
        every = self.config.iterative.every
        if every and step > 0 and step % every == 0 and self.state.iteration < step // every:
            self.next_iteration(step)
        assert self.source is not None, "begin() opens the rollout source"
        rollout, values = self.step(step, self.source)
        self.last = rollout
        self.log_batch(step, rollout)
        return BatchResult(loss=values["loss"], values=values, stepped=True)

    def after_step(self, engine: Any, step: int, done: bool, metrics: TrainMetrics) -> None:
        every = self.config.eval.every
        if every and step % every == 0 and not done:
            self.evaluate(step)

    def finish(self, engine: Any, metrics: TrainMetrics) -> None:
        self.close_source()
        self.evaluate(self.config.batch.steps)

    def close(self) -> None:
        self.close_source()
        if self.frozen is not None:
            self.frozen.release()
            self.frozen = None
        self.link.close()

    def load_reference(self, path: str, step: int) -> None:
        """Loads pi_ref from `path` (partitioned under ZeRO-3) and says what this process holds."""
        self.frozen = load_frozen(self.config, self.env, path)
        held, total = self.frozen.elements()
        partitioned = self.frozen.engine is not None
        self.event("reference", step=step, path=path, partitioned=partitioned, held=held, elements=total)

    def close_source(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        if self.background_link is not None:
            self.background_link.close()
            self.background_link = None

    # ---- weights ---------------------------------------------------------------------------
    def publish(self, version: int) -> float:
        """Writes the policy as `version` and makes the sampler serve it; returns the seconds taken."""
        seconds = self.publisher.publish(self.engine, self.policy, self.tokenizer, version)
        self.serving(version)
        return seconds

    def serving(self, version: int) -> None:
        """Records that the sampler serves `version`: for this link's guard and for the registry."""
        loaded = self.publisher.loaded(version)
        self.link.policy = loaded
        self.versions.publish(version, loaded.path)

    def sync_policy(self) -> None:
        """At (re)start: make the sampler serve exactly this policy under a version it accepts.

        A resumed run whose sampler still serves the checkpoint's version keeps it (those are the
        checkpoint's weights). Otherwise (a fresh run, a sampler that restarted, or one holding
        weights published after the checkpoint) the policy is published as a new version above
        both, because the sampler only accepts increasing versions.
        """
        with stop_at_once():  # Ctrl-C while waiting for the services stops now, not after the wait
            self.link.wait_ready()
        served = self.link.served_policy_version() if self.env.is_main else 0
        served = int(all_reduce_sum(served, self.env.device))
        known = self.state.weights_version
        if known and served == known and self.publisher.holds(known):
            self.serving(known)
        else:
            self.publish(max(served, known) + 1)
        if self.state.reward_model_version:
            # the link's Score guard reloads it if the reward service no longer serves this version
            self.link.reward_models[self.config.iterative.reward_model_kind] = LoadedModel(
                self.state.reward_model_version, self.state.reward_model_path
            )

    # ---- one step --------------------------------------------------------------------------
    def rollout_source(self, first_batch: int) -> RolloutSource:
        """Batches from `first_batch` on: sampled on demand, or ahead in the background when
        rollout.max_staleness >= 1 (its own link and tokenizer, so no state is shared with the
        trainer's thread but the version registry and the question pool it alone draws from)."""
        config, env = self.config, self.env
        bound = config.rollout.max_staleness
        if bound == 0:
            collect = BatchCollector(
                self.pool, self.link, self.link, self.tokenizer, config, env.rank, env.world_size
            )
            if self.method.source != "policy":
                return method_source(
                    self.method, collect, self.pool, self.tokenizer, config, env, first_batch
                )
            return OnPolicySource(collect, first_batch)
        link = self.background_link = ServiceLink(config.services)
        link.reward_models = dict(self.link.reward_models)
        latest = LatestPolicyLink(link, self.versions, config.services.load_timeout_s)
        collect = BatchCollector(
            self.pool, latest, latest, copy.deepcopy(self.tokenizer), config, env.rank, env.world_size
        )
        return OverlappedSource(collect, self.versions, bound, first_batch, end_batch=config.batch.steps)

    def advantages(self, rollout: Rollout) -> torch.Tensor:
        """The method's gradient coefficients (GRPO: the group-relative advantages)."""
        objective = self.config.objective
        settings = CoefficientSettings(objective.supervision, objective.normalisation(), objective.dpo_beta)

        def sums(part: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
            assert self.reference is not None
            return logprob_sums(
                self.engine.module, self.reference, part, self.pad_id, self.config.batch.micro_batch_size
            )

        return method_coefficients(self.method, rollout, settings, sums)

    def step(self, step: int, source: RolloutSource) -> tuple[Rollout, dict[str, float]]:
        began = time.perf_counter()
        rollout = source.next()
        waited = time.perf_counter() - began
        if rollout.batch != step:
            raise RuntimeError(f"step {step} got batch {rollout.batch}: the rollout source lost its place")
        bound = (
            self.config.rollout.max_staleness if self.method.source == "policy" else self.config.batch.steps
        )
        staleness = check_staleness(rollout.output_versions(), self.versions.current.version, bound)
        advantages = self.advantages(rollout)
        update_began = time.perf_counter()
        self.policy.train()
        stats = policy_update(
            self.engine,
            self.reference,
            rollout,
            advantages,
            self.settings,
            self.env,
            step_seed=self.config.seed * 7_919 + step,
            pad_id=self.pad_id,
        )
        update_seconds = time.perf_counter() - update_began
        if self.rm_trainer is not None and self.env.is_main:
            record_samples(self.rm_trainer, rollout, self.config, step)
        publish_seconds = self.publish(self.versions.current.version + 1)
        values = step_metrics(rollout, advantages, stats, self.env)
        values.update(
            rollout_source_metrics(rollout, staleness, self.config.rollout.questions_per_step, self.env)
        )
        values.update(
            {
                "time_sampling_s": rollout.sample_seconds,
                "time_scoring_s": rollout.score_seconds,
                "time_updating_s": update_seconds,
                "time_publishing_s": publish_seconds,
                "time_waiting_s": waited,
                "step_seconds": time.perf_counter() - began,
                "lr": self.engine.lr(),
                "weights_version": float(self.versions.current.version),
                "service_recoveries": float(self.link.recoveries),
                "rollouts_pending": float(source.pending()),
            }
        )
        values["tokens_per_s"] = values["response_tokens"] / max(values["step_seconds"], 1e-9)
        return rollout, values

    # ---- iterative RL ----------------------------------------------------------------------
    def next_iteration(self, step: int) -> None:
        """Retrains and reloads the RM (when configured) and resets pi_ref to the current policy."""
        iteration = step // self.config.iterative.every
        kind = self.config.iterative.reward_model_kind
        if self.rm_trainer is not None:
            version = 0
            loaded = self.link.reward_models.get(kind)
            if self.env.is_main:
                complete = policy_completer(self.link, self.config, self.config.seed * 31 + iteration)
                prompt = continuation_prompt(self.tokenizer, self.config.task.instruction)
                path = str(self.rm_trainer.retrain(iteration, step, complete, prompt))
                version = self.link.load_reward_model(kind, (loaded.version if loaded else 0) + 1, path)
            version = int(all_reduce_sum(version, self.env.device))
            self.link.reward_models[kind] = LoadedModel(version, str(self.rm_trainer.model_dir(iteration)))
        reference = self.out / "reference" / f"iteration-{iteration}"
        state_dict = self.engine.full_state_dict()
        if self.env.is_main:
            save_model(self.policy, self.tokenizer, reference, state_dict)
        barrier()
        if self.frozen is not None:
            # from the saved copy: under ZeRO-3 no process holds the whole policy in memory
            self.frozen.release()
            self.load_reference(str(reference), step)
        self.state.reference = str(reference)
        self.state.iteration = iteration
        self.event(
            "iteration",
            step=step,
            iteration=iteration,
            reference=str(reference),
            reward_model_version=loaded.version if (loaded := self.link.reward_models.get(kind)) else 0,
        )

    def evaluate(self, step: int) -> None:
        if self.config.eval.every <= 0 or not self.env.is_main:
            return
        accuracy = held_out_accuracy(self.link, self.tokenizer, held_out_questions(self.config), self.config)
        self.event(
            "eval",
            step=step,
            held_out_accuracy=accuracy,
            problems=self.config.eval.problems,
            weights_version=self.versions.current.version,
        )

    def checkpoint_state(self, rollout: Rollout) -> dict[str, Any]:
        """The run state as of having trained on `rollout`: versions from the registry and the link."""
        self.state.weights_version = self.versions.current.version
        self.state.questions = rollout.pool_state
        loaded = self.link.reward_models.get(self.config.iterative.reward_model_kind)
        if loaded is not None:  # a reward-service restart may have moved it to a new version
            self.state.reward_model_version, self.state.reward_model_path = loaded.version, loaded.path
        return self.state.to_dict()

    def log_batch(self, step: int, rollout: Rollout) -> None:
        """Which questions (a short digest of each) the step trained on, over all processes in rank
        order (the whole global batch), and from which versions."""
        digests = [hashlib.sha1(q.question.encode()).hexdigest()[:10] for q in rollout.questions]
        versions = rollout.output_versions()
        mine = (digests, min(versions, default=0), max(versions, default=0))
        every = [mine]
        if self.env.distributed:
            every = [mine] * self.env.world_size
            dist.all_gather_object(every, mine)
        self.event(
            "batch",
            step=step + 1,
            batch=rollout.batch,
            questions=[d for part in every for d in part[0]],
            versions=[min(part[1] for part in every), max(part[2] for part in every)],
        )
