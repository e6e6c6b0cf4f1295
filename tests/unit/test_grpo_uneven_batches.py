"""A GRPO update over two DDP processes (gloo) holding different numbers of outputs, as dynamic
sampling leaves them, equals one process updating on all of them: the process with fewer
micro-batches joins the gradient all-reduce of each optimizer step with zero-weight ones, and the
engine all-reduces at the micro-step the update marks last."""

from __future__ import annotations

import copy
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.training.config import config_from_mapping
from mathforge.training.distributed import DistEnv
from mathforge.training.engines import build_engine
from mathforge.training.grpo.advantages import outcome_advantages
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.questions import Question
from mathforge.training.grpo.rollout import Rollout
from mathforge.training.grpo.update import UpdateSettings, policy_update

pytestmark = pytest.mark.slow
GROUP = 4
SHARES = ((0, 2), (2, 3))  # rank 0 trains on groups 0-1, rank 1 on group 2 only


def _model():
    tokenizer = default_tokenizer()
    return build_model("tiny", vocab_size=len(tokenizer), seed=2, pad_token_id=tokenizer.pad_token_id)


def _rollout(first: int, last: int) -> Rollout:
    gen = torch.Generator().manual_seed(11)
    prompts = [[1, 5, 9, 11], [1, 7, 3], [1, 4, 4, 8, 2]]
    lengths = torch.randint(1, 7, (3 * GROUP,), generator=gen).tolist()
    outputs = [torch.randint(10, 200, (n,), generator=gen).tolist() for n in lengths]
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 0.2, 0.9, 0.4])
    rows = slice(first * GROUP, last * GROUP)
    rollout = Rollout(
        [Question(f"q{i}", "1") for i in range(first, last)],
        GROUP,
        1,
        prompts[first:last],
        outputs[rows],
        [[0.0] * len(o) for o in outputs[rows]],
        ["x"] * (last - first) * GROUP,
        [False] * (last - first) * GROUP,
    )
    rollout.rewards = rewards[rows]
    return rollout


def _config() -> GrpoConfig:
    return config_from_mapping(
        GrpoConfig,
        {
            "model": {"init_from": "/m"},
            "task": {"synthetic_problems": 10},
            "optim": {"lr": 1e-2},
            "batch": {"micro_batch_size": 3},
            # the configured batch (4 groups) is larger than any process's share, as under dynamic sampling
            "rollout": {"questions_per_step": 4, "group_size": GROUP},
            "objective": {"mu": 2, "beta": 0.0},
        },
    )


def _update(model, rollout: Rollout, env: DistEnv) -> float:
    config = _config()
    engine = build_engine(config, model, env)
    advantages = outcome_advantages(rollout.rewards, GROUP, config.objective.normalisation())
    settings = UpdateSettings.from_config(config, off_policy=False)
    return policy_update(engine, None, rollout, advantages, settings, env, step_seed=3, pad_id=0).loss


def _worker(rank: int, port: int, results) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = _model()
        loss = _update(model, _rollout(*SHARES[rank]), DistEnv(rank, rank, 2, torch.device("cpu")))
        if rank == 0:
            results["loss"] = loss
            results["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
    finally:
        dist.destroy_process_group()


def test_uneven_shares_over_two_processes_update_like_one_process():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(port, results), nprocs=2, join=True)
        loss, weights = results["loss"], dict(results["weights"])
    single = _model()
    original = copy.deepcopy(single.state_dict())
    expected = _update(single, _rollout(0, 3), DistEnv(0, 0, 1, torch.device("cpu")))
    assert loss == pytest.approx(expected, abs=1e-6)
    changed = 0
    for key, value in single.state_dict().items():
        torch.testing.assert_close(
            weights[key], value, atol=1e-5, rtol=0
        )  # Adam at lr 1e-2: a wrong all-reduce is ~1e-2 off
        changed += not torch.equal(value, original[key])
    assert changed > 0
