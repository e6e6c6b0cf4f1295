"""Finds benchmark files from names, files and directories, and loads them into a BenchmarkIndex.

    load_sources(index, ["gsm8k", "extra/my_test.jsonl", "more/"], benchmark_dir="/data/benchmarks")

A directory contributes every `*.jsonl` file in it (not recursive); a known name (gsm8k, math,
cmath, ...) resolves to its file under `benchmark_dir`. Files are read with the evaluator's loaders,
so any format they know works, and the benchmark name comes from the file name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mathforge.dedup.decontam import BenchmarkIndex
from mathforge.evaluator.benchmarks import benchmark_name, load_benchmark, resolve_benchmark


def expand_sources(sources: Iterable[str], benchmark_dir: str = "") -> list[tuple[str, Path]]:
    """(benchmark name, file) for each source, in order; ValueError naming a source that is missing."""
    files: list[tuple[str, Path]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.jsonl") if p.is_file())
            if not found:
                raise ValueError(f"benchmark directory {source} holds no .jsonl files")
            files.extend((benchmark_name(p), p) for p in found)
        elif path.is_file():
            files.append((benchmark_name(path), path))
        elif benchmark_dir:
            resolved = resolve_benchmark(source, benchmark_dir)
            files.append((benchmark_name(resolved), resolved))
        else:
            raise ValueError(
                f"benchmark {source!r} is not a file or directory (give a path, or a name with "
                "--benchmark-dir)"
            )
    return files


def load_files(index: BenchmarkIndex, files: Iterable[tuple[str, Path]]) -> dict[str, int]:
    """Indexes every item of every file; returns items added per benchmark name."""
    added: dict[str, int] = {}
    for name, path in files:
        items = load_benchmark(path, name=name)
        added[name] = added.get(name, 0) + index.add_items(items)
    return added


def load_sources(index: BenchmarkIndex, sources: Iterable[str], benchmark_dir: str = "") -> dict[str, int]:
    """expand_sources then load_files."""
    return load_files(index, expand_sources(sources, benchmark_dir))
