"""Corpus shards on disk: read records from JSONL (plain, gzip, zstd) and Parquet files, pick the
slice of shards one worker of an Indexed Job owns, and write output shards atomically.

    for shard in select_shard(list_shards("corpus/"), index, count):
        records = iter_records(shard)
        write_records_atomic(output_path(shard, "scores/", ".scores.jsonl"), scored(records))

A shard is a file of records (dicts; corpus records carry id, url and text). Output is written to a
hidden temporary name in the destination directory, fsynced and renamed, so a reader never sees a
half-written shard under its final name and a killed job leaves only a temporary file behind.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

#: Shard formats by file-name ending, longest first so ".jsonl.gz" wins over ".gz".
SHARD_SUFFIXES: tuple[str, ...] = (".jsonl.gz", ".jsonl.zst", ".jsonl", ".parquet")

#: Records per Parquet row group when writing; bounds the memory a writer holds.
PARQUET_BATCH_ROWS = 8192


class ShardFormatError(ValueError):
    """A path is not a supported shard format, or a shard's content does not parse."""


def shard_suffix(path: str | Path) -> str:
    """Returns the shard format suffix of `path` (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")."""
    name = Path(path).name
    for suffix in SHARD_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise ShardFormatError(
        f"{path}: unsupported shard format; expected a name ending in {', '.join(SHARD_SUFFIXES)}"
    )


def shard_stem(path: str | Path) -> str:
    """The file name without its shard suffix: "part-00003" for "part-00003.jsonl.zst"."""
    name = Path(path).name
    return name[: -len(shard_suffix(path))]


# ---- reading ----------------------------------------------------------------------------------
def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yields the records of one shard in file order, streaming (the file is never loaded whole).

    Raises ShardFormatError for an unsupported suffix, a line that is not a JSON object (naming the
    file and line), or an unreadable Parquet file.
    """
    path = Path(path)
    suffix = shard_suffix(path)
    if suffix == ".parquet":
        yield from _iter_parquet(path)
        return
    with _open_text_for_reading(path, suffix) as text:
        for line_number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ShardFormatError(f"{path}:{line_number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ShardFormatError(
                    f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}"
                )
            yield record


@contextlib.contextmanager
def _open_text_for_reading(path: Path, suffix: str) -> Iterator[IO[str]]:
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as plain:
            yield plain
    elif suffix == ".jsonl.gz":
        with gzip.open(path, "rt", encoding="utf-8") as gz:
            yield gz
    else:
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            yield io.TextIOWrapper(reader, encoding="utf-8")


def _iter_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShardFormatError(f"{path}: not a readable Parquet file ({exc})") from None
    with parquet:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()


# ---- choosing shards --------------------------------------------------------------------------
def list_shards(source: str | Path, exclude_suffixes: Iterable[str] = ()) -> list[Path]:
    """Returns the shard files named by `source`, sorted: a file, a directory (its shard files,
    recursively) or a glob pattern. Hidden files (temporary output) and names ending in one of
    `exclude_suffixes` (e.g. earlier output written beside the input) are left out.

    Raises FileNotFoundError when nothing matches, ShardFormatError for a single file of an
    unsupported format.
    """
    excluded = tuple(exclude_suffixes)
    text = str(source)
    path = Path(source)
    if path.is_file():
        shard_suffix(path)
        return [path]
    if path.is_dir():
        candidates = [p for p in path.rglob("*") if p.is_file()]
    elif glob.has_magic(text):
        candidates = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
    else:
        raise FileNotFoundError(f"{source}: no such file, directory or glob match")
    shards = sorted(
        p
        for p in candidates
        if not p.name.startswith(".")
        and p.name.endswith(SHARD_SUFFIXES)
        and not (excluded and p.name.endswith(excluded))
    )
    if not shards:
        raise FileNotFoundError(f"{source}: no shard files ({', '.join(SHARD_SUFFIXES)})")
    return shards


def select_shard(shards: list[Path], index: int, count: int) -> list[Path]:
    """Returns the `index`-th of `count` contiguous, near-equal slices of `shards` (0-based).

    Meant for Kubernetes Indexed Jobs (index = JOB_COMPLETION_INDEX, count = completions): the
    slices of all indexes cover every shard exactly once. With more workers than shards some
    slices are empty.
    """
    if count < 1:
        raise ValueError(f"shard count {count} must be at least 1")
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    total = len(shards)
    return list(shards[index * total // count : (index + 1) * total // count])


def parse_shard_spec(spec: str) -> tuple[int, int]:
    """Parses "I/N" (0-based index I of N workers) into (I, N), with a clear error for bad input."""
    index_text, sep, count_text = spec.partition("/")
    try:
        if not sep:
            raise ValueError
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"shard spec {spec!r} is not I/N (e.g. 3/16)") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard spec {spec!r}: need N >= 1 and 0 <= I < N")
    return index, count


def output_path(input_shard: str | Path, out_dir: str | Path | None, suffix: str) -> Path:
    """The output file for `input_shard`: its stem plus `suffix`, in `out_dir` (None = beside it).

    output_path("in/part-3.jsonl.zst", "out", ".scores.jsonl") -> out/part-3.scores.jsonl
    """
    shard = Path(input_shard)
    directory = shard.parent if out_dir is None else Path(out_dir)
    if not suffix.endswith(SHARD_SUFFIXES):
        raise ShardFormatError(f"output suffix {suffix!r} must end in one of {', '.join(SHARD_SUFFIXES)}")
    return directory / (shard_stem(shard) + suffix)


# ---- writing ----------------------------------------------------------------------------------
def write_records_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Writes `records` to `path` in the format its suffix names and returns how many were written.

    The data goes to a hidden temporary file in the same directory, is fsynced, then renamed over
    `path` (and the directory fsynced), so `path` holds either the old content or the complete new
    content, never a part. On any error the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    suffix = shard_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as raw:
            if suffix == ".parquet":
                count = _write_parquet(raw, records)
            else:
                count = _write_jsonl(raw, suffix, records)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)
    return count


def _write_jsonl(raw: IO[bytes], suffix: str, records: Iterable[dict[str, Any]]) -> int:
    count = 0
    if suffix == ".jsonl.gz":
        sink: Any = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)
    elif suffix == ".jsonl.zst":
        sink = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
    else:
        sink = None
    out = raw if sink is None else sink
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        count += 1
    if sink is not None:
        sink.close()
    return count


def _write_parquet(raw: IO[bytes], records: Iterable[dict[str, Any]]) -> int:
    writer: pq.ParquetWriter | None = None
    count = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal writer
        table = pa.Table.from_pylist(batch, schema=None if writer is None else writer.schema)
        if writer is None:
            writer = pq.ParquetWriter(raw, table.schema)
        writer.write_table(table)
        batch.clear()

    for record in records:
        batch.append(record)
        count += 1
        if len(batch) >= PARQUET_BATCH_ROWS:
            flush()
    if batch or writer is None:
        flush()
    assert writer is not None
    writer.close()
    return count


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
