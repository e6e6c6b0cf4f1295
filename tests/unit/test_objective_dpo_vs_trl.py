"""Our DPO loss, and the gradient our update gets from DPO's coefficients, against TRL's own
`DPOTrainer._compute_loss` (sigmoid loss) on the same log-probabilities.

TRL's method is called unbound on a minimal stand-in for the trainer carrying the attributes its loss
path reads; the model forward returns our fixed per-token log-probabilities (precomputed reference
sums, as TRL's precompute_ref_log_probs), so both sides differentiate the same leaf tensor.
"""

from __future__ import annotations

import collections
import types

import pytest
import torch
from mathforge.training.grpo.loss import ClipConfig, aggregate, token_terms
from mathforge.training.objective.coefficients import dpo_coefficients, dpo_loss, dpo_update_coefficients
from trl.trainer.dpo_trainer import DPOTrainer

PAIRS, T = 3, 6


class _Accelerator:
    device = torch.device("cpu")
    num_processes = 1

    def gather_for_metrics(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    gather = gather_for_metrics


def _trl_loss(token_logp: torch.Tensor, mask: torch.Tensor, ref: torch.Tensor, beta: float) -> torch.Tensor:
    """TRL's loss; its batch is [chosen..., rejected...] with one prompt token before the completion."""
    full_mask = torch.cat([torch.zeros(2 * PAIRS, 1), mask], dim=1).long()
    outputs = types.SimpleNamespace(
        log_probs=token_logp * mask,
        entropy=torch.zeros_like(token_logp),
        mean_logits=torch.zeros_like(token_logp),
        is_top1=torch.zeros_like(token_logp, dtype=torch.bool),
    )
    stand_in = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True),
        accelerator=_Accelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=["sigmoid"],
        loss_weights=[1.0],
        use_weighting=False,
        beta=beta,
        _metrics={"train": collections.defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.ones_like(full_mask),
        "attention_mask": torch.ones_like(full_mask),
        "completion_mask": full_mask,
        "ref_chosen_logps": ref[:PAIRS],
        "ref_rejected_logps": ref[PAIRS:],
    }
    return DPOTrainer._compute_loss(stand_in, lambda **kwargs: outputs, inputs, return_outputs=False)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_and_update_gradient_match_trl(beta):
    generator = torch.Generator().manual_seed(3)
    token_logp = (-torch.rand(2 * PAIRS, T, generator=generator) * 2).requires_grad_()
    lengths = [6, 4, 5, 2, 6, 3]
    mask = torch.tensor([[1.0 if t < n else 0.0 for t in range(T)] for n in lengths])
    ref = -torch.rand(2 * PAIRS, generator=generator) * 6
    pairs = [(i, PAIRS + i) for i in range(PAIRS)]

    trl = _trl_loss(token_logp, mask, ref, beta)
    trl.backward()
    trl_grad = token_logp.grad.clone()
    token_logp.grad = None

    ours = dpo_loss((token_logp * mask).sum(-1), ref, pairs, beta)
    assert float(ours.detach()) == pytest.approx(float(trl.detach()), abs=1e-5)

    # the update's way: coefficients, then the clipped surrogate at ratio 1, sequence mean
    sums = (token_logp * mask).sum(-1).detach()
    coefficients = dpo_update_coefficients(
        dpo_coefficients(sums, ref, pairs, beta), lengths, len(pairs), beta
    )
    terms = token_terms(token_logp, token_logp.detach(), None, coefficients, ClipConfig(beta=0.0))
    aggregate(terms.loss, mask, "sequence").backward()
    assert (token_logp.grad - trl_grad).abs().max().item() < 1e-5
