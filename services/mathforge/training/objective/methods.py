"""Each method of DeepSeekMath §5.2.1 as its data source plus its gradient coefficient, in one table.

    method = METHODS["online_rft"]                   # source "policy", no KL term
    coefficients = method_coefficients(method, rollout, CoefficientSettings(...), sequence_logprobs)

Sources: "policy" samples the current policy every step (Online RFT, GRPO); "offline" samples the
starting policy once, before any update, and trains on those samples (RFT, DPO; sources.py).
SFT's data is human-written solutions, which the RL trainer does not sample: `sft` trains on the
task's worked solutions where the task has them (the synthetic problems do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mathforge.training.grpo.advantages import Normalisation, outcome_advantages, process_token_advantages
from mathforge.training.grpo.rollout import Rollout
from mathforge.training.objective.coefficients import (
    dpo_coefficients,
    dpo_update_coefficients,
    rft_coefficients,
    sft_coefficients,
)

SOURCES = ("policy", "offline", "reference")


@dataclass(frozen=True)
class Method:
    """A method: where its outputs come from, and whether the update adds the KL to pi_ref."""

    name: str
    source: str
    kl: bool  # GRPO's coefficient carries beta * (pi_ref / pi - 1): the update's k3 term
    needs_reference: bool = False  # DPO's coefficient reads pi_ref


METHODS = {
    "sft": Method("sft", "reference", kl=False),
    "rft": Method("rft", "offline", kl=False),
    "online_rft": Method("online_rft", "policy", kl=False),
    "dpo": Method("dpo", "offline", kl=False, needs_reference=True),
    "grpo": Method("grpo", "policy", kl=True),
}


@dataclass(frozen=True)
class CoefficientSettings:
    """What the coefficient functions read from the objective config."""

    supervision: str = "outcome"
    normalisation: Normalisation = Normalisation()
    dpo_beta: float = 0.1


def preference_pairs(correct: Sequence[bool], group_size: int) -> list[tuple[int, int]]:
    """DPO pairs within each group: its k-th right output with its k-th wrong one, as many pairs as the
    smaller of the two counts (a group that is all right or all wrong gives none)."""
    pairs: list[tuple[int, int]] = []
    for first in range(0, len(correct), group_size):
        members = range(first, first + group_size)
        right = [i for i in members if correct[i]]
        wrong = [i for i in members if not correct[i]]
        pairs.extend(zip(right, wrong, strict=False))
    return pairs


#: sequence_logprobs(rollout) -> (policy, reference): each output's summed log-probabilities.
SequenceLogprobs = Callable[[Rollout], tuple[torch.Tensor, torch.Tensor]]


def method_coefficients(
    method: Method,
    rollout: Rollout,
    settings: CoefficientSettings,
    sequence_logprobs: SequenceLogprobs | None = None,
) -> torch.Tensor:
    """The coefficients the update multiplies into grad log pi: (N,) per output or (N, T) per token."""
    lengths = [len(ids) for ids in rollout.completion_ids]
    if method.name == "sft":
        return sft_coefficients(lengths)
    if method.name in ("rft", "online_rft"):
        return rft_coefficients(rollout.correct)
    if method.name == "dpo":
        if sequence_logprobs is None:
            raise ValueError("DPO's coefficient reads the policy's and pi_ref's log-probabilities")
        pairs = preference_pairs(rollout.correct, rollout.group_size)
        if not pairs:
            return torch.zeros(len(lengths))
        policy, reference = sequence_logprobs(rollout)
        table = dpo_coefficients(policy.cpu(), reference.cpu(), pairs, settings.dpo_beta)
        return dpo_update_coefficients(table, lengths, len(pairs), settings.dpo_beta)
    if settings.supervision == "process":
        return process_token_advantages(
            rollout.step_rewards, rollout.step_ends, lengths, rollout.group_size, settings.normalisation
        )
    return outcome_advantages(rollout.rewards, rollout.group_size, settings.normalisation)


def logprob_sums(
    policy: torch.nn.Module, reference: torch.nn.Module, rollout: Rollout, pad_id: int, micro: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each output's summed log-probabilities under the policy and under pi_ref (no gradients)."""
    from mathforge.training.grpo.logprobs import pack_outputs
    from mathforge.training.grpo.update import score_logprobs

    device = next(policy.parameters()).device
    prompts = [rollout.prompt_of(i) for i in range(rollout.size)]
    batch = pack_outputs(prompts, rollout.completion_ids, pad_id).to(device)
    mask = batch.output_mask.to(torch.float32)
    return (
        (score_logprobs(policy, batch, micro) * mask).sum(-1),
        (score_logprobs(reference, batch, micro) * mask).sum(-1),
    )
