"""Per-token log-probabilities and entropies of sampled outputs under a causal LM.

    batch = pack_outputs(prompts, completions, pad_id)          # right-padded prompt+output rows
    logp, entropy = completion_logprobs(model, batch)          # (N, T_max) over output tokens

The log-probabilities are of the raw model (temperature 1), the policy pi_theta of DeepSeekMath §4, the
same distribution the sampler reports its logprobs under.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class OutputBatch:
    """Rows of prompt + output tokens, right-padded, and where each row's output starts."""

    input_ids: torch.Tensor  # (N, S)
    attention_mask: torch.Tensor  # (N, S)
    output_start: torch.Tensor  # (N,) index of the first output token in each row
    output_mask: torch.Tensor  # (N, T_max) 1 for real output tokens

    def to(self, device: torch.device) -> OutputBatch:
        return OutputBatch(
            *(
                t.to(device)
                for t in (self.input_ids, self.attention_mask, self.output_start, self.output_mask)
            )
        )


def pack_outputs(
    prompts: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]], pad_id: int
) -> OutputBatch:
    """Joins each prompt with its output into right-padded rows."""
    rows = [list(p) + list(o) for p, o in zip(prompts, outputs, strict=True)]
    width = max(len(r) for r in rows)
    out_width = max(1, max(len(o) for o in outputs))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    output_mask = torch.zeros(len(rows), out_width, dtype=torch.float32)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention[i, : len(row)] = 1
        output_mask[i, : len(outputs[i])] = 1.0
    starts = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    return OutputBatch(input_ids, attention, starts, output_mask)


def completion_logprobs(
    model: torch.nn.Module, batch: OutputBatch, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | q, o_<t) for every output token, (N, T_max), zero on padding; and the entropy of
    pi at each of those positions when asked (detached, for metrics)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    width = batch.output_mask.shape[1]
    # the logits at position p predict token p + 1: output token t sits at start + t
    positions = (batch.output_start[:, None] - 1 + torch.arange(width, device=logits.device)[None, :]).clamp(
        max=logits.shape[1] - 2
    )
    picked = logits.gather(1, positions[:, :, None].expand(-1, -1, logits.shape[-1])).float()
    targets = batch.input_ids.gather(1, (positions + 1).clamp(max=batch.input_ids.shape[1] - 1))
    log_probs = F.log_softmax(picked, dim=-1)
    token_logp = log_probs.gather(-1, targets[:, :, None]).squeeze(-1) * batch.output_mask
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(log_probs.exp() * log_probs).sum(-1) * batch.output_mask
    return token_logp, entropy
