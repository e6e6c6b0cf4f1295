"""`mathforge data recall` and `mathforge data score`.

mathforge data recall --generate 20000 --out runs/recall          # miniature web, unattended
mathforge data recall --web corpus/ --seed owm.jsonl --out runs/r --config configs/paper-7b/recall.yaml
mathforge data recall --web /data/web --out /data/runs/r --executor k8s --dry-run   # print the Jobs
mathforge data recall-map --task runs/r/round-1/score/task.json --index 3     # one shard task
mathforge data score --input corpus/ --model runs/r/round-3/model.bin --shard 3/16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mathforge.classifier.model import MathModel
from mathforge.classifier.recall import RecallInputs, run_recall
from mathforge.classifier.recall_config import RecallConfig
from mathforge.classifier.recall_executor import (
    K8sExecutor,
    K8sSettings,
    LocalExecutor,
    build_job,
    check_mounted,
)
from mathforge.classifier.recall_map import PHASES, run_task
from mathforge.classifier.recall_sharded import run_recall_sharded
from mathforge.corpus import (
    iter_records,
    list_shards,
    output_path,
    parse_shard_spec,
    select_shard,
    write_records_atomic,
)
from mathforge.data_cli import group

#: The miniature preset used with --generate when no --config is given (configs/tiny/recall.yaml).
TINY_PRESET: dict[str, Any] = {
    "auto_approve": True,
    "train": {"dim": 32, "epoch": 10, "bucket": 1 << 17, "min_count": 2},
}


def register(sub: argparse._SubParsersAction) -> None:
    data = group(sub, "data")
    recall = data.add_parser("recall", help="iterative math recall with domain discovery (DeepSeekMath §2.1)")
    source = recall.add_mutually_exclusive_group(required=True)
    source.add_argument("--web", type=Path, help="directory, file or glob of page shards (id, url, text)")
    source.add_argument("--generate", type=int, metavar="N", help="generate a miniature web of N pages first")
    recall.add_argument("--out", type=Path, required=True, help="output directory (resumed when it exists)")
    recall.add_argument("--seed-file", type=Path, help="seed positives shard (default WEB/seed/seed.jsonl)")
    recall.add_argument(
        "--truth", type=Path, help="ground truth (id, is_math) JSONL (default WEB/truth.jsonl)"
    )
    recall.add_argument("--config", type=Path, help="recall YAML (configs/*/recall.yaml)")
    recall.add_argument(
        "--approvals", type=Path, help="approved URL prefixes file (default OUT/approvals.txt)"
    )
    recall.add_argument(
        "--auto-approve",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="approve proposed prefixes without review",
    )
    recall.add_argument("--rounds", type=int, help="override max_rounds")
    recall.add_argument("--random-seed", type=int, default=0, help="generator and sampling seed")
    recall.add_argument(
        "--executor",
        choices=("local", "k8s", "inprocess"),
        default="local",
        help="where each round's shard tasks run: a local process pool, one Kubernetes Indexed Job per "
        "phase (the reduce runs here), or the in-process loop (no shard tasks)",
    )
    recall.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="local executor processes"
    )
    recall.add_argument("--dry-run", action="store_true", help="with --executor k8s: print round 1's Jobs")
    k8s = recall.add_argument_group("--executor k8s")
    defaults = K8sSettings()
    k8s.add_argument("--namespace", default=defaults.namespace, help="namespace of the Jobs")
    k8s.add_argument("--image", default=defaults.image, help="image with the mathforge CLI")
    k8s.add_argument("--claim", default=defaults.claim, help="PersistentVolumeClaim holding web and run")
    k8s.add_argument(
        "--k8s-mount",
        default=defaults.mount,
        help="where pods mount the claim; --web/--out must lie under it",
    )
    k8s.add_argument("--parallelism", type=int, default=defaults.parallelism, help="pods per Job at once")
    k8s.add_argument(
        "--queue", default="", help="Kueue LocalQueue; the Jobs are created suspended until admitted"
    )
    k8s.add_argument("--priority-class", default="", help="Kueue WorkloadPriorityClass (needs --queue)")
    recall.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.epoch=5")
    recall.set_defaults(handler=_recall)

    worker = data.add_parser(
        "recall-map", help="run one shard task of a recall round (the executors' worker)"
    )
    worker.add_argument("--task", required=True, type=Path, help="the phase's task.json")
    worker.add_argument("--index", required=True, type=int, help="the shard (JOB_COMPLETION_INDEX)")
    worker.set_defaults(handler=_recall_map)

    score = data.add_parser("score", help="score corpus shards with a classifier model, one slice of N")
    score.add_argument("--input", required=True, help="shard file, directory or glob")
    score.add_argument("--model", required=True, type=Path, help="fastText .bin model")
    score.add_argument(
        "--shard",
        default=os.environ.get("MATHFORGE_SHARD", "0/1"),
        help="I/N: this worker's slice of the shards (env MATHFORGE_SHARD; default 0/1)",
    )
    score.add_argument("--out-dir", type=Path, help="where score shards go (default: beside each input)")
    score.add_argument("--suffix", default=".scores.jsonl", help="output name ending (format by suffix)")
    score.add_argument("--batch", type=int, default=4096, help="documents per predict call")
    score.add_argument("--overwrite", action="store_true", help="rescore shards whose output exists")
    score.set_defaults(handler=_score)


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"override {pair!r} is not key=value")
        overrides[key] = (
            json.loads(value) if value[:1] in "[{0123456789-tf" and value not in ("t", "f") else value
        )
    return overrides


def _recall(args: argparse.Namespace, rest: list[str]) -> int:
    if args.priority_class and not args.queue:
        print(
            f"recall: --priority-class {args.priority_class} needs --queue (a Kueue LocalQueue)",
            file=sys.stderr,
        )
        return 2
    try:
        overrides = _parse_overrides(args.overrides)
        if args.rounds is not None:
            overrides["max_rounds"] = args.rounds
        if args.auto_approve is not None:
            overrides["auto_approve"] = args.auto_approve
        overrides.setdefault("seed", args.random_seed)
        if args.config:
            config = RecallConfig.from_file(args.config, overrides)
        else:
            from mathforge.classifier.recall_config import merge_overrides

            base = TINY_PRESET if args.generate else {}
            config = RecallConfig.from_mapping(merge_overrides(json.loads(json.dumps(base)), overrides))
    except (ValueError, OSError) as exc:
        print(f"recall: {exc}", file=sys.stderr)
        return 2
    web = args.web
    if args.generate is not None:
        from mathforge.classifier.web import generate_web

        web = args.out / "web"
        if not (web / "manifest.json").exists():
            started = time.perf_counter()
            manifest = generate_web(web, args.generate, seed=args.random_seed)
            print(
                f"generated {manifest.pages} pages ({manifest.math_pages} math) over {len(manifest.domains)} "
                f"domains in {time.perf_counter() - started:.1f}s -> {web}"
            )
    web_dir = web if web.is_dir() else web.parent
    pages = web_dir / "pages" if (web_dir / "pages").is_dir() else web
    seed = args.seed_file or web_dir / "seed" / "seed.jsonl"
    truth = args.truth or (web_dir / "truth.jsonl" if (web_dir / "truth.jsonl").exists() else None)
    if not seed.exists():
        print(f"recall: seed file {seed} does not exist (--seed-file)", file=sys.stderr)
        return 2
    inputs = RecallInputs(pages, seed, truth, args.approvals)
    if args.dry_run:
        return _print_jobs(args, inputs)
    if args.executor == "inprocess":
        result = run_recall(inputs, args.out, config)
    elif args.executor == "local":
        if args.workers < 1:
            print(f"recall: --workers {args.workers} must be at least 1", file=sys.stderr)
            return 2
        with LocalExecutor(args.workers) as executor:
            result = run_recall_sharded(inputs, args.out, config, executor)
    else:
        result = run_recall_sharded(inputs, args.out, config, K8sExecutor(_k8s_settings(args)))
    print(format_rounds(result.rounds))
    if result.waiting_for_review is not None:
        print(
            f"waiting for review: edit {result.waiting_for_review} (change ? to + or -), then rerun "
            "the same command to continue"
        )
        return 3
    print(f"rounds: {args.out / 'rounds.json'}")
    return 0


def _k8s_settings(args: argparse.Namespace) -> K8sSettings:
    return K8sSettings(
        namespace=args.namespace,
        image=args.image,
        claim=args.claim,
        mount=args.k8s_mount,
        parallelism=args.parallelism,
        queue=args.queue,
        priority_class=args.priority_class,
    )


def _print_jobs(args: argparse.Namespace, inputs: RecallInputs) -> int:
    """Prints the Indexed Jobs of round 1's map phases as YAML documents (nothing is written)."""
    if args.executor != "k8s":
        print("recall: --dry-run prints Kubernetes Jobs; use it with --executor k8s", file=sys.stderr)
        return 2
    shards = list_shards(inputs.web)
    settings = _k8s_settings(args)
    try:
        for path in (args.out, *shards):
            check_mounted(path, settings)
    except ValueError as exc:
        print(f"recall: {exc}", file=sys.stderr)
        return 2
    documents = [build_job(args.out.resolve() / "round-1" / phase, len(shards), settings) for phase in PHASES]
    print(yaml.safe_dump_all(documents, sort_keys=False), end="")
    return 0


