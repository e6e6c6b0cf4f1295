"""Loads the benchmark test sets (GSM8K, MATH, MATH-500, CMATH, MGSM-zh, Gaokao cloze and QA) from
their public JSONL formats into one `BenchmarkItem` shape; the format is detected from the fields.

    items = load_benchmark("/data/benchmarks/math500_test.jsonl", limit=50)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathforge.evaluator.extraction import find_boxes


@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark question with its gold final answer (and the full solution when the set has one)."""

    benchmark: str
    id: str
    question: str
    answer: str
    solution: str = ""
    choices: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


KNOWN_BENCHMARKS: dict[str, str] = {
    "gsm8k": "gsm8k_test.jsonl",
    "math": "math_test.jsonl",
    "math500": "math500_test.jsonl",
    "cmath": "cmath_test.jsonl",
    "mgsm_zh": "mgsm_zh_test.jsonl",
    "gaokao_mathcloze": "gaokao_mathcloze_test.jsonl",
    "gaokao_mathqa": "gaokao_mathqa_test.jsonl",
}

Parser = Callable[[str, int, dict[str, Any]], BenchmarkItem]


def _gsm8k(name: str, index: int, row: dict[str, Any]) -> BenchmarkItem:
    solution = str(row["answer"])
    solution_text, _, final = solution.rpartition("####")
    answer = final.strip().replace(",", "") if _ else ""
    return BenchmarkItem(
        name,
        str(row.get("id", f"{name}-{index}")),
        str(row["question"]),
        answer,
        solution=solution_text.strip() if _ else solution,
    )


def _math_level(level: Any) -> str:
    match = re.search(r"\d+", str(level))
    return match.group(0) if match else str(level)


def _math(name: str, index: int, row: dict[str, Any]) -> BenchmarkItem:
    solution = str(row["solution"])
    boxes = find_boxes(solution)
    return BenchmarkItem(
        name,
        str(row.get("idx", f"{name}-{index}")),
        str(row["problem"]),
        boxes[-1] if boxes else "",
        solution=solution,
        tags={"subject": str(row.get("type", "")), "level": _math_level(row.get("level", ""))},
    )


def _math500(name: str, index: int, row: dict[str, Any]) -> BenchmarkItem:
    return BenchmarkItem(
        name,
        str(row.get("unique_id", f"{name}-{index}")),
        str(row["problem"]),
        str(row["answer"]),
        solution=str(row.get("solution", "")),
        tags={"subject": str(row.get("subject", "")), "level": _math_level(row.get("level", ""))},
    )


def _cmath(name: str, index: int, row: dict[str, Any]) -> BenchmarkItem:
    tags: dict[str, str] = {key: str(row[key]) for key in ("grade", "reasoning_step") if key in row}
    return BenchmarkItem(
        name, str(row.get("id", f"{name}-{index}")), str(row["question"]), str(row["golden"]), tags=tags
    )


def _mgsm(name: str, index: int, row: dict[str, Any]) -> BenchmarkItem:
    messages = row["messages"]
    question = next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")
    return BenchmarkItem(name, str(row.get("id", f"{name}-{index}")), question, str(row["answer"]))


def _gaokao_cloze(name: str, index: int, row: dict[str, Any]) -> BenchmarkItem:
    return BenchmarkItem(
        name,
        str(row.get("id", f"{name}-{index}")),
        str(row["question"]),
        str(row["answer"]),
        tags=_gaokao_tags(row),
    )


def _gaokao_qa(name: str, index: int, row: dict[str, Any]) -> BenchmarkItem:
    label = row["label"]
    letters = "".join(label) if isinstance(label, list) else str(label)
    answer = "".join(sorted(set(re.sub(r"[^A-Z]", "", letters.upper()))))
    return BenchmarkItem(
        name,
        str(row.get("id", f"{name}-{index}")),
        str(row["question"]),
        answer,
        choices=tuple(str(o) for o in row.get("options") or ()),
        tags=_gaokao_tags(row),
    )


def _gaokao_tags(row: dict[str, Any]) -> dict[str, str]:
    other = row.get("other")
    return {"source": str(other["source"])} if isinstance(other, dict) and "source" in other else {}


# (format name, required fields, parser); the first whose fields are all present (and non-null) wins.
FORMATS: list[tuple[str, tuple[str, ...], Parser]] = [
    ("math500", ("problem", "solution", "answer"), _math500),
    ("math", ("problem", "solution"), _math),
    ("cmath", ("question", "golden"), _cmath),
    ("mgsm_zh", ("messages", "answer"), _mgsm),
    ("gaokao_mathqa", ("question", "options", "label"), _gaokao_qa),
    ("gaokao_mathcloze", ("question", "answer", "label"), _gaokao_cloze),
    ("gsm8k", ("question", "answer"), _gsm8k),
]


def detect_format(row: dict[str, Any]) -> tuple[str, Parser]:
    """The format of one record, from its fields; ValueError naming the fields seen if unknown."""
    for fmt, required, parser in FORMATS:
        if fmt == "gaokao_mathcloze" and all(k in row for k in required) and row.get("label") is None:
            return fmt, parser
        if fmt == "gaokao_mathqa" and row.get("label") is None:
            continue
        if all(k in row and row[k] is not None for k in required):
            return fmt, parser
    known = "; ".join(f"{fmt}: {', '.join(req)}" for fmt, req, _ in FORMATS)
    raise ValueError(f"unknown benchmark format with fields {sorted(row)}; known formats: {known}")


def benchmark_name(path: Path) -> str:
    """The benchmark name for a file: a known file name's key, else the stem without '_test'."""
    for name, file_name in KNOWN_BENCHMARKS.items():
        if path.name == file_name:
            return name
    return re.sub(r"_test$", "", path.stem)


def load_benchmark(
    path: str | Path, name: str | None = None, limit: int | None = None
) -> list[BenchmarkItem]:
    """Reads a benchmark JSONL file (any known format) into items, in file order, up to `limit`."""
    path = Path(path)
    name = name or benchmark_name(path)
    items: list[BenchmarkItem] = []
    with path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, 1):
            if limit is not None and len(items) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            try:
                _, parser = detect_format(row)
                items.append(parser(name, len(items), row))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from None
    return items


def resolve_benchmark(name_or_path: str | Path, benchmark_dir: str | Path) -> Path:
    """A known benchmark name under `benchmark_dir`, or an existing file path; ValueError otherwise."""
    text = str(name_or_path)
    if text in KNOWN_BENCHMARKS:
        if not str(benchmark_dir):
            raise ValueError(
                f"benchmark {text!r} is a known name but no benchmark directory is set: --benchmark-dir "
                "DIR (the real test files, docs/method.md), or tests/fixtures/benchmarks for the "
                "repository's small samples"
            )
        candidate = Path(benchmark_dir) / KNOWN_BENCHMARKS[text]
        if not candidate.is_file():
            raise ValueError(f"benchmark {text!r}: {candidate} does not exist (set --benchmark-dir)")
        return candidate
    path = Path(text)
    if path.is_file():
        return path
    raise ValueError(f"benchmark {text!r} is neither a known name ({', '.join(KNOWN_BENCHMARKS)}) nor a file")
