"""Where a method's outputs come from, beyond the GRPO loop's own on-policy sampling.

    source = OfflineSource(collect, cache_dir, first_batch=0, end_batch=steps, env=env)   # RFT, DPO
    collect = WorkedSolutions(pool, tokenizer, instruction, solutions)           # SFT

Offline (RFT, DPO; DeepSeekMath §5.2.1: "sampled from the SFT model"): before the first update, while
the sampler still serves the starting policy, every batch the run will train on is sampled and
scored once and kept under `cache_dir` (one file per whole global batch, written atomically by
rank 0 from every process's share). The run then trains on them in order whatever the policy has
become, each process on its slice of the global batch, so a resumed run reads the same files on
any number of processes. One that lost some after its first update cannot sample them again from
the starting policy, and says so.

SFT trains on human-written solutions: the task's worked solutions (the synthetic problems carry
one), each as a group of one output with coefficient 1.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import PreTrainedTokenizerBase

from mathforge.training.distributed import DistEnv
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.questions import QuestionPool, prompt_text
from mathforge.training.grpo.rollout import Rollout, join_rollouts
from mathforge.training.grpo.rollout_source import OnPolicySource
from mathforge.training.objective.methods import Method
from mathforge.training.synthetic_math import generate_problems

log = logging.getLogger(__name__)


class OfflineSource:
    """Global batches sampled once from the starting policy, then replayed in order, each process
    taking its slice (a RolloutSource)."""

    def __init__(
        self,
        collect: Callable[[int], Rollout],
        cache_dir: Path,
        first_batch: int,
        end_batch: int,
        env: DistEnv,
    ):
        self.cache_dir = cache_dir
        self.batch = first_batch
        self.end_batch = end_batch
        self.env = env
        # Rank 0's listing for every process: one that looked after rank 0 began writing would
        # see fewer missing batches and leave its peers waiting in the gather.
        missing = [[b for b in range(end_batch) if not self.file(b).is_file()] if env.is_main else []]
        if env.distributed:
            dist.broadcast_object_list(missing, src=0)
        if missing[0] and first_batch > 0:
            raise RuntimeError(
                f"{len(missing[0])} offline batches (first: {missing[0][0]}) are missing under {cache_dir}, "
                "and the policy has been updated since they were sampled: the starting policy is no "
                "longer served"
            )
        for batch in missing[0]:
            self.store(batch, collect(batch))
        if env.distributed:
            dist.barrier()  # every file written before any process reads one
        if missing[0] and env.is_main:
            log.info(
                "sampled %d offline batches from the starting policy into %s", len(missing[0]), cache_dir
            )

    def file(self, batch: int) -> Path:
        return self.cache_dir / f"batch-{batch:08d}.pkl"

    def store(self, batch: int, mine: Rollout) -> None:
        """Writes the global batch of which `mine` is this process's share (rank 0 writes)."""
        parts: list[Rollout] | None = [mine]
        if self.env.distributed:
            parts = [mine] * self.env.world_size if self.env.is_main else None
            dist.gather_object(mine, parts, dst=0)
        if parts is None:
            return
        whole = join_rollouts(parts)
        whole.batch = batch
        whole.pool_state = mine.pool_state  # every process drew the same questions: one position
        whole.sampled_groups = sum(part.sampled_groups for part in parts)
        whole.dropped_groups = sum(part.dropped_groups for part in parts)
        self.write(batch, whole)

    def write(self, batch: int, rollout: Rollout) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        pickle.dump(rollout, buffer)
        path = self.file(batch)
        staging = path.with_name(path.name + ".tmp")
        staging.write_bytes(buffer.getvalue())
        os.replace(staging, path)  # a killed run never leaves half a batch under the final name

    def next(self) -> Rollout:
        with open(self.file(self.batch), "rb") as handle:
            whole: Rollout = pickle.load(handle)  # our own cache, written above
        self.batch += 1
        return share_of(whole, self.env.rank, self.env.world_size)

    def pending(self) -> int:
        return 0

    def close(self) -> None:
        return None


