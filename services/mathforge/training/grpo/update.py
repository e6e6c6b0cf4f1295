"""The policy update of one GRPO step: pi_old and pi_ref log-probabilities, then mu passes of clipped
updates over the batch (DeepSeekMath §4, "for grpo_iteration = 1..mu").

    stats = policy_update(engine, reference, rollout, advantages, config, step_seed)

A pass splits the batch into `updates_per_step` mini-batches (one optimizer step each) of
micro-batches (one forward/backward each). Loss denominators are the mini-batch's sequences or
tokens over all processes, so the micro-batch size and the number of processes do not change the
update. With mu = 1 and one mini-batch, pi_old is pi_theta itself: its log-probabilities are the
forward pass's own, detached (ratio exactly 1), which saves a forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mathforge.training.distributed import DistEnv, all_reduce_sum
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.logprobs import OutputBatch, completion_logprobs, pack_outputs
from mathforge.training.grpo.loss import aggregate, masked_mean, token_terms
from mathforge.training.grpo.rollout import Rollout


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


def _rows(batch: OutputBatch, index: torch.Tensor) -> OutputBatch:
    return OutputBatch(
        batch.input_ids[index],
        batch.attention_mask[index],
        batch.output_start[index],
        batch.output_mask[index],
    )


@torch.no_grad()
def score_logprobs(model: torch.nn.Module, batch: OutputBatch, micro: int) -> torch.Tensor:
    """Log-probabilities of every output token under `model`, without gradients, in micro-batches."""
    parts = []
    for first in range(0, batch.input_ids.shape[0], micro):
        index = torch.arange(first, min(first + micro, batch.input_ids.shape[0]))
        logp, _ = completion_logprobs(model, _rows(batch, index))
        parts.append(logp)
    return torch.cat(parts)


def policy_update(
    engine: object,
    reference: torch.nn.Module | None,
    rollout: Rollout,
    advantages: torch.Tensor,
    config: GrpoConfig,
    env: DistEnv,
    step_seed: int,
    pad_id: int,
) -> UpdateStats:
    """Applies mu passes of clipped GRPO updates to `engine` (a training engine with micro_step /
    backward / step) on this process's share of the rollout."""
    objective = config.objective
    clip = objective.clip()
    micro = config.batch.micro_batch_size
    batch = pack_outputs([rollout.prompt_of(i) for i in range(rollout.size)], rollout.completion_ids, pad_id)
    batch = batch.to(env.device)
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand(-1, batch.output_mask.shape[1])
    advantages = advantages[:, : batch.output_mask.shape[1]].to(env.device)
    module: torch.nn.Module = engine.module  # type: ignore[attr-defined]
    reuse_old = objective.mu == 1 and objective.updates_per_step == 1
    old_logp = None if reuse_old else score_logprobs(module, batch, micro)
    ref_logp = score_logprobs(reference, batch, micro) if reference is not None and clip.beta > 0 else None
    sampler_logp = torch.zeros_like(batch.output_mask)
    for i, values in enumerate(rollout.sampler_logprobs):
        sampler_logp[i, : len(values)] = torch.tensor(values, dtype=torch.float32)
    stats = UpdateStats()
    generator = torch.Generator().manual_seed(step_seed)
    n = rollout.size
    per_update = n // objective.updates_per_step
    sums = {"loss": 0.0, "kl": 0.0, "clip": 0.0, "entropy": 0.0, "ratio": 0.0, "grad": 0.0}
    trainer_old: torch.Tensor | None = old_logp
    for _ in range(objective.mu):
        order = torch.randperm(n, generator=generator) if objective.updates_per_step > 1 else torch.arange(n)
        for first in range(0, n, per_update):
            mini = order[first : first + per_update]
            sequences = all_reduce_sum(len(mini), env.device)
            tokens = all_reduce_sum(float(batch.output_mask[mini].sum()), env.device)
            step_loss = 0.0
            token_sums = {"kl": 0.0, "clip": 0.0, "entropy": 0.0, "ratio": 0.0, "tokens": 0.0}
            for m_first in range(0, len(mini), micro):
                index = mini[m_first : m_first + micro]
                rows = _rows(batch, index.to(env.device))
                with engine.micro_step() as forward_model:  # type: ignore[attr-defined]
                    logp, entropy = completion_logprobs(forward_model, rows, with_entropy=True)
                    old = logp.detach() if old_logp is None else old_logp[index]
                    ref = ref_logp[index] if ref_logp is not None else None
                    terms = token_terms(logp, old, ref, advantages[index], clip)
                    loss = aggregate(
                        terms.loss,
                        rows.output_mask,
                        objective.aggregation,
                        num_sequences=int(sequences),
                        num_tokens=tokens,
                    )
                    engine.backward(loss * engine.loss_multiplier)  # type: ignore[attr-defined]
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
            sums["grad"] += engine.step()  # type: ignore[attr-defined]
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
    if trainer_old is not None:
        delta = (trainer_old - sampler_logp) * batch.output_mask
        k3 = torch.exp(delta) - delta - 1
        stats.sampler_kl = masked_mean(k3, batch.output_mask)
    return stats
