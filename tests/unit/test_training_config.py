"""Training configs: YAML + dotted overrides, type checks, the paper defaults, accumulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mathforge.training.config import ConfigError, dump_config, load_config
from mathforge.training.pretrain import PretrainConfig
from mathforge.training.sft import SftConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    """Config paths in the recipes are relative to the repository root."""
    monkeypatch.chdir(REPO)


def test_overrides_beat_the_file_and_reach_nested_sections(tmp_path):
    config = load_config(
        PretrainConfig,
        [
            "--config",
            "configs/tiny/pretrain.yaml",
            "optim.lr=1e-4",
            "data.sources.math.weight=0.9",
            "schedule.decay_at=[0.5, 0.75]",
        ],
    )
    assert config.optim.lr == 1e-4
    assert config.data.sources["math"].weight == 0.9
    assert config.data.sources["text"].weight == 0.4  # untouched by the override
    assert config.schedule.decay_at == [0.5, 0.75]
    assert config.batch.seq_len == 128  # from the file


def test_effective_config_round_trips_through_its_dump(tmp_path):
    config = load_config(SftConfig, ["--config", "configs/tiny/sft.yaml", "batch.steps=7"])
    path = tmp_path / "effective.yaml"
    path.write_text(dump_config(config))
    assert load_config(SftConfig, ["--config", str(path)]) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("batch.steps=many", "batch.steps"),
        ("engine.kind=fsdp", "engine.kind 'fsdp'"),
        ("optim.lr=-1", "optim.lr"),
        ("lr", "not key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, ["--config", "configs/tiny/pretrain.yaml", override])


def test_accumulation_makes_up_the_token_batch_or_says_why_not():
    config = load_config(PretrainConfig, ["--config", "configs/tiny/pretrain.yaml"])
    assert config.accumulation_steps(world_size=2) == 2  # 1024 tokens / (2 rows x 128 x 2)
    assert config.accumulation_steps(world_size=1) == 4
    with pytest.raises(ConfigError, match="not a multiple"):
        config.accumulation_steps(world_size=3)


def test_paper_configs_carry_the_paper_numbers():
    pre = load_config(PretrainConfig, ["--config", "configs/paper-7b/pretrain.yaml"])
    weights = {name: s.weight for name, s in pre.data.sources.items()}
    assert sorted(weights.values()) == [0.04, 0.1, 0.1, 0.2, 0.56]
    assert (pre.optim.lr, pre.optim.beta1, pre.optim.beta2, pre.optim.weight_decay) == (
        4.2e-4,
        0.9,
        0.95,
        0.1,
    )
    assert (pre.schedule.warmup_steps, pre.schedule.decay_at, pre.schedule.decay_to) == (
        2000,
        [0.8, 0.9],
        [0.316, 0.1],
    )
    assert pre.batch.seq_len == 4096 and pre.batch.global_batch_tokens == 10_485_760
    assert pre.accumulation_steps(world_size=pre.job.nodes * pre.job.nproc_per_node) == 20
    sft = load_config(SftConfig, ["--config", "configs/paper-7b/sft.yaml"])
    assert (sft.optim.lr, sft.schedule.kind, sft.batch.steps) == (5e-5, "constant", 500)
    assert sft.batch.global_batch_tokens // sft.batch.seq_len == 256
    raw = yaml.safe_load(Path("configs/paper-7b/pretrain.yaml").read_text())
    assert raw["model"]["preset"] == "deepseek-coder-7b"


def test_defaults_are_the_paper_numbers_without_any_file():
    assert SftConfig(data=SftConfig().data).optim.lr == 5e-5
    assert PretrainConfig().schedule.decay_to == [0.316, 0.1]
