"""What a GRPO checkpoint holds beyond the weights, optimizer and RNGs the shared trainer saves.

The policy's published version, where pi_ref was loaded from, the RL iteration, the reward model the
trainer loaded, and the question order's position. It travels as the checkpoint's data state, so
it is written and published atomically with the rest of the step directory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunState:
    """The GRPO loop's resumable state."""

    weights_version: int = 0  # the policy version the sampler was given last (0 = none yet)
    reference: str = ""  # checkpoint directory pi_ref was loaded from
    iteration: int = 0  # completed RL iterations (pi_ref resets)
    reward_model_version: int = 0  # version of the RM this run loaded (0 = the service's own)
    reward_model_path: str = ""
    questions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunState:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)
