"""Trains an outcome or process reward model (DeepSeekMath §4).

    torchrun --nproc_per_node=2 -m mathforge.reward.train --config configs/tiny/reward-orm.yaml
    python -m mathforge.reward.train --config configs/tiny/reward-prm.yaml optim.lr=1e-3 batch.steps=50

The result is a reward model directory at <out_dir>/final that `mathforge serve reward --orm-path`
(or LoadModel) serves. To continue an earlier reward model on fresh policy samples, set
model.init_from to it and data.replay to the data it was trained on: data.replay_share of the new
training set (default 10%) is drawn from that history.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from mathforge.reward.train_config import RewardTrainConfig
from mathforge.reward.trainer import run_training
from mathforge.runtime.logs import configure_logging
from mathforge.training.config import ConfigError, stage_config
from mathforge.training.interrupt import Interrupted, exit_now


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging("INFO", "text")
    logging.getLogger("mathforge").setLevel(logging.INFO)
    config = stage_config(RewardTrainConfig, argv, prog="python -m mathforge.reward.train")
    try:
        run_training(config)
    except ConfigError as exc:  # a setting only the run can check (a metrics package not installed)
        print(f"{config.stage}: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{config.stage}: {exc}", file=sys.stderr, flush=True)
        exit_now(exc.exit_code)  # the process group is left (run_training's finally)
    return 0


if __name__ == "__main__":
    exit_now(main())  # no interpreter teardown after a finished run (interrupt.exit_now)
