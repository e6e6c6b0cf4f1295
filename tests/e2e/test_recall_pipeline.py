"""The recall loop end to end on a generated miniature web, through the `mathforge data` CLI:
recall rises round over round, discovery flags exactly the planted math domains, the last round
reaches recall and precision >= 0.9, a run stopped for review resumes at its round."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from mathforge.cli import main


@pytest.fixture(scope="module")
def unattended(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("recall")
    # A smaller web than the demo's 20,000 pages needs more epochs to learn each style as well.
    assert main(["data", "recall", "--generate", "8000", "--out", str(out), "train.epoch=15"]) == 0
    return out


def test_rounds_json_has_the_contract_fields(unattended: Path) -> None:
    rounds = json.loads((unattended / "rounds.json").read_text())
    assert isinstance(rounds, list) and len(rounds) >= 2
    for number, r in enumerate(rounds, start=1):
        assert r["round"] == number
        assert {"kept", "new_share", "math_domains", "recall", "precision"} <= set(r)
        for name in ("model.bin", "kept.jsonl", "domains.json", "new_positives.jsonl", "metrics.json"):
            assert (unattended / f"round-{number}" / name).exists(), name


def test_recall_rises_and_last_round_is_accurate(unattended: Path) -> None:
    rounds = json.loads((unattended / "rounds.json").read_text())
    recalls = [r["recall"] for r in rounds]
    assert recalls[0] < 0.8, "round 1 on the seed alone should miss the unseeded math sites"
    assert recalls[1] > recalls[0] + 0.15
    assert all(later >= earlier - 0.02 for earlier, later in itertools.pairwise(recalls))
    assert rounds[-1]["recall"] >= 0.9 and rounds[-1]["precision"] >= 0.9
    assert rounds[0]["new_share"] == 1.0
    assert rounds[-1]["new_share"] < 0.02 or len(rounds) == 4


def test_discovery_flags_the_planted_math_domains_only(unattended: Path) -> None:
    manifest = json.loads((unattended / "web" / "manifest.json").read_text())
    rounds = json.loads((unattended / "rounds.json").read_text())
    flagged = {d for r in rounds for d in r["math_domains"]}
    assert flagged == set(manifest["math_domains"])
    unseeded = set(manifest["math_domains"]) - set(manifest["seeded_domains"])
    assert unseeded <= set(rounds[0]["math_domains"])
    approved = (unattended / "approvals.txt").read_text()
    assert "+ homeworkhelp1.example/questions" in approved
    assert "/users" not in approved and "dailynews" not in approved


def test_review_stops_the_run_and_rerun_resumes_at_that_round(tmp_path: Path, capsys) -> None:
    args = ["data", "recall", "--generate", "3000", "--out", str(tmp_path), "--no-auto-approve"]
    args += ["--rounds", "2"]
    assert main(args) == 3
    assert "waiting for review" in capsys.readouterr().out
    approvals = tmp_path / "approvals.txt"
    pending = [line for line in approvals.read_text().splitlines() if line.startswith("? ")]
    assert pending
    round_one = tmp_path / "round-1"
    assert (round_one / "model.bin").exists() and not (round_one / "metrics.json").exists()
    trained_at = (round_one / "model.bin").stat().st_mtime_ns
    approvals.write_text(approvals.read_text().replace("? ", "+ "))
    assert main(args) in (0, 3)
    assert (round_one / "model.bin").stat().st_mtime_ns == trained_at, "round 1 must not be retrained"
    rounds = json.loads((tmp_path / "rounds.json").read_text())
    assert rounds[0]["round"] == 1 and rounds[0]["approved_prefixes"] == len(pending)
    printed = capsys.readouterr().out
    assert "round" in printed and "recall" in printed and "precision" in printed
