"""One rollout: G outputs per question from the sampler, scored by the reward service.

    rollout = sample_groups(link, tokenizer, questions, config, seed=step_seed)
    score_rollout(link, tokenizer, rollout, config)
    rollout.rewards          # (N,) one scalar per output, groups of G contiguous
    rollout.versions         # (N,) the weights version that produced each output
    rollout.step_ends        # per output, the policy-token index where each PRM step ends

Process rewards come with character spans of each step in the response text; they are mapped onto
the policy's own tokens (the reward model may tokenise differently): a step ends at the first
policy token whose decoded text reaches the step's last character.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase

from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.questions import Question, prompt_text
from mathforge.training.grpo.services import all_at_once
from mathforge.v1 import reward_pb2, sampler_pb2

REWARD_KIND = {
    "rule": reward_pb2.REWARD_RULE,
    "orm": reward_pb2.REWARD_ORM,
    "prm": reward_pb2.REWARD_PRM,
    "mix": reward_pb2.REWARD_MIX,
}
SCORE_ITEMS_PER_CALL = 256
GREEDY_PROMPTS_PER_CALL = 64


class Sampling(Protocol):
    """What sampling needs from the sampler service (ServiceLink, or a link pinned to a version)."""

    def generate(
        self, prompts: Sequence[str], params: sampler_pb2.SamplingParams
    ) -> sampler_pb2.GenerateResponse: ...


class Scoring(Protocol):
    """What scoring needs from the reward service."""

    def score(self, request: reward_pb2.RewardRequest) -> reward_pb2.RewardResponse: ...


@dataclass
class Rollout:
    """The outputs of one step, in group order (question q's G outputs are rows q*G .. q*G+G-1)."""

    questions: list[Question]
    group_size: int
    weights_version: int  # the oldest version among the outputs
    prompt_ids: list[list[int]]  # one per question
    completion_ids: list[list[int]]  # one per output
    sampler_logprobs: list[list[float]]
    texts: list[str]
    truncated: list[bool]
    rewards: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    correct: list[bool] = field(default_factory=list)
    step_rewards: list[list[float]] = field(default_factory=list)
    step_ends: list[list[int]] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)  # per output; empty = all weights_version
    sample_seconds: float = 0.0
    score_seconds: float = 0.0
    batch: int = 0  # the batch's index in the run (= the step that trains on it)
    pool_state: dict[str, int] = field(default_factory=dict)  # the question order after its last draw
    sampled_groups: int = 0  # groups sampled for this batch (> len(questions) when groups were dropped)
    dropped_groups: int = 0  # groups dynamic sampling dropped (all rewards equal)

    @property
    def size(self) -> int:
        return len(self.completion_ids)

    def prompt_of(self, output: int) -> list[int]:
        return self.prompt_ids[output // self.group_size]

    def output_versions(self) -> list[int]:
        return self.versions or [self.weights_version] * self.size

    def groups(self, keep: Sequence[int]) -> Rollout:
        """The rollout of the groups `keep` (question indices), in that order, with their scores."""
        rows = [q * self.group_size + j for q in keep for j in range(self.group_size)]
        versions = self.output_versions()

        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in rows] if values else []

        kept_versions = [versions[i] for i in rows]
        return Rollout(
            [self.questions[q] for q in keep],
            self.group_size,
            min(kept_versions, default=self.weights_version),
            [self.prompt_ids[q] for q in keep],
            pick(self.completion_ids),
            pick(self.sampler_logprobs),
            pick(self.texts),
            pick(self.truncated),
            rewards=self.rewards[rows] if self.rewards.numel() else self.rewards,
            correct=pick(self.correct),
            step_rewards=pick(self.step_rewards),
            step_ends=pick(self.step_ends),
            versions=kept_versions,
            sample_seconds=self.sample_seconds,
            score_seconds=self.score_seconds,
        )


def join_rollouts(parts: Sequence[Rollout]) -> Rollout:
    """One rollout of `parts`' groups in order (the parts must share the group size)."""
    first = parts[0]
    versions = [v for part in parts for v in part.output_versions()]
    joined = Rollout(
        [q for part in parts for q in part.questions],
        first.group_size,
        min(versions, default=first.weights_version),
        [ids for part in parts for ids in part.prompt_ids],
        [ids for part in parts for ids in part.completion_ids],
        [lp for part in parts for lp in part.sampler_logprobs],
        [t for part in parts for t in part.texts],
        [t for part in parts for t in part.truncated],
        rewards=torch.cat([part.rewards for part in parts]),
        correct=[c for part in parts for c in part.correct],
        step_rewards=[r for part in parts for r in part.step_rewards],
        step_ends=[e for part in parts for e in part.step_ends],
        versions=versions,
        sample_seconds=sum(part.sample_seconds for part in parts),
        score_seconds=sum(part.score_seconds for part in parts),
    )
    if any(part.group_size != first.group_size for part in parts):
        raise ValueError("cannot join rollouts of different group sizes")
    return joined


def sampling_params(config: GrpoConfig, seed: int, greedy: bool = False) -> sampler_pb2.SamplingParams:
    r = config.rollout
    return sampler_pb2.SamplingParams(
        n=1 if greedy else r.group_size,
        temperature=0.0 if greedy else r.temperature,
        top_p=r.top_p,
        top_k=r.top_k,
        max_tokens=r.max_new_tokens,
        seed=seed,
    )


