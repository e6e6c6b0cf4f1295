"""`make demo`: the DeepSeekMath recipe in miniature on this machine, against the five services.

    python -m mathforge.demo                         # the full demo (configs/tiny/demo.yaml)
    python -m mathforge.demo --quick                 # the shortened run the e2e test uses
    python -m mathforge.demo grpo.overrides.batch.steps=100 eval.k=8

Exit status: 0 when every check holds, 3 when the demo ran through but a check failed, 1 on an
error, 2 for a bad config, 130 on Ctrl-C (services and training processes are stopped first).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

import grpc

from mathforge.demo.checks import all_hold, tally
from mathforge.demo.children import StageFailed
from mathforge.demo.config import ConfigError, load_demo_config
from mathforge.demo.console import Console
from mathforge.demo.pipeline import DemoOutcome, run_demo

DEFAULT_CONFIG = "configs/tiny/demo.yaml"


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def print_summary(outcome: DemoOutcome, console: Console) -> None:
    report = outcome.report
    console.line()
    console.line("== Summary")
    accuracy = report["accuracy"]
    console.line(
        "   greedy accuracy on held-out problems: "
        + ", ".join(f"{stage} {value:.3f}" for stage, value in accuracy.items())
    )
    last = report["recall_rounds"][-1]
    console.line(
        f"   recall round {last['round']}: recall {last.get('recall', 0):.3f}, "
        f"precision {last.get('precision', 0):.3f}"
    )
    console.line(
        f"   wall time {report['duration_s']:.0f}s; stages: "
        + ", ".join(f"{k} {v:.0f}s" for k, v in report["stage_durations_s"].items())
    )
    console.line(f"   checks: {tally(outcome.checks)}")
    for check in outcome.checks:
        console.line(f"   {check.verdict}  {check.name}: {check.detail}")
    console.line(f"   report: {outcome.run_dir / 'report.md'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mathforge.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="demo YAML (default %(default)s)")
    parser.add_argument(
        "--quick", action="store_true", help="the shortened profile (same stages, fewer steps)"
    )
    parser.add_argument("--runs-dir", help="where runs/<timestamp>/ goes (default: the config's runs_dir)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value demo settings, e.g. eval.k=8")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    profile = "quick" if args.quick else "full"
    overrides = list(args.overrides) + ([f"runs_dir={args.runs_dir}"] if args.runs_dir else [])
    try:
        config = load_demo_config(args.config, profile, overrides)
    except ConfigError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    # Ctrl-C must reach the demo even when it was started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    console = Console(bars=not args.no_progress)
    started = time.monotonic()
    try:
        outcome = run_demo(config, profile, console)
    except KeyboardInterrupt:
        console.line(
            f"\ninterrupted after {time.monotonic() - started:.0f}s; services and training processes stopped"
        )
        return 130
    except (StageFailed, RuntimeError, TimeoutError, OSError, ValueError, grpc.RpcError) as exc:
        console.line(f"\ndemo failed after {time.monotonic() - started:.0f}s: {exc}")
        return 1
    print_summary(outcome, console)
    return 0 if all_hold(outcome.checks) else 3


if __name__ == "__main__":
    sys.exit(main())
