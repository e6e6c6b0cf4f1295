"""Corpus shards shared by the data jobs (scoring, dedup): reading, slicing, atomic writing."""

from mathforge.corpus.shards import (
    SHARD_SUFFIXES,
    ShardFormatError,
    iter_records,
    list_shards,
    output_path,
    parse_shard_spec,
    select_shard,
    shard_stem,
    shard_suffix,
    write_records_atomic,
)

__all__ = [
    "SHARD_SUFFIXES",
    "ShardFormatError",
    "iter_records",
    "list_shards",
    "output_path",
    "parse_shard_spec",
    "select_shard",
    "shard_stem",
    "shard_suffix",
    "write_records_atomic",
]
