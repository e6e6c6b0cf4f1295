"""In-process (one CPU process) training: exact resume from the latest checkpoint, a staging
directory left by a killed save is removed, and a run refuses a per-process data position written
by another world size."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from mathforge.models.checkpoint import latest_checkpoint, load_model, manifest_entries
from mathforge.models.tokenizer import default_tokenizer
from mathforge.training.config import config_from_mapping
from mathforge.training.distributed import init_distributed
from mathforge.training.sft import SftConfig, make_stream
from mathforge.training.trainer import prepare_model, train


def run(out: Path, steps: int, every: int = 2, order: str = "global") -> tuple[list[float], list[dict]]:
    config = config_from_mapping(
        SftConfig,
        {
            "out_dir": str(out),
            "seed": 0,
            "model": {"preset": "tiny"},
            "optim": {"lr": 2e-3},
            "batch": {"seq_len": 128, "micro_batch_size": 2, "global_batch_tokens": 512, "steps": steps},
            "engine": {"device": "cpu"},
            "checkpoint": {"every": every, "keep_last": 2},
            "metrics": {"progress_bar": "off"},
            "data": {"synthetic_problems": 64, "order": order},
        },
    )
    env = init_distributed("cpu")
    tokenizer = default_tokenizer()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        losses = train(
            config, env, prepare_model(config, tokenizer), tokenizer, make_stream(config, tokenizer, env)
        )
    return losses, [
        json.loads(line) for line in output.getvalue().splitlines() if line.startswith('{"event"')
    ]


def test_resumed_run_continues_with_the_uninterrupted_losses(tmp_path):
    straight, _ = run(tmp_path / "straight", steps=6)
    first, _ = run(tmp_path / "split", steps=4)
    assert first == straight[:4]
    # A save killed midway leaves only its staging directory; latest still names step-4.
    (tmp_path / "split" / ".step-6.staging").mkdir()
    (tmp_path / "split" / ".step-6.staging" / "optimizer.pt").write_bytes(b"partial")
    resumed, events = run(tmp_path / "split", steps=6)
    assert events[0]["event"] == "resume" and events[0]["step"] == 4
    assert resumed == pytest.approx(straight[4:], abs=1e-6)
    assert latest_checkpoint(tmp_path / "split").name == "step-6"
    assert sorted(p.name for p in (tmp_path / "split").glob("step-*")) == ["step-4", "step-6"]  # keep_last 2
    step_dir = tmp_path / "split" / "step-6"
    assert {p.name for p in step_dir.iterdir()} >= {
        "model",
        "train_state",
        "rank-0.json",
        "trainer_state.json",
        "config.yaml",
        "MANIFEST.json",
    }
    assert not list((tmp_path / "split").glob(".step-*"))  # the killed save's leftovers are gone
    model, _ = load_model(step_dir / "model")
    assert model.config.model_type == "llama"


def test_per_rank_data_position_from_another_world_size_is_refused_with_the_reason(tmp_path):
    run(tmp_path, steps=2, order="per_rank")
    state = tmp_path / "step-2" / "trainer_state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "world_size": 4}))
    manifest = tmp_path / "step-2" / "MANIFEST.json"
    entries = json.loads(manifest.read_text())
    entries["files"].update(manifest_entries(tmp_path / "step-2", ["trainer_state.json"]))
    manifest.write_text(json.dumps(entries))
    with pytest.raises(RuntimeError, match="written by 4 processes but this run has 1"):
        run(tmp_path, steps=4, order="per_rank")


def test_a_stage_starts_from_init_from_weights_and_tokenizer(tmp_path):
    from mathforge.models.checkpoint import save_model
    from mathforge.models.presets import build_model
    from mathforge.training.trainer import prepare_tokenizer

    tokenizer = default_tokenizer()
    base = build_model("tiny", len(tokenizer), seed=42)
    save_model(base, tokenizer, tmp_path / "base")
    config = config_from_mapping(
        SftConfig,
        {
            "out_dir": str(tmp_path / "sft"),
            "data": {"synthetic_problems": 4},
            "model": {"init_from": str(tmp_path / "base")},
        },
    )
    env = init_distributed("cpu")
    loaded_tokenizer = prepare_tokenizer(config, env, lambda: [])
    model = prepare_model(config, loaded_tokenizer)
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert model.lm_head.weight.equal(base.lm_head.weight)
