"""`mathforge data decontaminate` and `mathforge data dedup`: the dedup filter over files.

    mathforge data decontaminate --benchmarks tests/fixtures/benchmarks --input docs.jsonl \\
        --output verdicts.jsonl
    mathforge data dedup --input corpus/ --output-dir deduped/ --shard 3/16 --store redis \\
        --redis-url redis://redis:6379/0 [--benchmarks DIR ...] [any dedup service flag]

decontaminate writes one line per input document, in input order: {"id", "contaminated",
"matches": [{"benchmark", "item", "span": [start, end], "text"}]} (spans are character offsets into
the document's text), plus "text" with the matched spans cut out when --mode cut.

dedup drops documents holding benchmark text (or cuts it out, --cut) when --benchmarks is given,
checks-and-inserts the rest into the index (first writer wins, across all workers sharing a Redis
index), writes the documents it keeps to <output-dir>/<shard>.dedup.jsonl (atomically), and prints
a JSON summary per shard. A document whose id is already in the index as
itself (a retried shard) is kept, so a restarted worker loses nothing; ids must be unique corpus-wide
(records without one get "<shard stem>:<record number>").
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mathforge.data_cli import group

_BATCH = 256
_CONFIG_FLAGS = (
    "Every flag of `mathforge serve dedup` (and --config FILE, MATHFORGE_* variables) also applies: "
    "--store, --store-path, --redis-url, --redis-prefix, --threshold, --num-perm, --ngram-size, "
    "--min-short-ngrams, --unicode-form, --lowercase, ..."
)


def register(sub: argparse._SubParsersAction) -> None:
    data = group(sub, "data")
    decon = data.add_parser(
        "decontaminate",
        help="flag (or cut) benchmark text in documents, by DeepSeekMath §2.1",
        epilog=_CONFIG_FLAGS,
    )
    decon.add_argument(
        "--benchmarks",
        nargs="+",
        required=True,
        metavar="DIR|FILE",
        help="benchmark files or directories of them (any format of the evaluator's loaders)",
    )
    decon.add_argument(
        "--input", required=True, help="documents, JSONL with id and text (or any shard format)"
    )
    decon.add_argument("--output", required=True, help="verdicts, one JSON line per document, in order")
    decon.add_argument(
        "--mode",
        choices=("verdict", "cut"),
        default="verdict",
        help="cut: also write the text with matched spans removed",
    )
    decon.add_argument("--benchmark-dir", default="", help="where benchmark names (gsm8k, math, ...) resolve")
    decon.add_argument("--text-field", default="text")
    decon.add_argument("--id-field", default="id")
    decon.set_defaults(handler=decontaminate_command, passthrough=True)

    dedup = data.add_parser(
        "dedup",
        help="exact + near-duplicate filtering of corpus shards into a shared index",
        epilog=_CONFIG_FLAGS,
    )
    dedup.add_argument("--input", required=True, help="a shard file, a directory of shards, or a glob")
    dedup.add_argument("--output-dir", required=True, help="where <shard>.dedup.jsonl files go")
    dedup.add_argument(
        "--shard",
        default="",
        help="I/N: this worker's slice of the shards (default: JOB_COMPLETION_INDEX of "
        "--shard-count, or all shards)",
    )
    dedup.add_argument(
        "--shard-count", type=int, default=0, help="workers in the Indexed Job (with JOB_COMPLETION_INDEX)"
    )
    dedup.add_argument(
        "--suffix", default=".dedup.jsonl", help="output file suffix (.jsonl, .jsonl.zst, .parquet, ...)"
    )
    dedup.add_argument(
        "--benchmarks",
        nargs="+",
        default=None,
        metavar="DIR|FILE",
        help="also drop documents holding benchmark text (DeepSeekMath §2.1): files, directories or names",
    )
    dedup.add_argument(
        "--cut", action="store_true", help="with --benchmarks: cut matched spans instead of dropping"
    )
    dedup.add_argument("--text-field", default="text")
    dedup.add_argument("--id-field", default="id")
    dedup.set_defaults(handler=dedup_command, passthrough=True)


def _config(rest: list[str], **overrides: Any) -> Any:
    from mathforge.dedup.config import Config

    # the dedup service's own flags, which `mathforge serve dedup --help` lists (a bad one says so)
    config = Config.from_args(rest, prog="mathforge serve dedup")
    for key, value in overrides.items():
        setattr(config, key, value)
    config.validate()
    return config


def _documents(
    records: Iterable[dict[str, Any]], id_field: str, text_field: str, source: str, default_ids: bool
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for number, record in enumerate(records):
        text = record.get(text_field)
        if not isinstance(text, str):
            raise ValueError(f"{source}: record {number} has no string {text_field!r} field (--text-field)")
        doc_id = record.get(id_field)
        if doc_id is None or doc_id == "":
            if not default_ids:
                raise ValueError(f"{source}: record {number} has no {id_field!r} field (--id-field)")
            doc_id = f"{source}:{number}"
        yield str(doc_id), text, record


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def decontaminate_command(args: argparse.Namespace, rest: list[str]) -> int:
    from mathforge.corpus.shards import iter_records, write_records_atomic
    from mathforge.dedup.benchmark_sources import load_sources
    from mathforge.dedup.decontam import cut_matches

    try:
        config = _config(rest)
        index = config.benchmark_index()
        loaded = load_sources(index, args.benchmarks, args.benchmark_dir or config.benchmark_dir)
        print(
            json.dumps({"benchmarks": loaded, "ngrams": index.ngrams, "short_texts": index.short_texts}),
            file=sys.stderr,
        )
        documents = _documents(iter_records(args.input), args.id_field, args.text_field, args.input, False)
        counts = {"documents": 0, "contaminated": 0}

        def verdicts() -> Iterator[dict[str, Any]]:
            for batch in _batches(documents, _BATCH):
                for (doc_id, text, _), matches in zip(
                    batch, index.find_many([t for _, t, _ in batch]), strict=True
                ):
                    counts["documents"] += 1
                    counts["contaminated"] += bool(matches)
                    line: dict[str, Any] = {
                        "id": doc_id,
                        "contaminated": bool(matches),
                        "matches": [m.as_dict() for m in matches],
                    }
                    if args.mode == "cut":
                        line["text"] = cut_matches(text, matches)
                    yield line

        write_records_atomic(args.output, verdicts())
    except (ValueError, OSError) as exc:
        print(f"decontaminate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    return 0


def _worker_shards(args: argparse.Namespace) -> tuple[int, int]:
    from mathforge.corpus.shards import parse_shard_spec

    if args.shard:
        return parse_shard_spec(args.shard)
    if args.shard_count:
        index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
        return parse_shard_spec(f"{index}/{args.shard_count}")
    return 0, 1


def dedup_command(args: argparse.Namespace, rest: list[str]) -> int:
    from mathforge.corpus.shards import list_shards, output_path, select_shard
    from mathforge.dedup.benchmark_sources import load_sources
    from mathforge.dedup.stores import StoreError

    try:
        config = _config(rest)
        index_number, workers = _worker_shards(args)
        shards = select_shard(list_shards(args.input, exclude_suffixes=(args.suffix,)), index_number, workers)
        benchmarks = config.benchmark_index()
        sources = args.benchmarks if args.benchmarks is not None else config.benchmarks
        if sources:
            load_sources(benchmarks, sources, config.benchmark_dir)
    except (ValueError, OSError, StoreError) as exc:
        print(f"dedup: {exc}", file=sys.stderr)
        return 2
    try:
        store = config.open_store()
    except StoreError as exc:
        hint = ""
        if config.store == "embedded" and "in use by" in str(exc):
            # The usual holder is the dedup service of `mathforge up`, on the same default directory.
            hint = (
                f"; give this run its own index with --store-path DIR (default {config.store_path}), "
                "or stop that process first"
            )
        print(f"dedup: {exc}{hint}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"dedup: {exc}", file=sys.stderr)
        return 2
    from mathforge.dedup.fingerprint import Fingerprinter

    fingerprinter = Fingerprinter(config.normalizer(), config.minhasher())
    try:
        for shard in shards:
            summary = _dedup_shard(
                shard,
                output_path(shard, args.output_dir, args.suffix),
                args,
                fingerprinter,
                store,
                benchmarks,
            )
            print(json.dumps(summary), flush=True)
    except (ValueError, OSError, StoreError) as exc:
        print(f"dedup: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _dedup_shard(
    shard: Path, out: Path, args: argparse.Namespace, fingerprinter: Any, store: Any, benchmarks: Any
) -> dict[str, Any]:
    from mathforge.corpus.shards import iter_records, shard_stem, write_records_atomic
    from mathforge.dedup.decontam import cut_matches
    from mathforge.dedup.stores import mark_retries

    counts = {"read": 0, "kept": 0, "exact": 0, "near": 0, "contaminated": 0}
    documents = _documents(iter_records(shard), args.id_field, args.text_field, shard_stem(shard), True)

    def kept() -> Iterator[dict[str, Any]]:
        for batch in _batches(documents, _BATCH):
            counts["read"] += len(batch)
            # Decontaminate first: a dropped document must not enter the index (it would make its
            # clean near duplicates look like copies of something kept).
            survivors: list[tuple[str, str, dict[str, Any]]] = []
            found_all = (
                benchmarks.find_many([t for _, t, _ in batch]) if benchmarks.loaded else [[]] * len(batch)
            )
            for (doc_id, text, record), found in zip(batch, found_all, strict=True):
                if found:
                    counts["contaminated"] += 1
                    if not args.cut:
                        continue
                    text = cut_matches(text, found)
                    record = {**record, args.text_field: text}
                survivors.append((doc_id, text, record))
            prints = fingerprinter.fingerprints([(i, t) for i, t, _ in survivors])
            # A retried shard finds its own earlier inserts (already_inserted): those are kept.
            verdicts = mark_retries(prints, store.check_and_insert(prints))
            for (doc_id, _, record), verdict in zip(survivors, verdicts, strict=True):
                if verdict.exact_duplicate_of:
                    counts["exact"] += 1
                elif verdict.near_duplicate_of and verdict.near_duplicate_of != doc_id:
                    counts["near"] += 1
                else:
                    counts["kept"] += 1
                    yield record

    write_records_atomic(out, kept())
    return {"shard": str(shard), "output": str(out), **counts}
