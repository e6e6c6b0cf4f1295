"""The grader: extracts the final answer of a model output and judges it against a gold answer.

    from mathforge.evaluator.grading import grade, extract_answer, GradingPolicy
    verdict = grade("... so the answer is $\\boxed{\\dfrac{1}{2}}$.", "0.5")
    verdict.equivalent, verdict.pred_answer, verdict.reason

Fast and safe to call from any thread, many times per GRPO step: `grade` never raises, answers
within the policy's symbolic time limit (plus a worker's start-up on first use), and caches
verdicts of repeated (answer, gold, policy) triples.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from mathforge.evaluator.equivalence import answers_equivalent
from mathforge.evaluator.extraction import Extraction, extract_answer, extract_gold
from mathforge.evaluator.policy import DEFAULT_POLICY, GradingPolicy

__all__ = ["Extraction", "GradingPolicy", "Verdict", "extract_answer", "grade"]

log = logging.getLogger(__name__)
MAX_ANSWER_CHARS = 2000


@dataclass(frozen=True)
class Verdict:
    """equivalent: the prediction's answer matches the gold one; reason: the rule that decided
    ("string", "choice", "numeric", "expression", "structure", "symbolic", "timeout", "no_answer",
    "too_long", "error"); timed_out: the symbolic check hit its limit (then equivalent is False)."""

    equivalent: bool
    pred_answer: str
    gold_answer: str
    reason: str
    timed_out: bool = False


@functools.lru_cache(maxsize=65536)
def _judge(pred_answer: str, gold_answer: str, policy: GradingPolicy) -> tuple[bool, str, bool]:
    decision = answers_equivalent(pred_answer, gold_answer, policy)
    return decision.equal, decision.reason, decision.timed_out


def grade(prediction: str, gold: str, policy: GradingPolicy | None = None) -> Verdict:
    """Judges a model output (or a bare answer) against a gold answer (bare, or a full solution)."""
    policy = policy or DEFAULT_POLICY
    pred_answer = gold_answer = ""
    try:
        pred_answer = extract_answer(prediction, policy).answer
        gold_answer = extract_gold(gold, policy).answer
        if not pred_answer:
            return Verdict(False, "", gold_answer, "no_answer")
        if len(pred_answer) > MAX_ANSWER_CHARS or len(gold_answer) > MAX_ANSWER_CHARS:
            return Verdict(pred_answer == gold_answer, pred_answer, gold_answer, "too_long")
        equal, reason, timed_out = _judge(pred_answer, gold_answer, policy)
        return Verdict(equal, pred_answer, gold_answer, reason, timed_out)
    except Exception:  # the grader is a reward function: a bug must cost one verdict, not a GRPO step
        log.exception("grading failed")
        return Verdict(False, pred_answer, gold_answer, "error")