def _recall_map(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        done = run_task(args.task.parent, args.index)
    except (ValueError, FileNotFoundError) as exc:
        print(f"recall-map: {exc}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in done.items() if not isinstance(v, list | dict)}
    print(f"{args.task.parent.name} task {args.index}: {json.dumps(summary)}")
    return 0


def format_rounds(rounds: list[dict[str, Any]]) -> str:
    """The rounds as a fixed-width table (recall and precision when ground truth exists)."""
    header = f"{'round':>5} {'kept':>8} {'new':>7} {'new_share':>9} {'math_domains':>12} {'positives':>9}"
    has_truth = any("recall" in r for r in rounds)
    if has_truth:
        header += f" {'recall':>7} {'precision':>9}"
    lines = [header]
    for r in rounds:
        line = (
            f"{r['round']:>5} {r['kept']:>8} {r['new']:>7} {r['new_share']:>9.4f} "
            f"{len(r['math_domains']):>12} {r['positives']:>9}"
        )
        if has_truth:
            line += f" {r.get('recall', float('nan')):>7.4f} {r.get('precision', float('nan')):>9.4f}"
        lines.append(line)
    return "\n".join(lines)


def _score(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        index, count = parse_shard_spec(args.shard)
        shards = select_shard(list_shards(args.input, exclude_suffixes=[args.suffix]), index, count)
        model = MathModel.load(args.model)
    except (ValueError, FileNotFoundError) as exc:
        print(f"score: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    documents = 0
    for shard in shards:
        target = output_path(shard, args.out_dir, args.suffix)
        if target.exists() and not args.overwrite:
            print(f"{shard}: {target} exists, skipped (--overwrite rescores)")
            continue
        written = write_records_atomic(target, score_records(model, iter_records(shard), args.batch))
        documents += written
        print(f"{shard}: {written} scores -> {target}")
    seconds = time.perf_counter() - started
    rate = documents / seconds if seconds > 0 else 0.0
    print(f"shard {index}/{count}: {len(shards)} files, {documents} documents, {rate:.0f} docs/s")
    return 0


def score_records(model: MathModel, records: Any, batch: int) -> Any:
    """Yields {id, score} for each record, scoring `batch` texts per predict call."""
    pending: list[dict[str, Any]] = []
    for record in records:
        pending.append(record)
        if len(pending) >= batch:
            yield from _scored(model, pending)
            pending = []
    if pending:
        yield from _scored(model, pending)


def _scored(model: MathModel, records: list[dict[str, Any]]) -> Any:
    scores = model.score([str(r.get("text") or "") for r in records])
    for record, score in zip(records, scores, strict=True):
        yield {"id": record.get("id"), "score": round(float(score), 6)}
