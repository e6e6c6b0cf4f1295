"""The policy update of one GRPO step: pi_old and pi_ref log-probabilities, then mu passes of clipped
updates over the batch (DeepSeekMath §4, "for grpo_iteration = 1..mu").

    settings = UpdateSettings.from_config(config, off_policy=config.rollout.max_staleness > 0)
    stats = policy_update(engine, reference, rollout, advantages, settings, env, step_seed, pad_id)

A pass splits the batch into `updates_per_step` mini-batches (one optimizer step each) of
micro-batches (one forward/backward each). Loss denominators are the mini-batch's sequences or
tokens over all processes, so the micro-batch size and the number of processes do not change the
update. The batch may be smaller than configured (dynamic sampling); the update tells the engine
which micro-step ends each optimizer step, and processes holding fewer micro-batches than others
join the gradient all-reduce with zero-weight ones.

pi_old is the trainer's policy when the update starts. With mu = 1 and one mini-batch it is
pi_theta itself: its log-probabilities are the forward pass's own, detached (the clip ratio is
exactly 1), which saves a forward pass. That holds for off-policy samples too: the clip bounds the
step away from pi_old, and the correction for the policy that sampled them is the truncated
importance weight pi_old / pi_sampler from the sampler's log-probabilities (loss.py), applied
whenever `importance_cap` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from mathforge.training.distributed import DistEnv, all_reduce_sum
from mathforge.training.engines import TrainEngine
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.logprobs import OutputBatch, completion_logprobs, pack_outputs
from mathforge.training.grpo.loss import (
    ClipConfig,
    aggregate,
    masked_mean,
    token_terms,
    truncated_importance_weights,
)
from mathforge.training.grpo.rollout import Rollout


@dataclass(frozen=True)
class UpdateSettings:
    """What the update reads from the config."""

    clip: ClipConfig
    aggregation: str
    mu: int
    updates_per_step: int
    micro_batch_size: int
    importance_cap: float | None = None  # None = on-policy samples: no behaviour correction

    @classmethod
    def from_config(cls, config: GrpoConfig, off_policy: bool) -> UpdateSettings:
        objective = config.objective
        return cls(
            clip=objective.clip(),
            aggregation=objective.aggregation,
            mu=objective.mu,
            updates_per_step=objective.updates_per_step,
            micro_batch_size=config.batch.micro_batch_size,
            importance_cap=objective.importance_cap if off_policy else None,
        )


@dataclass
class UpdateStats:
    """What the update measured, averaged over its optimizer steps (token means over output tokens)."""

    loss: float = 0.0
    kl: float = 0.0
    clip_fraction: float = 0.0
    entropy: float = 0.0
    ratio_mean: float = 1.0
    grad_norm: float = 0.0
    optimizer_steps: int = 0
    sampler_kl: float = 0.0  # k3 between the sampler's and the trainer's log pi_old (backend mismatch)
    importance_weight_mean: float = 1.0  # token mean of min(pi_old / pi_sampler, cap)
    importance_capped_fraction: float = 0.0  # share of tokens whose weight hit the cap


def _rows(batch: OutputBatch, index: torch.Tensor) -> OutputBatch:
    return OutputBatch(
        batch.input_ids[index],
        batch.attention_mask[index],
        batch.output_start[index],
        batch.output_mask[index],
    )


def _max_over_processes(value: int, device: torch.device) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


@torch.no_grad()
def score_logprobs(model: torch.nn.Module, batch: OutputBatch, micro: int) -> torch.Tensor:
    """Log-probabilities of every output token under `model`, without gradients, in micro-batches."""
    parts = []
    for first in range(0, batch.input_ids.shape[0], micro):
        index = torch.arange(first, min(first + micro, batch.input_ids.shape[0]))
        logp, _ = completion_logprobs(model, _rows(batch, index))
        parts.append(logp)
    return torch.cat(parts)


def behaviour_logprobs(rollout: Rollout, like: torch.Tensor) -> torch.Tensor:
    """The sampler's log-probabilities of each output token, padded like `like` (N, T)."""
    found = torch.zeros_like(like)
    for i, values in enumerate(rollout.sampler_logprobs):
        found[i, : len(values)] = torch.tensor(values, dtype=found.dtype)
    return found


