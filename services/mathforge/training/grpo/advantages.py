"""Group-relative advantages (DeepSeekMath §4): outcome supervision gives every token of an output
the group-normalised reward of that output; process supervision gives a token the sum of the
group-normalised rewards of the steps that end at or after it.

    adv = outcome_advantages(rewards, group_size=8)                 # (B*G,) one value per output
    tok = process_token_advantages(step_rewards, step_ends, lengths, group_size=8)   # per token

Normalisation choices (the paper writes only "mean(r)" and "std(r)"):
- `std_estimator`: "population" (divide by n, our default: the group is the whole set the baseline
  is taken over, not a sample of one) or "sample" (n - 1, Bessel; what TRL's `nanstd` uses).
- `std_eps` is added to the std before dividing (TRL adds 1e-4; so do we by default).
- A group whose rewards are all equal carries no signal: every advantage in it is exactly 0, never
  the rounding noise of (r - mean) / eps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

STD_ESTIMATORS = ("population", "sample")


@dataclass(frozen=True)
class Normalisation:
    """How a group's rewards are centred and scaled."""

    std_estimator: str = "population"
    std_eps: float = 1e-4
    scale: bool = True  # False = only subtract the group mean (Dr. GRPO's variant)

    def __post_init__(self) -> None:
        if self.std_estimator not in STD_ESTIMATORS:
            raise ValueError(f"std_estimator must be one of {STD_ESTIMATORS}, got {self.std_estimator!r}")
        if self.std_eps < 0:
            raise ValueError(f"std_eps must be >= 0, got {self.std_eps}")


def normalise(values: torch.Tensor, norm: Normalisation) -> torch.Tensor:
    """(values - mean) / (std + eps) over all of `values`; all zeros when every value is the same."""
    if values.numel() == 0:
        return values.clone()
    if bool((values == values.flatten()[0]).all()):
        return torch.zeros_like(values)
    centred = values - values.mean()
    if not norm.scale:
        return centred
    if values.numel() < 2:
        return torch.zeros_like(values)
    std = values.std(correction=1 if norm.std_estimator == "sample" else 0)
    return centred / (std + norm.std_eps)


def outcome_advantages(rewards: torch.Tensor, group_size: int, norm: Normalisation) -> torch.Tensor:
    """A_i = (r_i - mean(r)) / (std(r) + eps) within each consecutive group of `group_size` outputs.

    `rewards` is (num_groups * group_size,), groups contiguous (the sampler's order); so is the result.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries")
    groups = rewards.view(-1, group_size)
    return torch.stack([normalise(g, norm) for g in groups]).reshape(-1)


def process_token_advantages(
    step_rewards: Sequence[Sequence[float]],
    step_ends: Sequence[Sequence[int]],
    lengths: Sequence[int],
    group_size: int,
    norm: Normalisation,
) -> torch.Tensor:
    """Per-token advantages under process supervision, padded to the longest output: (N, T_max).

    `step_rewards[i][j]` is the reward of step j of output i and `step_ends[i][j]` the index of that
    step's last token in output i. All step rewards of a group are normalised together; token t of
    output i gets the sum of the normalised rewards of its steps j with step_ends[i][j] >= t. Tokens
    after an output's last step (and padding) get 0.
    """
    n = len(lengths)
    if len(step_rewards) != n or len(step_ends) != n or n % group_size:
        raise ValueError(f"need one step list per output and a multiple of group_size={group_size} outputs")
    width = max(lengths, default=0)
    result = torch.zeros(n, width, dtype=torch.float32)
    for first in range(0, n, group_size):
        members = range(first, first + group_size)
        flat = torch.tensor([r for i in members for r in step_rewards[i]], dtype=torch.float32)
        normalised = normalise(flat, norm).tolist()
        cursor = 0
        for i in members:
            per_end = torch.zeros(width + 1, dtype=torch.float32)
            for end in step_ends[i]:
                if not 0 <= end < lengths[i]:
                    raise ValueError(f"output {i}: step end {end} is outside its {lengths[i]} tokens")
                per_end[end] += normalised[cursor]
                cursor += 1
            # reverse cumulative sum: token t collects every step ending at t or later
            result[i] = per_end[:width].flip(0).cumsum(0).flip(0)
    return result
