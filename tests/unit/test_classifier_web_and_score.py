"""The miniature web is deterministic and labelled; `mathforge data score` scores one slice of the
shards into files beside the input; the recall configs hold the paper numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mathforge.classifier.cli import TINY_PRESET
from mathforge.classifier.model import TrainSettings, train_classifier
from mathforge.classifier.recall_config import RecallConfig
from mathforge.classifier.web import generate_web, iter_pages
from mathforge.cli import main
from mathforge.corpus import iter_records, write_records_atomic

REPO = Path(__file__).resolve().parents[2]


def test_generator_is_deterministic_and_covers_every_kind_of_page() -> None:
    first = list(iter_pages(3000, seed=3))
    assert first == list(iter_pages(3000, seed=3))
    assert first != list(iter_pages(3000, seed=4))
    writers = {p["writer"] for p in first}
    assert {"formal", "homework", "stats", "chinese_math", "olympiad", "shop", "recipe", "profile"} <= writers
    share = sum(bool(p["is_math"]) for p in first) / len(first)
    assert 0.2 < share < 0.4
    assert any("<math>" in str(p["text"]) for p in first) and any("\\frac" in str(p["text"]) for p in first)
    assert any("题" in str(p["text"]) for p in first)
    assert len({p["domain"] for p in first}) >= 30


def test_generated_web_writes_pages_seed_truth_and_manifest(tmp_path: Path) -> None:
    manifest = generate_web(tmp_path, 1500, seed=1)
    truth = {r["id"]: r for r in iter_records(tmp_path / "truth.jsonl")}
    seed = list(iter_records(tmp_path / "seed" / "seed.jsonl"))
    assert len(truth) == 1500 == manifest.pages
    assert seed and all(truth[r["id"]]["is_math"] for r in seed)
    assert {truth[r["id"]]["domain"] for r in seed} <= set(manifest.seeded_domains)
    assert json.loads((tmp_path / "manifest.json").read_text())["math_pages"] == manifest.math_pages
    with pytest.raises(ValueError, match="at least 100 pages"):
        generate_web(tmp_path / "tiny", 10)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pages = list(iter_pages(800, seed=2))
    path = tmp_path_factory.mktemp("model") / "model.bin"
    train_classifier(
        [str(p["text"]) for p in pages if p["is_math"]],
        [str(p["text"]) for p in pages if not p["is_math"]],
        path,
        TrainSettings(dim=8, epoch=5, bucket=4096, min_count=1),
    )
    return path


def test_score_command_scores_its_slice_beside_the_input(tmp_path: Path, model_path: Path, capsys) -> None:
    pages = [{"id": p["id"], "url": p["url"], "text": p["text"]} for p in iter_pages(300, seed=5)]
    names = ["a.jsonl", "b.jsonl.zst", "c.parquet", "d.jsonl.gz"]
    for i, name in enumerate(names):
        write_records_atomic(tmp_path / name, pages[i * 75 : (i + 1) * 75])
    args = ["data", "score", "--input", str(tmp_path), "--model", str(model_path), "--shard", "1/2"]
    assert main(args) == 0
    scored = sorted(p.name for p in tmp_path.iterdir() if ".scores." in p.name)
    assert scored == ["c.scores.jsonl", "d.scores.jsonl"]
    rows = list(iter_records(tmp_path / "c.scores.jsonl"))
    assert [r["id"] for r in rows] == [p["id"] for p in pages[150:225]]
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert main(args) == 0
    assert "exists, skipped" in capsys.readouterr().out


def test_score_command_rejects_a_bad_shard_spec(tmp_path: Path, model_path: Path, capsys) -> None:
    write_records_atomic(tmp_path / "a.jsonl", [{"id": "1", "text": "x"}])
    assert (
        main(["data", "score", "--input", str(tmp_path), "--model", str(model_path), "--shard", "2/2"]) == 2
    )
    assert "shard spec" in capsys.readouterr().err


def test_config_files_hold_the_paper_numbers_and_the_tiny_preset() -> None:
    paper = RecallConfig.from_file(REPO / "configs" / "paper-7b" / "recall.yaml")
    defaults = RecallConfig()
    assert (
        paper.train.dim,
        paper.train.lr,
        paper.train.word_ngrams,
        paper.train.min_count,
        paper.train.epoch,
    ) == (256, 0.1, 3, 3, 3)
    assert paper.domain_share == defaults.domain_share == 0.10 and paper.max_rounds == 4
    assert paper.train.positives == paper.train.negatives == 500_000
    assert yaml.safe_load((REPO / "configs" / "tiny" / "recall.yaml").read_text()) == TINY_PRESET
    with pytest.raises(ValueError, match="unknown RecallConfig settings"):
        RecallConfig.from_mapping({"rounds": 3})
    with pytest.raises(ValueError, match="domain_share"):
        RecallConfig.from_mapping({"domain_share": 1.5})


def test_model_load_names_the_problem_file(tmp_path: Path, model_path: Path) -> None:
    from mathforge.classifier.model import MathModel

    with pytest.raises(ValueError, match="does not exist"):
        MathModel.load(tmp_path / "missing.bin")
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"junk\.bin is not a fastText model"):
        MathModel.load(tmp_path / "junk.bin")
    model = MathModel.load(model_path)
    assert model.score([]).shape == (0,)
    assert model.score(["", "Let $x$ be a prime"])[0] == 0.0
