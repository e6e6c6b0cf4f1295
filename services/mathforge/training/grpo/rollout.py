"""One rollout: G outputs per question from the sampler, scored by the reward service.

    rollout = collect_rollout(link, tokenizer, questions, config, seed=step_seed)
    rollout.rewards          # (N,) one scalar per output, groups of G contiguous
    rollout.step_ends        # per output, the policy-token index where each PRM step ends

Process rewards come with character spans of each step in the response text; they are mapped onto
the policy's own tokens (the reward model may tokenise differently): a step ends at the first
policy token whose decoded text reaches the step's last character.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.questions import Question, prompt_text
from mathforge.training.grpo.services import ServiceLink
from mathforge.v1 import reward_pb2, sampler_pb2

REWARD_KIND = {
    "rule": reward_pb2.REWARD_RULE,
    "orm": reward_pb2.REWARD_ORM,
    "prm": reward_pb2.REWARD_PRM,
    "mix": reward_pb2.REWARD_MIX,
}
SCORE_ITEMS_PER_CALL = 256
GREEDY_PROMPTS_PER_CALL = 64


@dataclass
class Rollout:
    """The outputs of one step, in group order (question q's G outputs are rows q*G .. q*G+G-1)."""

    questions: list[Question]
    group_size: int
    weights_version: int
    prompt_ids: list[list[int]]  # one per question
    completion_ids: list[list[int]]  # one per output
    sampler_logprobs: list[list[float]]
    texts: list[str]
    truncated: list[bool]
    rewards: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    correct: list[bool] = field(default_factory=list)
    step_rewards: list[list[float]] = field(default_factory=list)
    step_ends: list[list[int]] = field(default_factory=list)
    sample_seconds: float = 0.0
    score_seconds: float = 0.0

    @property
    def size(self) -> int:
        return len(self.completion_ids)

    def prompt_of(self, output: int) -> list[int]:
        return self.prompt_ids[output // self.group_size]


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


def sample_groups(
    link: ServiceLink,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[Question],
    config: GrpoConfig,
    seed: int,
    greedy: bool = False,
) -> Rollout:
    """Asks the sampler for G outputs per question (1 when greedy), in chunks of prompts_per_call."""
    began = time.perf_counter()
    prompts = [prompt_text(tokenizer, q.question, config.task.instruction) for q in questions]
    group = 1 if greedy else config.rollout.group_size
    chunk = GREEDY_PROMPTS_PER_CALL if greedy else config.rollout.prompts_per_call
    rollout = Rollout(list(questions), group, 0, [], [], [], [], [])
    for index, first in enumerate(range(0, len(prompts), chunk)):
        params = sampling_params(config, (seed * 7919 + index) & 0x7FFFFFFF, greedy)
        response = link.generate(prompts[first : first + chunk], params)
        rollout.weights_version = int(response.weights_version)
        for result in response.results:
            if len(result.completions) != group:
                raise RuntimeError(f"the sampler returned {len(result.completions)} samples, not {group}")
            rollout.prompt_ids.append(list(result.prompt_token_ids))
            for completion in sorted(result.completions, key=lambda c: c.sample_index):
                rollout.completion_ids.append(list(completion.token_ids))
                rollout.sampler_logprobs.append(list(completion.logprobs))
                rollout.texts.append(completion.text)
                rollout.truncated.append(completion.finish_reason == "length")
    rollout.sample_seconds = time.perf_counter() - began
    return rollout


def score_rollout(
    link: ServiceLink,
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
    link: ServiceLink, rollout: Rollout, kind: str, weights: dict[str, float], penalty: float
) -> list[reward_pb2.RewardResult]:
    items = [
        reward_pb2.RewardItem(
            question=rollout.questions[i // rollout.group_size].question,
            response=text,
            reference=rollout.questions[i // rollout.group_size].answer,
        )
        for i, text in enumerate(rollout.texts)
    ]
    results: list[reward_pb2.RewardResult] = []
    for first in range(0, len(items), SCORE_ITEMS_PER_CALL):
        request = reward_pb2.RewardRequest(
            items=items[first : first + SCORE_ITEMS_PER_CALL],
            kind=REWARD_KIND[kind],
            weights=weights,
            format_penalty=penalty,
        )
        results.extend(link.score(request).results)
    return results


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
