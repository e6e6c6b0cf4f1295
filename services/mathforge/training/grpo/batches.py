"""One training batch: draw the step's questions, sample G outputs each, score them; with dynamic
sampling (DAPO), drop the groups whose rewards are all equal and draw more questions to refill.

    collect = BatchCollector(pool, sampling, scoring, tokenizer, config, rank=0, world_size=1)
    rollout = collect(batch=7)      # this process's share of batch 7, scored

A group whose G rewards are all equal has zero advantage everywhere: it costs a forward and backward
and only moves the KL term. Dynamic sampling replaces such groups with fresh questions, at most
`max_extra_draws` refill rounds per batch; when the rounds run out the batch trains with the groups
it has (fewer than configured; the update handles a short batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.questions import QuestionPool
from mathforge.training.grpo.rollout import (
    Rollout,
    Sampling,
    Scoring,
    join_rollouts,
    sample_groups,
    score_rollout,
)
from mathforge.training.grpo.unfinished import settle_unfinished


def signal_groups(rollout: Rollout) -> list[int]:
    """The groups (question indices) whose rewards are not all equal."""
    groups = rollout.rewards.view(-1, rollout.group_size)
    return [q for q, g in enumerate(groups) if bool(g.max() != g.min())]


@dataclass
class BatchCollector:
    """Collects this process's share of each batch from the question pool and the services."""

    pool: QuestionPool
    sampling: Sampling
    scoring: Scoring
    tokenizer: PreTrainedTokenizerBase
    config: GrpoConfig
    rank: int = 0
    world_size: int = 1

    def seed(self, batch: int, draw: int) -> int:
        """The draw's seed, one for all processes: each call's seed adds its place in the draw."""
        return self.config.seed * 1_000_003 + batch * 101 + draw * 7_919_393

    def draw(self, batch: int, draw: int, questions: int) -> Rollout:
        """Samples and scores `questions` more questions' groups (this process's share): every
        process takes the same `questions` from the pool, the job's one question order, and keeps
        its slice, so the pool's position is global and the draw does not depend on the world size."""
        per_rank = questions // self.world_size
        taken = self.pool.take(questions)
        first = self.rank * per_rank
        mine = taken[first : first + per_rank]
        rollout = sample_groups(
            self.sampling, self.tokenizer, mine, self.config, self.seed(batch, draw), first_index=first
        )
        score_rollout(self.scoring, self.tokenizer, rollout, self.config)
        settle_unfinished(rollout)  # blank and cut outputs count as wrong (unfinished.py)
        return rollout

    def __call__(self, batch: int) -> Rollout:
        wanted = self.config.rollout.questions_per_step
        first = self.draw(batch, 0, wanted)
        rollout = first
        rollout.sampled_groups = len(first.questions)
        if self.config.rollout.dynamic_sampling:
            rollout = self.refill(batch, first)
        rollout.batch = batch
        rollout.pool_state = self.pool.state_dict()
        return rollout

    def refill(self, batch: int, first: Rollout) -> Rollout:
        """Keeps the groups with signal, drawing more questions until the batch is full or the
        refill rounds run out. A batch with no signal at all keeps its first draw (KL-only)."""
        wanted = len(first.questions)
        sampled, kept = [first], [first.groups(signal_groups(first))]
        have = len(kept[0].questions)
        draw = 0
        while have < wanted and draw < self.config.rollout.max_extra_draws:
            draw += 1
            more = self.draw(batch, draw, (wanted - have) * self.world_size)
            sampled.append(more)
            part = more.groups(signal_groups(more))
            kept.append(part)
            have += len(part.questions)
        groups = sum(len(part.questions) for part in sampled)
        rollout = join_rollouts(kept) if have else first
        if have > wanted:
            rollout = rollout.groups(range(wanted))
        rollout.sampled_groups = groups
        rollout.dropped_groups = groups - len(rollout.questions)
        rollout.sample_seconds = sum(part.sample_seconds for part in sampled)
        rollout.score_seconds = sum(part.score_seconds for part in sampled)
        return rollout
