"""Runs the GRPO stage.

torchrun --nproc_per_node=1 -m mathforge.training.grpo --config configs/tiny/grpo.yaml [key=value ...]
python -m mathforge.training.grpo --config configs/paper-7b/grpo.yaml model.init_from=/checkpoints/sft/final
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from mathforge.models.checkpoint import CheckpointError
from mathforge.training.config import ConfigError, stage_config
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.loop import run_grpo
from mathforge.training.grpo.services import StaleSampleError


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = stage_config(GrpoConfig, argv, prog="python -m mathforge.training.grpo")
    try:
        run_grpo(config)
    except (CheckpointError, TimeoutError, StaleSampleError) as exc:
        # a wrong path, a service that never came up, another trainer on the sampler: say which
        print(f"grpo: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # a setting only the run can check (a metrics package not installed)
        print(f"grpo: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
