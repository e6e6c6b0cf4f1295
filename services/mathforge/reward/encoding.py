"""Turns (question, response) pairs into the token sequences a reward model reads, and scores
padded batches of them.

    item = encode(rm, "What is 2+3?", "2 + 3 = 5\\nThe answer is \\\\boxed{5}.")
    [scores] = score_encoded(rm, [item])      # ORM: [one score]; PRM: one score per step

The sequence is the chat format of models/tokenizer.py: `<s><|user|>\\n{question}\\n<|assistant|>\\n`
then the response; an ORM also gets `</s>`, whose position is where its score is read. The response
is tokenised on its own so its token offsets count from the response's first token, which is what
reward.proto's StepReward reports. Role tags in user text are kept as text, never read as special
tokens, so a response cannot forge the chat structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from mathforge.models.tokenizer import ROLE_TAGS
from mathforge.reward.model import RewardModel
from mathforge.reward.steps import StepSpan, split_steps, token_spans


@dataclass
class EncodedItem:
    """Token ids of one item, the positions whose scores are its rewards, and (PRM) its steps."""

    input_ids: list[int]
    read_at: list[int]
    steps: list[StepSpan] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


def _text_ids(rm: RewardModel, text: str) -> list[int]:
    return list(rm.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def prompt_ids(rm: RewardModel, question: str) -> list[int]:
    """The tokens before the response: BOS, the user turn with the question, the assistant tag."""
    tok = rm.tokenizer
    user, assistant = (tok.convert_tokens_to_ids(ROLE_TAGS[r]) for r in ("user", "assistant"))
    return [tok.bos_token_id, user, *_text_ids(rm, "\n" + question + "\n"), assistant, *_text_ids(rm, "\n")]


def encode(rm: RewardModel, question: str, response: str) -> EncodedItem:
    """The item for `rm`: ORM reads at the closing EOS, PRM at the last token of each step."""
    prompt = prompt_ids(rm, question)
    encoded = rm.tokenizer(
        response, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True
    )
    response_ids = list(encoded["input_ids"])
    if rm.kind == "orm":
        ids = [*prompt, *response_ids, rm.tokenizer.eos_token_id]
        return EncodedItem(ids, [len(ids) - 1])
    steps = token_spans(split_steps(response, rm.step_separator), encoded["offset_mapping"])
    read_at = [len(prompt) + step.token_end - 1 for step in steps]
    return EncodedItem([*prompt, *response_ids], read_at, steps)


def collate(items: Sequence[EncodedItem], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and attention mask, [batch, longest]."""
    longest = max(len(item) for item in items)
    ids = torch.full((len(items), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), longest), dtype=torch.long)
    for row, item in enumerate(items):
        ids[row, : len(item)] = torch.tensor(item.input_ids, dtype=torch.long)
        mask[row, : len(item)] = 1
    return ids, mask


def read_logits(logits: torch.Tensor, items: Sequence[EncodedItem]) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits at every item's read positions, flattened, and the row index of each."""
    rows = torch.tensor([row for row, item in enumerate(items) for _ in item.read_at], dtype=torch.long)
    cols = torch.tensor([pos for item in items for pos in item.read_at], dtype=torch.long)
    return logits[rows, cols], rows


def score_encoded(rm: RewardModel, items: Sequence[EncodedItem]) -> list[list[float]]:
    """Rewards in [0, 1] (the head's sigmoid) at each item's read positions, one forward pass."""
    if not items:
        return []
    device = rm.network.device
    ids, mask = collate(items, rm.tokenizer.pad_token_id)
    with torch.inference_mode():
        logits = rm.token_logits(ids.to(device), mask.to(device))
        picked, _ = read_logits(logits, items)
        values = torch.sigmoid(picked.float()).cpu().tolist()
    results: list[list[float]] = []
    start = 0
    for item in items:
        results.append(values[start : start + len(item.read_at)])
        start += len(item.read_at)
    return results
