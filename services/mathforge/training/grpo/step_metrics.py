"""The per-step numbers a GRPO run reports: rewards, accuracy, KL, clipping, entropy, lengths.

    values = step_metrics(rollout, advantages, update_stats, env)   # one flat dict of floats
    values |= rollout_source_metrics(rollout, staleness, questions_per_step=16, env=env)

Rollout statistics are over all processes' outputs (each process holds whole groups).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mathforge.training.distributed import DistEnv, all_reduce_sum
from mathforge.training.grpo.rollout import Rollout
from mathforge.training.grpo.update import UpdateStats


def step_metrics(
    rollout: Rollout, advantages: torch.Tensor, stats: UpdateStats, env: DistEnv
) -> dict[str, float]:
    """Reward mean/std, accuracy, response lengths, groups with no signal, and the update's stats."""
    device = env.device
    rewards = rollout.rewards.double()
    lengths = torch.tensor([len(ids) for ids in rollout.completion_ids], dtype=torch.float64)
    groups = rewards.view(-1, rollout.group_size)
    flat_groups = float((groups.max(1).values == groups.min(1).values).sum())
    n = all_reduce_sum(rollout.size, device)
    reward_sum = all_reduce_sum(float(rewards.sum()), device)
    reward_sq = all_reduce_sum(float((rewards**2).sum()), device)
    mean = reward_sum / n
    length_sum = all_reduce_sum(float(lengths.sum()), device)
    return {
        "loss": stats.loss,
        "reward_mean": mean,
        "reward_std": max(reward_sq / n - mean * mean, 0.0) ** 0.5,
        "accuracy": all_reduce_sum(sum(rollout.correct), device) / n,
        "kl": stats.kl,
        "clip_fraction": stats.clip_fraction,
        "entropy": stats.entropy,
        "ratio_mean": stats.ratio_mean,
        "grad_norm": stats.grad_norm,
        "sampler_kl": stats.sampler_kl,
        "importance_weight_mean": stats.importance_weight_mean,
        "importance_capped_fraction": stats.importance_capped_fraction,
        "response_length_mean": length_sum / n,
        "response_length_max": float(lengths.max()),  # this process's outputs
        "truncated_fraction": all_reduce_sum(sum(rollout.truncated), device) / n,
        "zero_std_group_fraction": all_reduce_sum(flat_groups, device) / (n / rollout.group_size),
        "advantage_abs_mean": float(advantages.abs().mean()),
        "response_tokens": length_sum,
        "outputs": n,
    }


def rollout_source_metrics(
    rollout: Rollout, staleness: Sequence[int], questions_per_step: int, env: DistEnv
) -> dict[str, float]:
    """How old the batch's samples were, and what dynamic sampling dropped and drew extra."""
    device = env.device
    outputs = all_reduce_sum(len(staleness), device)
    sampled = all_reduce_sum(rollout.sampled_groups, device)
    dropped = all_reduce_sum(rollout.dropped_groups, device)
    return {
        "staleness_mean": all_reduce_sum(float(sum(staleness)), device) / max(outputs, 1.0),
        "staleness_max": float(max(staleness, default=0)),  # this process's outputs
        "dropped_group_fraction": dropped / max(sampled, 1.0),
        "extra_samples": (sampled - questions_per_step) * rollout.group_size,
        "batch_groups": all_reduce_sum(len(rollout.questions), device),
    }
