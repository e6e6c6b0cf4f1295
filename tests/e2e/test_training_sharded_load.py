"""ZeRO-3 models are created partitioned and each process reads only its share of the weights: on 2
processes (gloo, CPU) the gathered parameters equal the checkpoint's and each process read about
half of the elements. (SFT started that way trains with DDP's losses: test_training_elastic.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mathforge.models.checkpoint import save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

CHECK = """
import json, sys, torch, deepspeed
from safetensors.torch import load_file
from mathforge.training.distributed import finish_distributed, init_distributed
from mathforge.training.sharded_load import partitioned_model, read_partitions
env = init_distributed("cpu", use_deepspeed=True)
ds = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}
model = partitioned_model(__import__("pathlib").Path(sys.argv[1]), ds)
held = sum(p.ds_tensor.numel() for p in model.parameters())
total = sum(p.ds_numel for p in model.parameters())
read = read_partitions(model, __import__("pathlib").Path(sys.argv[1]))
expected = load_file(sys.argv[1] + "/model.safetensors")
equal = True
for name, param in model.named_parameters():
    with deepspeed.zero.GatheredParameters(param):
        equal &= bool(torch.equal(param.data, expected[name]))
print(json.dumps({"rank": env.rank, "held": held, "read": read, "total": total, "equal": equal}), flush=True)
finish_distributed()  # leaving with the group alive can abort a rank at exit (gloo threads)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO / "services"),
        HF_HUB_OFFLINE="1",
        DS_ACCELERATOR="cpu",
        TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"),
    )
    return env


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    done = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    tokenizer = default_tokenizer()
    path = tmp_path_factory.mktemp("sharded") / "base"
    save_model(build_model("tiny", len(tokenizer), seed=3), tokenizer, path)
    return path


def test_each_process_reads_only_its_partition_and_the_gathered_weights_are_the_checkpoints(base, tmp_path):
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    done = torchrun(str(script), str(base))
    # Two ranks print to one pipe: their lines can run together, so take each object on its own.
    reports = [json.loads(found) for found in re.findall(r'\{"rank"[^{}]*\}', done.stdout)]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    for report in reports:
        assert report["equal"]
        assert report["held"] <= report["total"] // 2 + 1000  # a partition, padded
        assert report["read"] <= report["total"] // 2 + 1000
    assert sum(r["read"] for r in reports) == reports[0]["total"]


REWARD_CHECK = """
import json, sys, torch, deepspeed
from mathforge.reward.model import init_reward_model, init_reward_model_partitioned
from mathforge.training.distributed import finish_distributed, init_distributed
env = init_distributed("cpu", use_deepspeed=True)
ds = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}
rm = init_reward_model_partitioned("prm", sys.argv[1], ds, seed=7)
held = sum(p.ds_tensor.numel() for p in rm.network.parameters())
total = sum(p.ds_numel for p in rm.network.parameters())
whole = dict(init_reward_model("prm", sys.argv[1], seed=7).network.named_parameters())
equal = True
for name, param in rm.network.named_parameters():
    with deepspeed.zero.GatheredParameters(param):
        equal &= bool(torch.equal(param.data, whole[name].data))
head = float(whole["score.weight"].abs().sum())
print(json.dumps({"rank": env.rank, "held": held, "total": total, "equal": equal, "kind": rm.kind,
                  "head": head}), flush=True)
finish_distributed()
"""


def test_the_reward_network_is_created_partitioned_with_the_backbone_read_and_the_head_seeded(base, tmp_path):
    """The reward stage under ZeRO-3 from a causal-LM checkpoint: each process holds half of the
    network, and the gathered network equals the one built whole (backbone from the checkpoint, the
    fresh scalar head drawn from the same seed)."""
    script = tmp_path / "check_reward.py"
    script.write_text(REWARD_CHECK)
    done = torchrun(str(script), str(base))
    reports = [json.loads(found) for found in re.findall(r'\{"rank"[^{}]*\}', done.stdout)]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    for report in reports:
        assert report["equal"] and report["kind"] == "prm"
        assert report["head"] > 0  # a drawn head, not zeros (equal to the whole build's)
        assert report["held"] <= report["total"] // 2 + 1000


def reward_stage(out: Path, base: Path, processes: int, *overrides: str) -> dict[int, float]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "mathforge.reward.train",
        "--config",
        "configs/tiny/reward-orm.yaml",
        f"model.init_from={base}",
        f"out_dir={out}",
        "batch.steps=3",
        "checkpoint.every=3",
        "data.synthetic_train=200",
        "data.synthetic_eval=0",
        "metrics.progress_bar=off",
        *overrides,
    ]
    done = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event"')]
    (start,) = [e for e in events if e["event"] == "start"]
    assert start["partitioned_start"] == (processes > 1)  # the ZeRO-3 run took the partitioned path
    return {e["step"]: e["loss"] for e in events if e["event"] == "step"}


def test_the_reward_stage_started_partitioned_under_zero3_trains_with_the_whole_starts_losses(base, tmp_path):
    """The reward stage from a causal-LM checkpoint on 2 ZeRO-3 processes (network created
    partitioned) and on 1 DDP process (built whole): the same losses over the same global batches
    (sums in another order: 1e-5), so both started from the same backbone and head."""
    zero3 = ["engine.kind=deepspeed", "engine.deepspeed_config=configs/deepspeed/zero3.json"]
    sharded = reward_stage(tmp_path / "zero3", base, 2, *zero3)
    whole = reward_stage(tmp_path / "ddp", base, 1)
    assert sorted(sharded) == [1, 2, 3]
    assert sharded == pytest.approx(whole, abs=1e-5)
