"""The evaluator's commands: `mathforge grade FILE.jsonl`, `mathforge eval metrics FILE.jsonl` and
`mathforge eval run --benchmark NAME|PATH (--model DIR | --sampler HOST:PORT) -k K --out DIR`.

    mathforge grade pairs.jsonl > verdicts.jsonl       # lines {"pred", "gold", optional "policy"}
    mathforge eval metrics samples.jsonl               # lines {"gold", "samples": [...]}
    mathforge eval run --benchmark gsm8k --sampler 127.0.0.1:50054 -k 4 --out runs/eval-gsm8k
    mathforge eval run --benchmark gsm8k --model runs/tiny/sft/final --out runs/eval-sft
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mathforge.data_cli import group
from mathforge.evaluator.metrics import DEFAULT_MAJ, MAJ_DEFINITIONS


def _json_lines(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    try:
        for line_no, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object")
            yield line_no, row
    finally:
        if stream is not sys.stdin:
            stream.close()


def _grade(args: argparse.Namespace, rest: list[str]) -> int:
    from mathforge.evaluator.grading import GradingPolicy, grade

    try:
        for line_no, row in _json_lines(args.file):
            if "pred" not in row or "gold" not in row:
                raise ValueError(f"{args.file}:{line_no}: needs 'pred' and 'gold' fields, has {sorted(row)}")
            try:
                policy = GradingPolicy.from_mapping(row.get("policy"))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{args.file}:{line_no}: policy: {exc}") from None
            verdict = grade(str(row["pred"]), str(row["gold"]), policy)
            print(
                json.dumps(
                    {
                        "equivalent": verdict.equivalent,
                        "pred_answer": verdict.pred_answer,
                        "gold_answer": verdict.gold_answer,
                        "reason": verdict.reason,
                        "timed_out": verdict.timed_out,
                    },
                    ensure_ascii=False,
                ),
                flush=False,
            )
    except (ValueError, OSError) as exc:
        print(f"mathforge grade: {exc}", file=sys.stderr)
        return 2
    return 0


def _metrics(args: argparse.Namespace, rest: list[str]) -> int:
    from mathforge.evaluator.equivalence import canonical_key
    from mathforge.evaluator.grading import grade
    from mathforge.evaluator.metrics import ItemSamples, compute_metrics
    from mathforge.evaluator.policy import DEFAULT_POLICY

    items: list[ItemSamples] = []
    first_count: tuple[int, int] | None = None  # (line, samples) of the first line
    try:
        for line_no, row in _json_lines(args.file):
            samples = row.get("samples")
            if "gold" not in row or not isinstance(samples, list) or not samples:
                raise ValueError(f"{args.file}:{line_no}: needs 'gold' and a non-empty 'samples' list")
            if first_count is None:
                first_count = (line_no, len(samples))
            elif len(samples) != first_count[1]:
                raise ValueError(
                    f"{args.file}:{line_no}: {len(samples)} samples, but line {first_count[0]} has "
                    f"{first_count[1]}: pass@k and maj@k need the same number of samples on every line"
                )
            verdicts = [grade(str(s), str(row["gold"])) for s in samples]
            tags: dict[str, str] = {k: str(row[k]) for k in ("subject", "level") if k in row}
            items.append(
                ItemSamples([v.equivalent for v in verdicts], [v.pred_answer for v in verdicts], tags)
            )
        if not items:
            raise ValueError(f"{args.file}: no lines; expected JSONL lines {{gold, samples}}")
    except (ValueError, OSError) as exc:
        print(f"mathforge eval metrics: {exc}", file=sys.stderr)
        return 2

    def same(a: str, b: str) -> bool:
        return canonical_key(a, DEFAULT_POLICY) == canonical_key(b, DEFAULT_POLICY)

    print(json.dumps(compute_metrics(items, same=same, maj_definition=args.maj)))
    return 0


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    from mathforge.evaluator.benchmarks import load_benchmark, resolve_benchmark
    from mathforge.evaluator.provenance import weights_digest

    if args.k < 1:
        print(f"mathforge eval run: -k {args.k} must be >= 1", file=sys.stderr)
        return 2
    if not args.sampler and not args.model:
        print(
            "mathforge eval run: give --model DIR (a checkpoint directory; a sampler is started for it) "
            "or --sampler HOST:PORT (a running sampler)",
            file=sys.stderr,
        )
        return 2
    model: dict[str, Any] = {}
    try:
        path = resolve_benchmark(args.benchmark, args.benchmark_dir)
        items = load_benchmark(path, limit=args.limit or None)
        if args.model:
            model = {"path": str(Path(args.model).resolve()), "weights_digest": weights_digest(args.model)}
    except (ValueError, OSError) as exc:
        print(f"mathforge eval run: {exc}", file=sys.stderr)
        return 2
    if args.sampler:
        return _run_against(args, args.sampler, items, path, model)
    from mathforge.evaluator.provenance import local_sampler
    from mathforge.runtime.config import ConfigError

    print(f"starting a sampler for {args.model} ({args.device}, {args.dtype}) ...", file=sys.stderr)
    try:
        with local_sampler(args.model, args.device, args.dtype, args.max_tokens) as target:
            return _run_against(args, target, items, path, model)
    except ConfigError as exc:
        print(f"mathforge eval run: --model {args.model}: {exc}", file=sys.stderr)
        return 2


def _run_against(
    args: argparse.Namespace, target: str, items: list[Any], path: Any, model: dict[str, Any]
) -> int:
    """Runs the benchmark against the sampler at `target` and writes the report."""
    import grpc

    from mathforge.evaluator.provenance import code_version, sampler_model
    from mathforge.evaluator.report import write_report
    from mathforge.evaluator.run import RunSettings, run_benchmark, sampler_generate
    from mathforge.runtime.client import RetryPolicy
    from mathforge.runtime.clients.sampler import SamplerClient

    settings = RunSettings(
        k=args.k,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        prompt_style=args.prompt_style,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    client = SamplerClient(target, timeout_s=args.timeout_s, retry=RetryPolicy(budget_s=args.retry_budget_s))

    def progress(done: int, total: int, accuracy: float) -> None:
        print(f"\r{done}/{total} greedy acc {accuracy:.3f}", end="", file=sys.stderr, flush=True)

    versions: set[int] = set()
    try:
        result = run_benchmark(items, sampler_generate(client, versions), settings, progress)
        model["weights_versions"] = sorted(versions)  # of every completion graded
        try:
            model.update(sampler_model(client.info()))
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:  # a sampler without Info: versions only
                raise
    except grpc.RpcError as exc:
        where = f"sampler {args.sampler}" if args.sampler else f"the sampler started for {args.model}"
        print(f"\nmathforge eval run: {where}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(file=sys.stderr)
    report = {
        "benchmark": items[0].benchmark if items else str(args.benchmark),
        "path": str(path),
        "sampler": args.sampler or f"started in-process for --model ({target})",
        "model": model,
        "code": code_version(),
        "settings": {
            "k": args.k,
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "prompt_style": args.prompt_style,
            "seed": args.seed,
            "limit": args.limit,
        },
        **result.as_dict(),
    }
    json_path, md_path = write_report(args.out, report)
    print(json.dumps({k: v for k, v in result.metrics.items() if "/" not in k}))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    grade_parser = sub.add_parser(
        "grade", help="grade JSONL lines {pred, gold[, policy]}; one verdict per line"
    )
    grade_parser.add_argument("file", help="JSONL file, or - for stdin")
    grade_parser.set_defaults(handler=_grade)

    ev = group(sub, "eval")
    metrics = ev.add_parser("metrics", help="acc, pass@k and maj@k from JSONL lines {gold, samples}")
    metrics.add_argument("file", help="JSONL file, or - for stdin")
    metrics.add_argument(
        "--maj",
        choices=tuple(MAJ_DEFINITIONS),
        default=DEFAULT_MAJ,
        help="maj@k definition: " + "; ".join(f"{name}: {text}" for name, text in MAJ_DEFINITIONS.items()),
    )
    metrics.set_defaults(handler=_metrics)

    run = ev.add_parser("run", help="run a benchmark against a sampler; writes report.json and report.md")
    run.add_argument(
        "--benchmark", required=True, help="known name (gsm8k, math, math500, ...) or a JSONL path"
    )
    run.add_argument(
        "--benchmark-dir", default="", help="where known benchmark names are found (or give a file path)"
    )
    run.add_argument(
        "--model",
        default="",
        help="checkpoint directory to evaluate (Hugging Face format); without --sampler a sampler is "
        "started for it in this process and stopped at the end",
    )
    run.add_argument("--sampler", default="", help="a running sampler's endpoint HOST:PORT")
    run.add_argument("--device", default="cpu", help="with --model alone: cpu or cuda[:n]")
    run.add_argument("--dtype", default="float32", help="with --model alone: float32, bfloat16 or float16")
    run.add_argument("-k", type=int, default=1, help="samples per question (sample 0 is greedy)")
    run.add_argument("--out", required=True, help="output directory for report.json and report.md")
    run.add_argument("--limit", type=int, default=0, help="only the first N items (0 = all)")
    run.add_argument("--temperature", type=float, default=0.7, help="temperature of samples 1..k-1")
    run.add_argument("--max-tokens", type=int, default=1024, help="new tokens per sample")
    run.add_argument("--prompt-style", choices=("zero_shot", "few_shot", "chat"), default="zero_shot")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--batch-size", type=int, default=16, help="questions per Generate call")
    run.add_argument("--timeout-s", type=float, default=600.0, help="deadline of one Generate call")
    run.add_argument(
        "--retry-budget-s", type=float, default=60.0, help="time to retry an unavailable sampler"
    )
    run.set_defaults(handler=_run)
