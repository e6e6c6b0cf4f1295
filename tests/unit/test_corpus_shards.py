"""Corpus shards: every format round-trips, slices cover all shards once, writes are atomic."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from mathforge.corpus import (
    ShardFormatError,
    iter_records,
    list_shards,
    output_path,
    parse_shard_spec,
    select_shard,
    write_records_atomic,
)

RECORDS = [
    {"id": "a", "url": "https://x.org/1", "text": "Let $x^2 = 4$. Then x = ±2."},
    {"id": "b", "url": "https://y.com/2", "text": "数学 题目\nline two"},
    {"id": "c", "url": "", "text": ""},
]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet"])
def test_every_format_round_trips_records_in_order(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"part-0{suffix}"
    assert write_records_atomic(path, iter(RECORDS)) == 3
    assert list(iter_records(path)) == RECORDS


def test_parquet_spans_several_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mathforge.corpus.shards as shards

    monkeypatch.setattr(shards, "PARQUET_BATCH_ROWS", 2)
    records = [{"id": str(i), "text": "t" * i} for i in range(7)]
    path = tmp_path / "p.parquet"
    assert write_records_atomic(path, records) == 7
    assert list(iter_records(path)) == records


def test_empty_shard_writes_and_reads_back_nothing(tmp_path: Path) -> None:
    for suffix in (".jsonl", ".jsonl.zst", ".parquet"):
        path = tmp_path / f"empty{suffix}"
        assert write_records_atomic(path, []) == 0
        assert list(iter_records(path)) == []


def test_unsupported_suffix_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ShardFormatError, match=r"unsupported shard format.*\.jsonl\.gz"):
        list(iter_records(tmp_path / "data.csv"))
    with pytest.raises(ShardFormatError, match="unsupported"):
        write_records_atomic(tmp_path / "out.txt", RECORDS)
    assert not list(tmp_path.iterdir())


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write('{"id": "1"}\n\n{"id": \n')
    with pytest.raises(ShardFormatError, match=r"bad\.jsonl\.gz:3: not valid JSON"):
        list(iter_records(path))
    array = tmp_path / "array.jsonl"
    array.write_text("[1, 2]\n")
    with pytest.raises(ShardFormatError, match="expected a JSON object, got list"):
        list(iter_records(array))


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_records_atomic(path, RECORDS[:1])

    def failing():
        yield RECORDS[1]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_records_atomic(path, failing())
    assert list(iter_records(path)) == RECORDS[:1]
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl"]


def test_list_shards_sorts_skips_hidden_and_excluded(tmp_path: Path) -> None:
    for name in (
        "b.jsonl",
        "a.parquet",
        "sub/c.jsonl.zst",
        ".b.jsonl.123.tmp",
        "notes.txt",
        "b.scores.jsonl",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    found = list_shards(tmp_path, exclude_suffixes=[".scores.jsonl"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.parquet", "b.jsonl", "sub/c.jsonl.zst"]
    assert list_shards(str(tmp_path / "*.jsonl")) == [tmp_path / "b.jsonl", tmp_path / "b.scores.jsonl"]
    assert list_shards(tmp_path / "a.parquet") == [tmp_path / "a.parquet"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        list_shards(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no shard files"):
        list_shards(str(tmp_path / "*.csv"))


@pytest.mark.parametrize("total,count", [(10, 3), (3, 5), (0, 2), (16, 16), (7, 1)])
def test_slices_cover_every_shard_exactly_once(total: int, count: int) -> None:
    shards = [Path(f"s{i:03d}") for i in range(total)]
    slices = [select_shard(shards, i, count) for i in range(count)]
    assert [s for part in slices for s in part] == shards
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_bad_slice_index_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        select_shard([], 4, 4)
    with pytest.raises(ValueError, match="at least 1"):
        select_shard([], 0, 0)
    assert parse_shard_spec("3/16") == (3, 16)
    for bad in ("3", "a/b", "4/4", "-1/2"):
        with pytest.raises(ValueError, match="shard spec"):
            parse_shard_spec(bad)


def test_output_path_swaps_the_shard_suffix() -> None:
    assert output_path("in/part-3.jsonl.zst", "out", ".scores.jsonl") == Path("out/part-3.scores.jsonl")
    assert output_path("in/part-3.parquet", None, ".scores.parquet") == Path("in/part-3.scores.parquet")
    with pytest.raises(ShardFormatError, match="output suffix"):
        output_path("in/part-3.jsonl", "out", ".csv")
