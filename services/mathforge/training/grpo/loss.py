"""The GRPO objective of DeepSeekMath §4 as a loss to minimise, with the per-token k3 KL term.

    terms = token_terms(logp, old_logp, ref_logp, advantages, clip)     # per-token pieces, (N, T)
    loss = aggregate(terms.loss, mask, "sequence", num_sequences=N)       # the paper's 1/G sum 1/|o_i| sum_t

Per token, with r = pi_theta / pi_old and A the token's advantage:

    surrogate = min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A)
    kl        = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1            (k3, always >= 0)
    loss      = -(surrogate - beta * kl)

Off-policy samples (rollout.max_staleness >= 1) come from an older policy mu, the sampler's. Each
token's surrogate is then weighted by the truncated importance weight of pi_old against mu, from
the sampler's own log-probabilities (decoupled PPO: the clip still bounds pi_theta / pi_old):

    w = min(pi_old / mu, cap)                                             (detached)
    loss      = -(w * surrogate - beta * kl)

Aggregation: "sequence" (the paper's; TRL's loss_type "grpo") averages each output's tokens, then the
outputs; "token" (DAPO's; TRL's "bnpo" over one batch) averages over all tokens of the batch, so long
outputs weigh more. Both take their denominators from the whole update batch, so splitting a batch
into micro-batches and summing their losses gives the same gradient as one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AGGREGATIONS = ("sequence", "token")


@dataclass(frozen=True)
class ClipConfig:
    """Trust region and KL weight. eps_high > eps_low is "clip-higher" (DAPO)."""

    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.04

    def __post_init__(self) -> None:
        if not 0 < self.eps_low < 1 or self.eps_high <= 0:
            raise ValueError(f"need 0 < eps_low < 1 and eps_high > 0, got {self.eps_low}, {self.eps_high}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


@dataclass
class TokenTerms:
    """Per-token pieces of the objective, all (N, T)."""

    loss: torch.Tensor  # -(surrogate - beta * kl), differentiable in logp
    ratio: torch.Tensor  # pi_theta / pi_old, detached
    kl: torch.Tensor  # k3 estimate, detached
    clipped: torch.Tensor  # bool: the clipped branch was taken (no gradient flows through r)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The per-token k3 estimator of KL(pi_theta || pi_ref): exp(d) - d - 1 with d = log pi_ref - log pi."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


@dataclass
class ImportanceWeights:
    """Truncated importance weights of the behaviour policy's tokens, all (N, T), detached."""

    weights: torch.Tensor  # min(pi_old / mu, cap)
    capped: torch.Tensor  # bool: pi_old / mu was above the cap


def truncated_importance_weights(
    old_logp: torch.Tensor, behaviour_logp: torch.Tensor, cap: float
) -> ImportanceWeights:
    """w = min(exp(log pi_old - log mu), cap): how much more likely pi_old makes each sampled token
    than the policy that sampled it, truncated so that one rare token cannot dominate the batch."""
    if cap < 1:
        raise ValueError(f"the importance weight cap must be >= 1, got {cap}")
    raw = torch.exp((old_logp - behaviour_logp).detach())
    return ImportanceWeights(raw.clamp(max=cap), raw > cap)


def token_terms(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    clip: ClipConfig,
    importance: torch.Tensor | None = None,
) -> TokenTerms:
    """The clipped surrogate and KL of every token. `advantages` is (N,) or (N, T); `importance`, when
    given, weights each token's surrogate (the behaviour correction of off-policy samples)."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped_ratio = torch.clamp(ratio, 1 - clip.eps_low, 1 + clip.eps_high)
    surrogate = torch.min(unclipped, clipped_ratio * advantages)
    if importance is not None:
        surrogate = importance * surrogate
    loss = -surrogate
    if clip.beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs reference log-probabilities")
        kl = k3_kl(logp, ref_logp)
        loss = loss + clip.beta * kl
    else:
        kl = torch.zeros_like(logp)
    was_clipped = ((ratio < 1 - clip.eps_low) & (advantages < 0)) | (
        (ratio > 1 + clip.eps_high) & (advantages > 0)
    )
    return TokenTerms(loss=loss, ratio=ratio.detach(), kl=kl.detach(), clipped=was_clipped.detach())


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    aggregation: str,
    *,
    num_sequences: int | None = None,
    num_tokens: float | None = None,
) -> torch.Tensor:
    """Reduces a per-token quantity to the batch objective.

    "sequence": sum_i (sum_t x_it / |o_i|) / num_sequences; "token": sum_it x_it / num_tokens. The
    denominators default to this tensor's own sequences and tokens; pass the whole batch's when this
    tensor is one micro-batch of it.
    """
    mask = mask.to(per_token.dtype)
    if aggregation == "sequence":
        lengths = mask.sum(-1).clamp(min=1.0)
        per_sequence = (per_token * mask).sum(-1) / lengths
        denominator = float(num_sequences if num_sequences is not None else per_token.shape[0])
        return per_sequence.sum() / max(denominator, 1.0)
    if aggregation == "token":
        denominator = float(num_tokens if num_tokens is not None else mask.sum().item())
        return (per_token * mask).sum() / max(denominator, 1.0)
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """The mean of `values` over the tokens `mask` keeps (a metric, not a loss)."""
    mask = mask.to(values.dtype)
    return float((values * mask).sum() / mask.sum().clamp(min=1.0))
