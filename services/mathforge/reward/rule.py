"""The rule reward: 1 when the response's final answer is equivalent to the reference, else 0, by the
evaluator's grader (same extraction, equivalence, limits and timeouts), in-process.

    score = rule_reward("... so \\\\boxed{12}.", "12")           # RuleScore(reward=1.0, correct=True, ...)
    score = rule_reward("I think twelve", "12", format_penalty=0.1)

A response with no extractable answer scores 0 minus `format_penalty` (DeepSeekMath §4 uses the plain
0/1 reward; the penalty is an option, default 0). Whether the last number of a text counts as its
answer follows the grading policy (`last_number_fallback`), as in the evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass

from mathforge.evaluator.grading import GradingPolicy, grade


@dataclass(frozen=True)
class RuleScore:
    """The reward, whether the answer was judged equivalent, the extracted answer and the rule that
    decided (the evaluator's Verdict.reason, e.g. "numeric", "no_answer", "timeout")."""

    reward: float
    correct: bool
    extracted_answer: str
    reason: str
    timed_out: bool = False


def rule_reward(
    response: str, reference: str, policy: GradingPolicy | None = None, format_penalty: float = 0.0
) -> RuleScore:
    """Grades one response against its reference answer (bare, or a full reference solution)."""
    verdict = grade(response, reference, policy)
    reward = 1.0 if verdict.equivalent else 0.0
    if not verdict.pred_answer:
        reward -= format_penalty
    return RuleScore(reward, verdict.equivalent, verdict.pred_answer, verdict.reason, verdict.timed_out)


def rule_rewards(
    pairs: list[tuple[str, str]], policy: GradingPolicy | None = None, format_penalty: float = 0.0
) -> list[RuleScore]:
    """rule_reward over (response, reference) pairs, in order."""
    return [rule_reward(response, reference, policy, format_penalty) for response, reference in pairs]
