"""Tiny policies with set weights for end-to-end GRPO runs, built on the fly (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch
from mathforge.models.checkpoint import save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer


def digit_writer(directory: Path) -> Path:
    """A tiny model that writes digits and stops: every token embeds alike and no layer writes to the
    residual stream, so each next token is one of "1".."9" or end-of-sequence, evenly, whatever came
    before. About 70% of its 12-token answers finish (GRPO counts a cut one as wrong), so rewards
    differ within groups and every step moves the policy; its outputs are random, not learned."""
    tokenizer = default_tokenizer()
    model = build_model(
        "tiny",
        vocab_size=len(tokenizer),
        seed=3,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.no_grad():
        embeddings = model.model.embed_tokens.weight
        embeddings.copy_(embeddings[5].expand_as(embeddings))  # (row 0 is the zero padding row)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        hidden = model.model(input_ids=torch.tensor([[1, 2, 3]])).last_hidden_state[0, -1]
        model.lm_head.weight.zero_()
        digits = [tokenizer.encode(str(d), add_special_tokens=False)[0] for d in range(1, 10)]
        for token in [*digits, tokenizer.eos_token_id]:
            model.lm_head.weight[token] = 12.0 * hidden / hidden.dot(hidden)
    return save_model(model, tokenizer, directory)


def tiny_policy(directory: Path, seed: int) -> Path:
    """The tiny preset with the seed's random weights and the tokenizer's special ids, saved as a
    checkpoint a sampler can load (two seeds give two policies that answer differently)."""
    tokenizer = default_tokenizer()
    model = build_model(
        "tiny",
        len(tokenizer),
        seed=seed,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return save_model(model, tokenizer, directory)
