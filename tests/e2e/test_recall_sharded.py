"""Recall rounds as map and reduce over shards: the local executor gives exactly the in-process
loop's rounds and files on the same web and seed, the same seed gives the same scores and corpus
whatever the number of workers, and a run killed mid-round resumes redoing only unfinished shards."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mathforge.classifier.recall import RecallInputs, run_recall
from mathforge.classifier.recall_config import RecallConfig
from mathforge.classifier.recall_executor import InlineExecutor, LocalExecutor
from mathforge.classifier.recall_sharded import ShardedRecallRun, run_recall_sharded
from mathforge.classifier.web import generate_web

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny" / "recall.yaml"
OVERRIDES = {"max_rounds": 2, "train.epoch": 15}
ROUND_FILES = ("model.bin", "kept.jsonl", "domains.json", "new_positives.jsonl")


def _config(**overrides) -> RecallConfig:
    return RecallConfig.from_file(TINY, {**OVERRIDES, **overrides})


def _inputs(web: Path) -> RecallInputs:
    return RecallInputs(web / "pages", web / "seed" / "seed.jsonl", web / "truth.jsonl")


def _digests(out: Path) -> dict[str, str]:
    return {
        f"{r.name}/{name}": hashlib.sha256((r / name).read_bytes()).hexdigest()
        for r in sorted(out.glob("round-*"))
        for name in ROUND_FILES
    }


def _rounds(out: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k != "seconds"} for r in json.loads((out / "rounds.json").read_text())
    ]


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web")
    generate_web(root, 3000, seed=0, shard_pages=250)  # 12 shards
    return root


@pytest.fixture(scope="module")
def in_process(web: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("in-process")
    run_recall(_inputs(web), out, _config())
    return out


@pytest.fixture(scope="module")
def local(web: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    with LocalExecutor(workers=2) as executor:
        run_recall_sharded(_inputs(web), out, _config(), executor)
    return out


def test_local_executor_gives_the_in_process_loops_rounds_and_files(in_process: Path, local: Path) -> None:
    rounds = _rounds(local)
    assert rounds == _rounds(in_process)
    assert len(rounds) == 2 and rounds[1]["recall"] > rounds[0]["recall"] >= 0.5
    assert _digests(local) == _digests(in_process)
    assert (local / "approvals.txt").read_text() == (in_process / "approvals.txt").read_text()
    assert len(list((local / "round-1" / "score").glob("part-*.done.json"))) == 12


def test_same_seed_same_scores_and_corpus_whatever_the_workers(
    web: Path, local: Path, tmp_path: Path
) -> None:
    run_recall_sharded(_inputs(web), tmp_path / "one", _config(), InlineExecutor())
    assert _digests(tmp_path / "one") == _digests(local)  # model bytes, scores, kept pages, growth
    kept = (local / "round-2" / "kept.jsonl").read_text().splitlines()
    assert len(kept) > 500 and all('"score": ' in line for line in kept)
    run_recall_sharded(_inputs(web), tmp_path / "other", _config(seed=1, max_rounds=1), InlineExecutor())
    other = (tmp_path / "other" / "round-1" / "model.bin").read_bytes()
    assert other != (local / "round-1" / "model.bin").read_bytes(), "the seed must matter"


def test_a_sample_bound_set_too_low_falls_back_to_the_exact_sample(
    web: Path, local: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(ShardedRecallRun, "_sample_bound", lambda self, number, count: 2**40)
    run_recall_sharded(_inputs(web), tmp_path / "low", _config(max_rounds=1), InlineExecutor())
    assert (tmp_path / "low" / "round-1" / "sample-all").is_dir()
    assert (tmp_path / "low" / "round-1" / "model.bin").read_bytes() == (
        local / "round-1" / "model.bin"
    ).read_bytes()


def _partial_phase(out: Path) -> tuple[Path, set[str]] | None:
    """A phase directory with some but not all of its 12 tasks done, and the done ones."""
    for phase in sorted(out.glob("round-*/*/")):
        done = {p.name for p in phase.glob("part-*.done.json")}
        if 0 < len(done) < 12:
            return phase, done
    return None


def test_kill_mid_round_then_resume_redoes_only_unfinished_shards(
    web: Path, local: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "mathforge", "data", "recall", "--web", str(web), "--out", str(out)]
    command += ["--config", str(TINY), "--workers", "1", "max_rounds=2", "train.epoch=15"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=environment, start_new_session=True, stdout=subprocess.DEVNULL)
    partial = None
    try:
        deadline = time.monotonic() + 240
        while partial is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
            partial = _partial_phase(out)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert partial is not None, "the run ended before any phase was caught half done"
    phase, done = partial
    stamps = {name: (phase / name).stat().st_mtime_ns for name in done}
    assert not (out / "rounds.json").exists() or len(_rounds(out)) < 2
    from mathforge.cli import main

    argv = ["data", "recall", "--web", str(web), "--out", str(out), "--config", str(TINY), "--workers", "2"]
    assert main([*argv, "max_rounds=2", "train.epoch=15"]) == 0
    assert {name: (phase / name).stat().st_mtime_ns for name in done} == stamps, "finished shards were redone"
    assert len(list(phase.glob("part-*.done.json"))) == 12
    assert _rounds(out) == _rounds(local)
    assert _digests(out) == _digests(local)
