"""Packs token sequences into fixed-length rows with per-document position ids and labels.

A row holds several documents back to back. Each document's position ids start again at 0, and
transformers' Llama (5.x) reads those resets as document boundaries when no attention mask is
passed: attention stays within a document on every attention implementation (sdpa, eager,
flash_attention_2). A label is the next token's id, or -100 where the next token starts another
document, is padding, or is not a trained token (SFT prompts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

IGNORE = -100


@dataclass
class PackedRow:
    """One row under construction: token ids, position ids and which tokens are trained targets."""

    length: int
    ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    targets: list[bool] = field(default_factory=list)

    @property
    def free(self) -> int:
        return self.length - len(self.ids)

    def add(self, ids: list[int], targets: list[bool], first_position: int = 0) -> None:
        """Appends one document (or a piece of one) whose positions start at `first_position`."""
        if len(ids) > self.free:
            raise ValueError(f"{len(ids)} tokens do not fit in the {self.free} free positions of the row")
        self.ids.extend(ids)
        self.positions.extend(range(first_position, first_position + len(ids)))
        self.targets.extend(targets)

    def finish(self, pad_id: int) -> tuple[list[int], list[int], list[int]]:
        """Pads the row and returns (input_ids, position_ids, labels)."""
        pad = self.free
        ids = self.ids + [pad_id] * pad
        # Padding gets its own increasing positions from 0, i.e. it is a separate "document".
        positions = self.positions + list(range(pad))
        targets = self.targets + [False] * pad
        labels = [IGNORE] * self.length
        for t in range(self.length - 1):
            # Predict token t+1 from position t only inside one document and when t+1 is trained.
            if targets[t + 1] and positions[t + 1] != 0:
                labels[t] = ids[t + 1]
        return ids, positions, labels


def collate_rows(rows: list[tuple[list[int], list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Stacks finished rows into the tensors a forward pass takes."""
    return {
        "input_ids": torch.tensor([r[0] for r in rows], dtype=torch.long),
        "position_ids": torch.tensor([r[1] for r in rows], dtype=torch.long),
        "labels": torch.tensor([r[2] for r in rows], dtype=torch.long),
    }
