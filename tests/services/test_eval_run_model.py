"""`mathforge eval run --model DIR` evaluates a checkpoint in one command: with no --sampler it serves
the directory with an in-process sampler on a free port, stops it at the end, and the report names the
model (its path, a digest of its weights, the weights version served) and the code that ran."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import mathforge
import pytest
from mathforge.cli import main as cli_main
from mathforge.evaluator.provenance import weights_digest
from mathforge.models.checkpoint import save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    tokenizer = default_tokenizer()
    model = build_model("tiny", vocab_size=len(tokenizer), seed=3)
    return save_model(model, tokenizer, tmp_path_factory.mktemp("ckpt") / "tiny-random")


def run_eval(*argv: str) -> int:
    return cli_main(["eval", "run", "--benchmark", str(FIXTURES / "gsm8k_test.jsonl"), *argv])


@pytest.mark.slow
def test_model_alone_starts_a_sampler_and_the_report_names_model_and_code(model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = run_eval(
        "--model", str(model_dir), "-k", "2", "--max-tokens", "8", "--limit", "2", "--out", str(out)
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "report.json").read_text())
    assert len(report["items"]) == 2 and all(len(it["samples"]) == 3 for it in report["items"])
    assert 0.0 <= report["metrics"]["acc"] <= 1.0 and "pass@2" in report["metrics"]
    model = report["model"]
    assert model["path"] == str(model_dir.resolve())
    assert model["weights_digest"] == weights_digest(model_dir) and model["weights_digest"].startswith(
        "sha256:"
    )
    assert model["served_model"] == str(model_dir) and model["weights_version"] == 0
    assert model["weights_versions"] == [0]
    assert model["random_weights"] is False
    assert report["code"]["mathforge"] == mathforge.__version__
    commit = report["code"]["git_commit"]
    assert commit is None or len(commit) == 40
    assert "in-process" in report["sampler"]
    markdown = (out / "report.md").read_text()
    assert f"- model: {model_dir.resolve()}" in markdown and model["weights_digest"] in markdown
    # The sampler it started is gone: no serving thread is left behind.
    assert not [t.name for t in threading.enumerate() if t.name.startswith("serve-")]


def test_digest_follows_the_weights_not_the_place(model_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in model_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert weights_digest(copy) == weights_digest(model_dir)
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    assert weights_digest(copy) != weights_digest(model_dir)


def test_neither_model_nor_sampler_is_one_line_exit_2(tmp_path, capsys):
    assert run_eval("--out", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model DIR" in err and "--sampler HOST:PORT" in err


def test_a_directory_without_weights_is_one_line_exit_2(tmp_path, capsys):
    assert run_eval("--model", str(tmp_path), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err and "weight files" in err
    assert not (tmp_path / "out").exists()
