"""The gradient coefficient GC(q, o, t) of each method (DeepSeekMath §5.2.1, its table), as tensors the
policy update multiplies into grad log pi. Each function takes only what it reads.

    sft_coefficients(lengths=[3, 5])                          # 1 for every token
    rft_coefficients(correct=[True, False])                   # 1 if right, else 0 (RFT and Online RFT)
    dpo_coefficients(policy, reference, pairs, beta=0.1)      # +-sigmoid(beta*(ratio(o-) - ratio(o+)))
    grpo_token_coefficients(advantages, logp, ref_logp, beta) # A + beta * (pi_ref / pi - 1)

The update itself (training/grpo/update.py) takes per-output or per-token "advantages" and applies
the clipped surrogate; on the first pass over fresh samples the ratio is exactly 1, so its gradient
is the advantage times grad log pi: the advantage IS the coefficient. GRPO's KL part of GC comes from
the update's k3 term (its gradient is beta * (pi_ref / pi - 1)), so GRPO hands the update only A.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# PPO's coefficient is the GAE advantage from a value model (DeepSeekMath §5.2.1); it needs a critic
# trained beside the policy, which this trainer does not hold. A "ppo" method would add a value-model
# source here and its GAE function below; the update takes per-token coefficients already.


def sft_coefficients(lengths: Sequence[int]) -> torch.Tensor:
    """SFT: GC = 1 for every token of every (human-written) output; one value per output."""
    return torch.ones(len(lengths), dtype=torch.float32)


def rft_coefficients(correct: Sequence[bool]) -> torch.Tensor:
    """RFT and Online RFT: GC = 1 when the output's answer is right, 0 when wrong (the indicator)."""
    return torch.tensor([1.0 if c else 0.0 for c in correct], dtype=torch.float32)


def dpo_margins(
    policy: torch.Tensor, reference: torch.Tensor, pairs: Sequence[tuple[int, int]], beta: float
) -> torch.Tensor:
    """beta * (log pi/pi_ref (o-) - log pi/pi_ref (o+)) for each pair (o+, o-); `policy` and `reference`
    are each output's summed log-probabilities."""
    ratio = policy - reference
    plus = torch.tensor([p for p, _ in pairs], dtype=torch.long)
    minus = torch.tensor([m for _, m in pairs], dtype=torch.long)
    return beta * (ratio[minus] - ratio[plus])


def dpo_coefficients(
    policy: torch.Tensor, reference: torch.Tensor, pairs: Sequence[tuple[int, int]], beta: float
) -> torch.Tensor:
    """DPO: GC = sigmoid(beta*log pi/pi_ref(o-) - beta*log pi/pi_ref(o+)) for the right output o+ of a pair
    and minus that for the wrong one o-; outputs in no pair get 0. One value per output, detached."""
    coefficients = torch.zeros(policy.shape[0], dtype=torch.float32)
    weights = torch.sigmoid(dpo_margins(policy.detach(), reference.detach(), pairs, beta)).float()
    for (plus, minus), weight in zip(pairs, weights, strict=True):
        coefficients[plus] += weight
        coefficients[minus] -= weight
    return coefficients


def dpo_loss(
    policy: torch.Tensor, reference: torch.Tensor, pairs: Sequence[tuple[int, int]], beta: float
) -> torch.Tensor:
    """The DPO (sigmoid) loss, mean over pairs: -log sigmoid(beta*(log-ratio(o+) - log-ratio(o-))). Its
    gradient is -(beta / pairs) * sum over pairs of GC * grad log pi(o), with GC from dpo_coefficients."""
    return -torch.nn.functional.logsigmoid(-dpo_margins(policy, reference, pairs, beta)).mean()


def dpo_update_coefficients(
    coefficients: torch.Tensor, lengths: Sequence[int], pairs: int, beta: float
) -> torch.Tensor:
    """DPO's GC scaled for the update's per-output token mean over all outputs: DPO sums log pi over an
    output's tokens and averages over pairs, so each output's coefficient is multiplied by its length,
    by beta, and by outputs / pairs."""
    scale = torch.tensor([float(n) for n in lengths]) * beta * len(lengths) / max(pairs, 1)
    return coefficients * scale


def grpo_token_coefficients(
    advantages: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, beta: float
) -> torch.Tensor:
    """GRPO: GC = A + beta * (pi_ref / pi_theta - 1), per token; `advantages` (N,) or (N, T)."""
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    return advantages + beta * (torch.exp(ref_logp - logp) - 1)
