"""`mathforge grade` and `mathforge eval metrics`: the exact line contracts and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mathforge.cli import main


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_grade_writes_one_verdict_per_line_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(
        tmp_path / "pairs.jsonl",
        [
            {"pred": "so $\\boxed{\\frac12}$", "gold": "0.5"},
            {"pred": "#### 7", "gold": "8"},
            {"pred": "50%", "gold": "0.5", "policy": {"percent": "fraction"}},
            {"pred": "", "gold": "1"},
        ],
    )
    assert main(["grade", str(path)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["equivalent"] for row in out] == [True, False, True, False]
    assert [row["pred_answer"] for row in out] == ["\\frac12", "7", "50%", ""]


def test_grade_names_the_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"pred": "1", "gold": "1"}\n{"pred": "1"}\n')
    assert main(["grade", str(path)]) == 2
    assert "bad.jsonl:2: needs 'pred' and 'gold'" in capsys.readouterr().err
    path.write_text('{"pred": "1", "gold": "1", "policy": {"percent": "half"}}\n')
    assert main(["grade", str(path)]) == 2
    assert "policy" in capsys.readouterr().err


def test_a_policy_given_as_a_string_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.jsonl"
    path.write_text('{"pred": "50%", "gold": "0.5", "policy": "percent"}\n')
    assert main(["grade", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "policy.jsonl:1: policy: grading policy must be an object of fields" in err
    assert "not str 'percent'" in err and "['c'" not in err  # not its characters as unknown fields


def test_eval_metrics_prints_acc_pass_and_maj(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(
        tmp_path / "samples.jsonl",
        [
            {"gold": "2", "samples": ["\\boxed{2}", "\\boxed{3}", "\\boxed{3}", "2"]},
            {"gold": "\\frac12", "samples": ["0.25", "0.5", "\\frac{1}{2}", "\\dfrac12"]},
        ],
    )
    assert main(["eval", "metrics", str(path)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out)
    assert metrics["acc"] == 0.5
    assert set(metrics) >= {"pass@1", "pass@2", "pass@4", "maj@1", "maj@2", "maj@4"}
    assert metrics["pass@1"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    assert metrics["pass@4"] == 1.0
    # the default maj@k is the vote over the first k samples: item 1's first sample is right, item
    # 2's ("0.25") is not; at k = 4 item 1's tie between "2" and "3" goes to "2", seen first, and
    # item 2's 0.5 and the halves are one group of three
    assert metrics["maj@1"] == 0.5 and metrics["maj@4"] == 1.0
    assert '"count": 2,' in out and "0.4999" not in out


def test_eval_metrics_cyclic_option_averages_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(
        tmp_path / "samples.jsonl",
        [
            {"gold": "2", "samples": ["\\boxed{2}", "\\boxed{3}", "\\boxed{3}", "2"]},
            {"gold": "\\frac12", "samples": ["0.25", "0.5", "\\frac{1}{2}", "\\dfrac12"]},
        ],
    )
    assert main(["eval", "metrics", "--maj", "cyclic", str(path)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # item 1: "2" and "3" tie at two votes, so the four cyclic windows split 2-2 on who came first
    assert metrics["maj@4"] == 0.75
    assert metrics["maj@1"] == metrics["pass@1"] == 0.625


def test_eval_metrics_rejects_empty_input_and_unequal_sample_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["eval", "metrics", str(empty)]) == 2
    assert "empty.jsonl: no lines" in capsys.readouterr().err
    path = write_lines(
        tmp_path / "uneven.jsonl", [{"gold": "1", "samples": ["1", "2"]}, {"gold": "1", "samples": ["1"]}]
    )
    assert main(["eval", "metrics", str(path)]) == 2
    assert "uneven.jsonl:2: 1 samples, but line 1 has 2" in capsys.readouterr().err


def test_eval_metrics_rejects_lines_without_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "s.jsonl", [{"gold": "1", "samples": []}])
    assert main(["eval", "metrics", str(path)]) == 2
    assert "s.jsonl:1: needs 'gold' and a non-empty 'samples' list" in capsys.readouterr().err


def test_eval_run_rejects_an_unknown_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "eval",
            "run",
            "--benchmark",
            "nope",
            "--sampler",
            "127.0.0.1:1",
            "-k",
            "1",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "neither a known name" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_command_groups_are_fresh_for_every_parser() -> None:
    """A parser built after an earlier one was freed (its id reused) still gets its own groups."""
    import gc

    from mathforge.cli import build_parser

    for _ in range(50):
        parser = build_parser()
        args = parser.parse_args(["eval", "metrics", "x.jsonl"])
        assert args.eval_command == "metrics"
        del parser, args
        gc.collect()
