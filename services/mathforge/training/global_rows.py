"""A batch stream whose position belongs to the job, not to one process, so a checkpoint's data
position continues on any number of processes.

    stream = GlobalRows(SftStream(examples, ..., rank=0, world_size=1), env.rank, env.world_size)

Every process runs the same stream over all the data; each micro-batch call draws the rows of all
processes and keeps this process's share. The rows of one optimizer step are then the same set
whatever the world size and accumulation (1 process x 4 micro-batches of 2 rows or 2 processes x
2 micro-batches of 2 rows read global rows 0-7), and since the trainer's loss is a sum over the
global batch, so is the step. The price is that every process packs (or tokenizes) every row.
"""

from __future__ import annotations

from typing import Any

import torch

DATA_ORDERS = ("global", "per_rank")


class GlobalRows:
    """This process's rows of a stream shared by all processes."""

    def __init__(self, stream: Any, rank: int, world_size: int):
        self.stream = stream
        self.rank = rank
        self.world_size = world_size

    def next_batch(self, rows: int) -> dict[str, torch.Tensor]:
        batch = self.stream.next_batch(rows * self.world_size)
        return {key: value[self.rank * rows : (self.rank + 1) * rows] for key, value in batch.items()}

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)
