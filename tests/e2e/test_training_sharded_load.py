"""ZeRO-3 models are created partitioned and each process reads only its share of the weights: on 2
processes (gloo, CPU) the gathered parameters equal the checkpoint's and each process read about
half of the elements. (SFT started that way trains with DDP's losses: test_training_elastic.py.)
A fresh preset (random weights) is created partitioned too, with the weights the whole build draws
from the same seed, so a ZeRO-3 run and a DDP run of it start, and train, the same."""

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
from mathforge.training.interrupt import exit_now
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
exit_now(0)  # as the stages end: interpreter teardown has aborted a ZeRO-3 rank (exit 134)
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
from mathforge.training.interrupt import exit_now
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
exit_now(0)
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


FRESH_CHECK = """
import json, sys, torch, deepspeed
from transformers import AutoModelForCausalLM
from mathforge.models.presets import build_model, model_config
from mathforge.models.tokenizer import default_tokenizer
from mathforge.reward.model import init_reward_model, init_reward_model_partitioned
from mathforge.training.distributed import finish_distributed, init_distributed
from mathforge.training.interrupt import exit_now
from mathforge.training.partitioned_init import cpu_float32, fresh_partitioned
env = init_distributed("cpu", use_deepspeed=True)
ds = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}
bf16 = {**ds, "bf16": {"enabled": True}}
tok = default_tokenizer()
ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
report = {"rank": env.rank}
built = {
    "lm": (fresh_partitioned(AutoModelForCausalLM, model_config("tiny", len(tok), **ids), ds, seed=3),
           build_model("tiny", len(tok), seed=3, **ids)),
    "rm": (init_reward_model_partitioned("prm", "tiny", ds, seed=5, tokenizer=tok).network,
           init_reward_model("prm", "tiny", seed=5, tokenizer=tok).network),
    "bf16": (fresh_partitioned(AutoModelForCausalLM, model_config("tiny", len(tok), **ids), bf16, seed=4),
             build_model("tiny", len(tok), seed=4, dtype="bfloat16", **ids)),
}
with deepspeed.zero.Init(config_dict_or_path=bf16):  # its torch.empty gives bf16 on the accelerator
    scratch = cpu_float32((2, 3))
    report["scratch"] = [str(torch.empty(1).dtype), str(scratch.dtype), scratch.device.type]
for key, (model, whole) in built.items():
    expected = dict(whole.named_parameters())
    head = expected["score.weight" if key == "rm" else "lm_head.weight"]
    differ = []
    for name, param in model.named_parameters():
        with deepspeed.zero.GatheredParameters(param):
            if not torch.equal(param.data, expected[name].data):
                differ.append(name)
    report[key] = {"differ": differ, "held": sum(p.ds_tensor.numel() for p in model.parameters()),
                   "total": sum(p.ds_numel for p in model.parameters()),
                   "names": len(expected), "dtype": str(next(model.parameters()).dtype),
                   "head_std": float(head.float().std())}
report["end"] = True  # the two ranks' lines can run together: the marker ends each object
print(json.dumps(report), flush=True)
finish_distributed()
exit_now(0)
"""


def test_a_fresh_preset_is_created_partitioned_with_the_weights_the_whole_build_draws(tmp_path):
    """The tiny preset (causal LM in fp32 and bf16, and a reward network) created partitioned on 2
    processes: each holds half, and gathered they equal `build_model` / `init_reward_model` with the
    same seed, every parameter (the whole build does not depend on the number of processes, so
    neither does this). The whole build's head has the configured std (0.02), not zeros or
    construction draws. Inside zero.Init, whose tensor constructors give the run's dtype on the
    accelerator, the draws' tensors are still CPU float32, as the whole build's are."""
    script = tmp_path / "check_fresh.py"
    script.write_text(FRESH_CHECK)
    done = torchrun(str(script))
    reports = [json.loads(found) for found in re.findall(r'\{"rank".*?"end": true\}', done.stdout)]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    for report in reports:
        assert report["scratch"] == ["torch.bfloat16", "torch.float32", "cpu"]
        assert report["bf16"]["dtype"] == "torch.bfloat16" and report["lm"]["dtype"] == "torch.float32"
        for key in ("lm", "rm", "bf16"):
            assert report[key]["differ"] == [], key
            assert report[key]["names"] > 10
            assert report[key]["held"] <= report[key]["total"] // 2 + 1000
            assert report[key]["head_std"] == pytest.approx(0.02, rel=0.1)


def sft_fresh(out: Path, tokenizer: Path, processes: int, *overrides: str) -> tuple[dict, dict[int, float]]:
    """SFT from the tiny preset's random weights (no init_from); the start event and {step: loss}."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "mathforge.training.sft",
        "--config",
        "configs/tiny/sft.yaml",
        f"model.tokenizer={tokenizer}",
        f"out_dir={out}",
        "seed=11",
        "batch.steps=2",
        "checkpoint.every=2",
        "data.synthetic_problems=100",
        "metrics.progress_bar=off",
        *overrides,
    ]
    done = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event"')]
    (start,) = [e for e in events if e["event"] == "start"]
    return start, {e["step"]: e["loss"] for e in events if e["event"] == "step"}


def test_sft_from_a_fresh_preset_under_zero3_trains_with_the_whole_builds_losses(base, tmp_path):
    """SFT from random weights on 2 ZeRO-3 processes (created partitioned) and on 1 DDP process
    (built whole): the same losses over the same global batches (sums in another order: 1e-4)."""
    zero3 = ["engine.kind=deepspeed", "engine.deepspeed_config=configs/deepspeed/zero3.json"]
    start, sharded = sft_fresh(tmp_path / "zero3", base, 2, *zero3)
    assert start["partitioned_start"] is True
    start, whole = sft_fresh(tmp_path / "ddp", base, 1)
    assert start["partitioned_start"] is False
    assert sorted(sharded) == [1, 2]
    assert sharded == pytest.approx(whole, abs=1e-4)
