"""`mathforge data decontaminate` (the contract scripts rely on) and `mathforge data dedup` over shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mathforge.cli import main
from mathforge.corpus.shards import iter_records, write_records_atomic
from mathforge.dedup.config import Config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"
GSM8K_QUESTION = "Tom has 3 boxes with 14 pencils each. He gives away 10 pencils. How many are left?"
CMATH_QUESTION = "小红有5个苹果，又买了7个，一共有多少个苹果？"


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_decontaminate_writes_one_verdict_per_document_in_order(tmp_path):
    documents = [
        {"id": "clean", "text": "A blog post about baking bread, with x^2 + 1 = 2 thrown in."},
        {"id": "gsm", "text": "Homework help!!\n" + GSM8K_QUESTION.upper().replace(" ", "   ")},
        {"id": "zh", "text": "今天的作业：" + CMATH_QUESTION},
        {"id": 7, "text": ""},
    ]
    source = _write_jsonl(tmp_path / "docs.jsonl", documents)
    out = tmp_path / "verdicts.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO / "services")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mathforge",
            "data",
            "decontaminate",
            "--benchmarks",
            str(FIXTURES / "gsm8k_test.jsonl"),
            str(FIXTURES / "cmath_test.jsonl"),
            "--input",
            str(source),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(v["id"], v["contaminated"]) for v in lines] == [
        ("clean", False),
        ("gsm", True),
        ("zh", True),
        ("7", False),
    ]
    (gsm,) = lines[1]["matches"]
    assert (gsm["benchmark"], gsm["item"]) == ("gsm8k", "gsm8k-0")
    start, end = gsm["span"]
    assert documents[1]["text"][start:end] == gsm["text"] and gsm["text"].startswith("TOM   HAS")
    assert lines[2]["matches"][0]["benchmark"] == "cmath"


def test_decontaminate_cut_mode_and_a_directory_of_benchmarks(tmp_path, capsys):
    source = _write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": f"Before. {GSM8K_QUESTION} After."}])
    out = tmp_path / "cut.jsonl"
    code = main(
        [
            "data",
            "decontaminate",
            "--benchmarks",
            str(FIXTURES),
            "--input",
            str(source),
            "--output",
            str(out),
            "--mode",
            "cut",
        ]
    )
    assert code == 0
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["contaminated"] and line["text"] == "Before. ? After."


def test_decontaminate_rejects_a_record_without_text_and_writes_nothing(tmp_path, capsys):
    source = _write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "fine"}, {"id": "b", "body": "x"}])
    out = tmp_path / "out.jsonl"
    code = main(
        ["data", "decontaminate", "--benchmarks", str(FIXTURES), "--input", str(source), "--output", str(out)]
    )
    assert code == 2 and not out.exists()
    assert "record 1 has no string 'text' field (--text-field)" in capsys.readouterr().err


def test_dedup_over_jsonl_and_parquet_shards_keeps_first_copies_and_survives_a_retry(tmp_path, capsys):
    base = " ".join(f"w{i}" for i in range(200))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write_jsonl(
        corpus / "part-0.jsonl",
        [
            {"id": "p0-a", "text": base},
            {"id": "p0-b", "text": "unrelated words " * 30},
            {"id": "p0-c", "text": base.upper()},
        ],
    )
    write_records_atomic(
        corpus / "part-1.parquet",
        [
            {"id": "p1-a", "text": base.replace("w100 ", "changed ")},
            {"id": "p1-b", "text": f"Forum copy: {GSM8K_QUESTION}"},
            {"id": "p1-c", "text": " ".join(f"fresh{i}" for i in range(50))},
        ],
    )
    args = [
        "data",
        "dedup",
        "--input",
        str(corpus),
        "--output-dir",
        str(tmp_path / "out"),
        "--store-path",
        str(tmp_path / "index"),
        "--benchmarks",
        str(FIXTURES),
    ]
    assert main(args) == 0
    summaries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["read"], s["kept"], s["exact"], s["near"], s["contaminated"]) for s in summaries] == [
        (3, 2, 1, 0, 0),
        (3, 1, 0, 1, 1),
    ]
    kept = {r["id"] for p in sorted((tmp_path / "out").iterdir()) for r in iter_records(p)}
    assert kept == {"p0-a", "p0-b", "p1-c"}
    # The contaminated document never entered the index: only the kept ones did.
    store = Config(store_path=str(tmp_path / "index")).open_store()
    assert store.count() == 3
    store.close()
    # A retried worker meets its own earlier inserts and keeps the same documents.
    assert main([*args, "--shard", "1/2"]) == 0
    assert {r["id"] for r in iter_records(tmp_path / "out" / "part-1.dedup.jsonl")} == {"p1-c"}
    assert {r["id"] for r in iter_records(tmp_path / "out" / "part-0.dedup.jsonl")} == {"p0-a", "p0-b"}
