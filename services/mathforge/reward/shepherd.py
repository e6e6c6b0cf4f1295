"""Math-Shepherd labels for process reward models: a step is good when completions sampled from the
solution up to that step still reach the right answer.

    complete = sampler_completer(SamplerClient("127.0.0.1:50054"), temperature=0.7, max_tokens=256)
    examples = label_solutions(solutions, complete, ShepherdSettings(samples_per_step=8, estimation="hard"))

For each solution the policy continues every step prefix (the response up to and including that
step) `samples_per_step` times; each completion is graded with the rule reward against the reference.
Hard estimation labels a step 1 when any completion is right, soft estimation with the share of right
ones. The last step needs no sampling: its label is whether the solution's own answer is right.
Prefixes of many solutions go to the sampler together, `batch_prompts` at a time. The same module
samples the solutions themselves (and ORM labels, one per solution) for questions that come without.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mathforge.evaluator.grading import GradingPolicy
from mathforge.models.tokenizer import BOS, message_text, role_header
from mathforge.reward.data import RewardExample
from mathforge.reward.rule import rule_reward
from mathforge.reward.steps import DEFAULT_SEPARATOR, step_prefixes
from mathforge.runtime.clients.sampler import SamplerClient

log = logging.getLogger(__name__)

#: complete(prompts, n) -> n completion texts per prompt, in order.
Completer = Callable[[list[str], int], list[list[str]]]
ESTIMATIONS = ("hard", "soft")


@dataclass(frozen=True)
class Solution:
    """A question, a sampled (or given) response and the reference answer."""

    question: str
    response: str
    reference: str


@dataclass(frozen=True)
class ShepherdSettings:
    """samples_per_step: completions per step prefix (Math-Shepherd used 8); estimation: hard or soft."""

    samples_per_step: int = 8
    estimation: str = "hard"
    step_separator: str = DEFAULT_SEPARATOR
    batch_prompts: int = 64
    policy: GradingPolicy | None = None

    def __post_init__(self) -> None:
        if self.samples_per_step < 1:
            raise ValueError(f"samples_per_step {self.samples_per_step} must be >= 1")
        if self.estimation not in ESTIMATIONS:
            raise ValueError(f"estimation {self.estimation!r} is not one of {', '.join(ESTIMATIONS)}")
        if self.batch_prompts < 1:
            raise ValueError(f"batch_prompts {self.batch_prompts} must be >= 1")


def policy_prompt(question: str, prefix: str = "") -> str:
    """The chat-format prompt the policy continues: the question's user turn, the assistant tag, and
    the part of the answer already written."""
    return BOS + role_header("user") + message_text("user", question) + role_header("assistant") + prefix


def sampler_completer(
    client: SamplerClient, temperature: float = 0.7, max_tokens: int = 256, seed: int | None = 0
) -> Completer:
    """A Completer that samples through the sampler service (stopping at the end of the turn)."""

    def complete(prompts: list[str], n: int) -> list[list[str]]:
        return client.generate_texts(prompts, n, temperature=temperature, max_tokens=max_tokens, seed=seed)

    return complete


def _in_batches(prompts: list[str], n: int, complete: Completer, size: int) -> list[list[str]]:
    out: list[list[str]] = []
    for start in range(0, len(prompts), size):
        part = prompts[start : start + size]
        got = complete(part, n)
        if len(got) != len(part) or any(len(samples) != n for samples in got):
            raise RuntimeError(
                f"the sampler returned {[len(s) for s in got]} samples for {len(part)} prompts x {n}"
            )
        out.extend(got)
    return out


def estimate(right: int, samples: int, estimation: str) -> float:
    """A step's label from the number of right completions: hard (any right) or soft (share right)."""
    if estimation == "hard":
        return 1.0 if right > 0 else 0.0
    return right / samples


def label_solutions(
    solutions: Sequence[Solution],
    complete: Completer,
    settings: ShepherdSettings,
    prompt: Callable[[str, str], str] | None = None,
) -> list[RewardExample]:
    """One PRM example per solution with a label per step (solutions with no steps are dropped).

    `prompt(question, prefix)` is the text the policy continues; by default `policy_prompt`. A
    trainer whose policy saw another prompt (an instruction appended) passes its own, so that the
    continuations come from the distribution the solutions were sampled from."""
    n = settings.samples_per_step
    prompt = prompt or policy_prompt
    prefixes = [step_prefixes(s.response, settings.step_separator) for s in solutions]
    prompts = [prompt(s.question, p) for s, ps in zip(solutions, prefixes, strict=True) for p in ps[:-1]]
    completions = iter(_in_batches(prompts, n, complete, settings.batch_prompts))
    examples = []
    for solution, solution_prefixes in zip(solutions, prefixes, strict=True):
        if not solution_prefixes:
            continue
        labels = []
        for prefix in solution_prefixes[:-1]:
            right = sum(
                rule_reward(prefix + text, solution.reference, settings.policy).correct
                for text in next(completions)
            )
            labels.append(estimate(right, n, settings.estimation))
        final = rule_reward(solution.response, solution.reference, settings.policy).correct
        labels.append(1.0 if final else 0.0)
        examples.append(RewardExample(solution.question, solution.response, labels, solution.reference))
    return examples


def sample_solutions(
    questions: Sequence[tuple[str, str]], complete: Completer, per_question: int, batch_prompts: int = 64
) -> list[Solution]:
    """`per_question` sampled solutions for each (question, reference)."""
    prompts = [policy_prompt(q) for q, _ in questions]
    sampled = _in_batches(prompts, per_question, complete, batch_prompts)
    return [
        Solution(q, text, ref) for (q, ref), texts in zip(questions, sampled, strict=True) for text in texts
    ]


def outcome_labels(solutions: Sequence[Solution], policy: GradingPolicy | None = None) -> list[RewardExample]:
    """ORM examples: each solution labelled by the rule reward against its reference."""
    return [
        RewardExample(
            s.question,
            s.response,
            [1.0 if rule_reward(s.response, s.reference, policy).correct else 0.0],
            s.reference,
        )
        for s in solutions
    ]