def policy_update(
    engine: TrainEngine,
    reference: torch.nn.Module | None,
    rollout: Rollout,
    advantages: torch.Tensor,
    settings: UpdateSettings,
    env: DistEnv,
    step_seed: int,
    pad_id: int,
) -> UpdateStats:
    """Applies mu passes of clipped GRPO updates to `engine` on this process's share of the rollout."""
    clip, micro = settings.clip, settings.micro_batch_size
    batch = pack_outputs([rollout.prompt_of(i) for i in range(rollout.size)], rollout.completion_ids, pad_id)
    batch = batch.to(env.device)
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand(-1, batch.output_mask.shape[1])
    advantages = advantages[:, : batch.output_mask.shape[1]].to(env.device)
    reuse_old = settings.mu == 1 and settings.updates_per_step == 1
    old_logp = None if reuse_old else score_logprobs(engine.module, batch, micro)
    ref_logp = score_logprobs(reference, batch, micro) if reference is not None and clip.beta > 0 else None
    sampler_logp = behaviour_logprobs(rollout, batch.output_mask)
    stats = UpdateStats()
    generator = torch.Generator().manual_seed(step_seed)
    n = rollout.size
    per_update = -(-n // settings.updates_per_step)
    sums = {"loss": 0.0, "kl": 0.0, "clip": 0.0, "entropy": 0.0, "ratio": 0.0, "grad": 0.0}
    weight_sums = {"weight": 0.0, "capped": 0.0, "tokens": 0.0}
    trainer_old: torch.Tensor | None = old_logp
    for pass_index in range(settings.mu):
        order = torch.randperm(n, generator=generator) if settings.updates_per_step > 1 else torch.arange(n)
        for first in range(0, per_update * settings.updates_per_step, per_update):
            mini = order[first : first + per_update]
            sequences = all_reduce_sum(len(mini), env.device)
            tokens = all_reduce_sum(float(batch.output_mask[mini].sum()), env.device)
            step_loss = 0.0
            token_sums = {"kl": 0.0, "clip": 0.0, "entropy": 0.0, "ratio": 0.0, "tokens": 0.0}
            micro_steps = _max_over_processes(-(-len(mini) // micro), env.device)
            for m in range(micro_steps):
                index = mini[m * micro : (m + 1) * micro]
                # a process out of rows joins the all-reduce with a zero-weight pass over one row
                filler = len(index) == 0
                if filler:
                    index = torch.arange(min(1, n))
                rows = _rows(batch, index.to(env.device))
                with engine.micro_step(last=m == micro_steps - 1) as forward_model:
                    logp, entropy = completion_logprobs(forward_model, rows, with_entropy=True)
                    old = logp.detach() if old_logp is None else old_logp[index]
                    ref = ref_logp[index] if ref_logp is not None else None
                    importance = None
                    if settings.importance_cap is not None:
                        weights = truncated_importance_weights(
                            old, sampler_logp[index], settings.importance_cap
                        )
                        importance = weights.weights
                    terms = token_terms(logp, old, ref, advantages[index], clip, importance)
                    loss = aggregate(
                        terms.loss,
                        rows.output_mask,
                        settings.aggregation,
                        num_sequences=int(sequences),
                        num_tokens=tokens,
                    )
                    if filler:
                        loss = loss * 0.0
                    engine.backward(loss * engine.loss_multiplier)
                if filler:
                    continue
                if reuse_old:
                    trainer_old = (
                        logp.detach() if trainer_old is None else torch.cat([trainer_old, logp.detach()])
                    )
                step_loss += float(loss.detach())
                count = float(rows.output_mask.sum())
                token_sums["tokens"] += count
                token_sums["kl"] += masked_mean(terms.kl, rows.output_mask) * count
                token_sums["clip"] += masked_mean(terms.clipped.float(), rows.output_mask) * count
                token_sums["entropy"] += masked_mean(entropy, rows.output_mask) * count  # type: ignore[arg-type]
                token_sums["ratio"] += masked_mean(terms.ratio, rows.output_mask) * count
                if settings.importance_cap is not None and pass_index == 0:  # every token once
                    weight_sums["weight"] += masked_mean(weights.weights, rows.output_mask) * count
                    weight_sums["capped"] += masked_mean(weights.capped.float(), rows.output_mask) * count
                    weight_sums["tokens"] += count
            sums["grad"] += engine.step()
            total = all_reduce_sum(token_sums["tokens"], env.device)
            for key in ("kl", "clip", "entropy", "ratio"):
                sums[key] += all_reduce_sum(token_sums[key], env.device) / max(total, 1.0)
            sums["loss"] += all_reduce_sum(step_loss, env.device)  # denominators are global
            stats.optimizer_steps += 1
    steps = max(stats.optimizer_steps, 1)
    stats.loss, stats.kl, stats.clip_fraction = sums["loss"] / steps, sums["kl"] / steps, sums["clip"] / steps
    stats.entropy, stats.ratio_mean, stats.grad_norm = (
        sums["entropy"] / steps,
        sums["ratio"] / steps,
        sums["grad"] / steps,
    )
    if settings.importance_cap is not None:
        weighted = all_reduce_sum(weight_sums["tokens"], env.device)
        stats.importance_weight_mean = all_reduce_sum(weight_sums["weight"], env.device) / max(weighted, 1.0)
        stats.importance_capped_fraction = all_reduce_sum(weight_sums["capped"], env.device) / max(
            weighted, 1.0
        )
    if trainer_old is not None:
        delta = (trainer_old - sampler_logp) * batch.output_mask
        k3 = torch.exp(delta) - delta - 1
        stats.sampler_kl = masked_mean(k3, batch.output_mask)
    return stats