def call_seed(seed: int, first: int, chunk: int) -> int:
    """The seed of the Generate call whose first question is the batch's `first`: the same for
    every world size; a call starting between multiples of `chunk` gets a seed no aligned one has."""
    return (seed * 7919 + first // chunk + (first % chunk) * 1_000_003) & 0x7FFFFFFF


def sample_groups(
    link: Sampling,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[Question],
    config: GrpoConfig,
    seed: int,
    greedy: bool = False,
    first_index: int = 0,
) -> Rollout:
    """Asks the sampler for G outputs per question (1 when greedy), in calls of prompts_per_call.

    `questions` are this process's slice of a batch, from position `first_index` on. Calls start at
    the batch's multiples of prompts_per_call (and at the slice's start), and a call's seed is a
    function of its first question's place in the batch, so a slice that starts and ends on those
    multiples is sampled exactly as it would be by one process sampling the whole batch."""
    began = time.perf_counter()
    prompts = [prompt_text(tokenizer, q.question, config.task.instruction) for q in questions]
    group = 1 if greedy else config.rollout.group_size
    chunk = GREEDY_PROMPTS_PER_CALL if greedy else config.rollout.prompts_per_call
    rollout = Rollout(list(questions), group, 0, [], [], [], [], [])
    starts = [i for i in range(len(prompts)) if i == 0 or (first_index + i) % chunk == 0]
    calls = [
        (prompts[start:stop], sampling_params(config, call_seed(seed, first_index + start, chunk), greedy))
        for start, stop in zip(starts, [*starts[1:], len(prompts)], strict=True)
    ]
    for response in all_at_once(lambda call: link.generate(*call), calls):  # spread over the replicas
        for result in response.results:
            if len(result.completions) != group:
                raise RuntimeError(f"the sampler returned {len(result.completions)} samples, not {group}")
            rollout.prompt_ids.append(list(result.prompt_token_ids))
            for completion in sorted(result.completions, key=lambda c: c.sample_index):
                rollout.completion_ids.append(list(completion.token_ids))
                rollout.sampler_logprobs.append(list(completion.logprobs))
                rollout.texts.append(completion.text)
                rollout.truncated.append(completion.finish_reason == "length")
                rollout.versions.append(int(completion.weights_version))
    rollout.weights_version = min(rollout.versions, default=0)
    rollout.sample_seconds = time.perf_counter() - began
    return rollout


def score_rollout(
    link: Scoring,
    tokenizer: PreTrainedTokenizerBase,
    rollout: Rollout,
    config: GrpoConfig,
    kind: str = "",
) -> None:
    """Fills the rollout's rewards (and step rewards mapped onto policy tokens) from the reward service,
    and `correct` from the rule verifier (a second, cheap call when the reward does not include it)."""
    began = time.perf_counter()
    kind = kind or config.reward.kind
    weights = config.reward.weights if kind == "mix" else {}
    results = _score(link, rollout, kind, weights, config.reward.format_penalty)
    rollout.rewards = torch.tensor([r.reward for r in results], dtype=torch.float32)
    graded = kind == "rule" or weights.get("rule", 0.0) != 0.0
    rule = results if graded else _score(link, rollout, "rule", {}, 0.0)
    rollout.correct = [bool(r.correct) for r in rule]
    rollout.step_rewards = [[s.reward for s in r.steps] for r in results]
    rollout.step_ends = [
        step_end_tokens(tokenizer, ids, [s.char_end for s in r.steps]) if r.steps else []
        for ids, r in zip(rollout.completion_ids, results, strict=True)
    ]
    rollout.score_seconds = time.perf_counter() - began


def _score(
    link: Scoring, rollout: Rollout, kind: str, weights: dict[str, float], penalty: float
) -> list[reward_pb2.RewardResult]:
    items = [
        reward_pb2.RewardItem(
            question=rollout.questions[i // rollout.group_size].question,
            response=text,
            reference=rollout.questions[i // rollout.group_size].answer,
        )
        for i, text in enumerate(rollout.texts)
    ]
    requests = [
        reward_pb2.RewardRequest(
            items=items[first : first + SCORE_ITEMS_PER_CALL],
            kind=REWARD_KIND[kind],
            weights=weights,
            format_penalty=penalty,
        )
        for first in range(0, len(items), SCORE_ITEMS_PER_CALL)
    ]
    return [result for response in all_at_once(link.score, requests) for result in response.results]


def step_end_tokens(
    tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int], char_ends: Sequence[int]
) -> list[int]:
    """For each step ending before character `char_end`, the index of the first policy token whose
    decoded prefix reaches that character (the last token when the text runs short).

    A binary search over prefix decodes: O(steps x log(tokens)) decodes, not one per token.
    """
    if not token_ids:
        return []

    def prefix_chars(k: int) -> int:
        return len(tokenizer.decode(token_ids[: k + 1], skip_special_tokens=True))

    found: list[int] = []
    for char_end in char_ends:
        low, high = 0, len(token_ids) - 1
        while low < high:
            middle = (low + high) // 2
            if prefix_chars(middle) >= char_end:
                high = middle
            else:
                low = middle + 1
        found.append(low)
    return found
