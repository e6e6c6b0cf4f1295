"""`mathforge checkpoint export` writes a Hugging Face directory that loads and computes what the
checkpoint computes, from a run, a step or a model directory, in shards when asked."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from mathforge.cli import main as cli_main
from mathforge.models.checkpoint import CheckpointError, load_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.training.config import config_from_mapping
from mathforge.training.distributed import init_distributed
from mathforge.training.export import export_checkpoint
from mathforge.training.sft import SftConfig, make_stream
from mathforge.training.trainer import prepare_model, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    config = config_from_mapping(
        SftConfig,
        {
            "out_dir": str(out),
            "model": {"preset": "tiny"},
            "optim": {"lr": 2e-3},
            "batch": {"seq_len": 64, "micro_batch_size": 2, "global_batch_tokens": 256, "steps": 3},
            "engine": {"device": "cpu"},
            "checkpoint": {"every": 2, "keep_last": 2},
            "metrics": {"progress_bar": "off"},
            "data": {"synthetic_problems": 16},
        },
    )
    env = init_distributed("cpu")
    tokenizer = default_tokenizer()
    with contextlib.redirect_stdout(io.StringIO()):
        train(config, env, prepare_model(config, tokenizer), tokenizer, make_stream(config, tokenizer, env))
    return out


def _logits(directory: Path) -> torch.Tensor:
    model, tokenizer = load_model(directory)
    ids = torch.tensor([tokenizer("12 + 30 = 42")["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_a_run_exports_its_newest_step_in_shards_that_load_with_the_same_outputs(run_dir, tmp_path):
    code = cli_main(
        ["checkpoint", "export", str(run_dir), "--output", str(tmp_path / "hf"), "--max-shard-gb", "0.0002"]
    )
    assert code == 0
    index = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())
    shards = sorted({name for name in index["weight_map"].values()})
    assert len(shards) > 1 and all((tmp_path / "hf" / s).is_file() for s in shards)
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    torch.testing.assert_close(
        _logits(tmp_path / "hf"), _logits(run_dir / "step-3" / "model"), rtol=0, atol=0
    )


def test_a_step_and_a_model_directory_export_too_and_bfloat16_is_honoured(run_dir, tmp_path):
    export_checkpoint(run_dir / "step-2", tmp_path / "step2")
    torch.testing.assert_close(
        _logits(tmp_path / "step2"), _logits(run_dir / "step-2" / "model"), rtol=0, atol=0
    )
    export_checkpoint(run_dir / "final", tmp_path / "bf16", dtype="bfloat16")
    model, _ = load_model(tmp_path / "bf16")
    assert model.dtype == torch.bfloat16
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_a_damaged_step_is_refused_naming_the_file(run_dir, tmp_path):
    import shutil

    step = tmp_path / "step-2"
    shutil.copytree(run_dir / "step-2", step)
    state = next((step / "train_state").glob("state-*.safetensors"))
    state.write_bytes(state.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match=state.name):
        export_checkpoint(step, tmp_path / "out")
    assert not (tmp_path / "out").exists()