def share_of(whole: Rollout, rank: int, world_size: int) -> Rollout:
    """Process `rank`'s slice of a global batch: its contiguous share of the groups, as the on-policy
    draw gives it. Rank 0's share also carries the batch's dropped and extra groups, so the sums over
    the processes (rollout_source_metrics) are the batch's."""
    count = len(whole.questions)
    if count % world_size:
        raise ValueError(
            f"offline batch {whole.batch} holds {count} questions, which do not split over "
            f"{world_size} processes: resume it on a number of processes that divides {count}"
        )
    per_rank = count // world_size
    mine = whole.groups(range(rank * per_rank, (rank + 1) * per_rank))
    mine.batch, mine.pool_state = whole.batch, whole.pool_state
    mine.sampled_groups = per_rank + (whole.sampled_groups - count if rank == 0 else 0)
    mine.dropped_groups = whole.dropped_groups if rank == 0 else 0
    return mine


class WorkedSolutions:
    """SFT's batches: the next questions of the pool with their worked solutions (a `collect`)."""

    def __init__(
        self,
        pool: QuestionPool,
        tokenizer: PreTrainedTokenizerBase,
        instruction: str,
        solutions: Mapping[str, str],
        questions_per_batch: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.rank, self.world_size = rank, world_size
        self.pool = pool
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.solutions = solutions
        self.questions_per_batch = questions_per_batch

    def __call__(self, batch: int) -> Rollout:
        per_rank = self.questions_per_batch // self.world_size
        questions = self.pool.take(self.questions_per_batch)[
            self.rank * per_rank : (self.rank + 1) * per_rank
        ]
        unknown = [q.question for q in questions if q.question not in self.solutions]
        if unknown:
            raise ValueError(f"objective.method=sft: no worked solution for the question {unknown[0]!r}")
        eos = self.tokenizer.eos_token_id
        rollout = Rollout(list(questions), 1, 0, [], [], [], [], [])
        for question in questions:
            prompt = prompt_text(self.tokenizer, question.question, self.instruction)
            rollout.prompt_ids.append(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            solution = self.solutions[question.question]
            ids = self.tokenizer(solution, add_special_tokens=False)["input_ids"] + (
                [eos] if eos is not None else []
            )
            rollout.completion_ids.append(ids)
            rollout.sampler_logprobs.append([0.0] * len(ids))
            rollout.texts.append(solution)
            rollout.truncated.append(False)
        rollout.rewards = torch.ones(len(questions))
        rollout.correct = [True] * len(questions)
        rollout.step_rewards = [[] for _ in questions]
        rollout.step_ends = [[] for _ in questions]
        rollout.batch = batch
        rollout.pool_state = self.pool.state_dict()
        return rollout


def worked_solutions(task: Any, seed: int) -> dict[str, str]:
    """The worked solution of each question of the task: the synthetic problems' own, and a
    "solution" field of a task file's records where they have one."""
    found: dict[str, str] = {}
    for path in task.paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line) if line.strip() else {}
                if isinstance(record.get("solution"), str):
                    found[str(record["question"])] = record["solution"]
    if task.synthetic_problems:
        for problem in generate_problems(task.synthetic_problems, seed, task.synthetic_difficulty):
            found[problem.question] = problem.solution
    return found


def method_source(
    method: Method,
    collect: Callable[[int], Rollout],
    pool: QuestionPool,
    tokenizer: PreTrainedTokenizerBase,
    config: GrpoConfig,
    env: DistEnv,
    first_batch: int,
) -> OfflineSource | OnPolicySource:
    """The rollout source of a method that does not sample the current policy."""
    if method.source == "offline":
        return OfflineSource(collect, Path(config.out_dir) / "offline", first_batch, config.batch.steps, env)
    solutions = worked_solutions(config.task, config.seed)
    batches = WorkedSolutions(
        pool,
        tokenizer,
        config.task.instruction,
        solutions,
        config.rollout.questions_per_step,
        env.rank,
        env.world_size,
    )
    return OnPolicySource(batches, first_batch)
