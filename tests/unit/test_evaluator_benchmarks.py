"""Benchmark loaders: every format of the shared benchmarks, by fields; clear errors; resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mathforge.evaluator.benchmarks import KNOWN_BENCHMARKS, load_benchmark, resolve_benchmark
from mathforge.evaluator.prompts import ZERO_SHOT_INSTRUCTION, build_prompt

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"

EXPECTED_FIRST = {
    "gsm8k": ("32", {}),
    "math": ("\\frac{7}{8}", {"subject": "Prealgebra", "level": "1"}),
    "math500": ("(2,3)", {"subject": "Algebra", "level": "2"}),
    "cmath": ("12", {"grade": "1", "reasoning_step": "1"}),
    "mgsm_zh": ("140", {}),
    "gaokao_mathcloze": ("7", {"source": "mathforge"}),
    "gaokao_mathqa": ("B", {"source": "mathforge"}),
}


@pytest.mark.parametrize("name", sorted(KNOWN_BENCHMARKS))
def test_each_fixture_format_loads(name: str) -> None:
    items = load_benchmark(FIXTURES / KNOWN_BENCHMARKS[name])
    answer, tags = EXPECTED_FIRST[name]
    assert items[0].benchmark == name
    assert items[0].answer == answer
    assert items[0].tags == tags
    assert all(item.question and item.answer for item in items)
    assert len({item.id for item in items}) == len(items)


def test_loader_details_per_format() -> None:
    gsm = load_benchmark(FIXTURES / "gsm8k_test.jsonl")
    assert gsm[1].answer == "3750" and "####" not in gsm[1].solution
    qa = load_benchmark(FIXTURES / "gaokao_mathqa_test.jsonl")
    assert qa[0].choices[1] == "(B)$\\{2\\}$" and qa[2].answer == "AC"
    assert load_benchmark(FIXTURES / "math500_test.jsonl")[0].id == "test/algebra/1.json"
    assert load_benchmark(FIXTURES / "gaokao_mathcloze_test.jsonl")[1].answer == "$2$;$3$"
    assert load_benchmark(FIXTURES / "mgsm_zh_test.jsonl")[0].question.startswith("每天")


def test_limit_and_explicit_name() -> None:
    items = load_benchmark(FIXTURES / "math_test.jsonl", name="mymath", limit=2)
    assert [it.benchmark for it in items] == ["mymath", "mymath"]


def test_unknown_format_names_the_fields_seen(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"prompt": "x", "target": "y"}) + "\n")
    with pytest.raises(
        ValueError, match=r"odd.jsonl:1: unknown benchmark format with fields \['prompt', 'target'\]"
    ):
        load_benchmark(path)


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n{nope\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not JSON"):
        load_benchmark(path)


def test_resolve_benchmark_by_name_or_path(tmp_path: Path) -> None:
    assert resolve_benchmark("gsm8k", FIXTURES) == FIXTURES / "gsm8k_test.jsonl"
    assert resolve_benchmark(FIXTURES / "math_test.jsonl", tmp_path) == FIXTURES / "math_test.jsonl"
    with pytest.raises(ValueError, match="does not exist"):
        resolve_benchmark("gsm8k", tmp_path)
    with pytest.raises(ValueError, match="neither a known name"):
        resolve_benchmark("nope", tmp_path)


def test_every_shared_benchmark_loads_with_answers(shared_benchmarks: Path) -> None:
    counts = {name: len(load_benchmark(shared_benchmarks / f)) for name, f in KNOWN_BENCHMARKS.items()}
    assert counts == {
        "gsm8k": 1319,
        "math": 5000,
        "math500": 500,
        "cmath": 1098,
        "mgsm_zh": 250,
        "gaokao_mathcloze": 118,
        "gaokao_mathqa": 351,
    }
    for name, file_name in KNOWN_BENCHMARKS.items():
        assert all(item.answer for item in load_benchmark(shared_benchmarks / file_name)), name


def test_prompts_zero_shot_and_few_shot() -> None:
    item = load_benchmark(FIXTURES / "math_test.jsonl")[0]
    zero = build_prompt(item)
    assert zero.startswith("User: What is") and ZERO_SHOT_INSTRUCTION in zero and zero.endswith("Assistant:")
    few = build_prompt(item, "few_shot")
    assert few.count("Question:") == 5 and few.endswith("Answer:")
    qa = load_benchmark(FIXTURES / "gaokao_mathqa_test.jsonl")[0]
    assert "(B)$\\{2\\}$" in build_prompt(qa) and "\\boxed{}" in build_prompt(qa)
    with pytest.raises(ValueError, match="prompt style"):
        build_prompt(item, "chatty")
