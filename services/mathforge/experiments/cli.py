"""`mathforge experiment paper-rl`: DeepSeekMath §5.2's RL comparison in miniature (paper_rl.py).

mathforge experiment paper-rl --profile quick --out runs/paper-rl-quick
mathforge experiment paper-rl --profile full --out runs/paper-rl        # rerun to resume
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_CONFIG = "configs/tiny/experiments/paper-rl.yaml"


def _paper_rl(args: argparse.Namespace) -> int:
    from mathforge.experiments.paper_rl import Experiment, load_profile, read_events
    from mathforge.experiments.report import build_report, eval_curve, write_report

    began = time.monotonic()
    try:
        profile = load_profile(args.config, args.profile)
        if args.concurrency is not None:
            profile.concurrency = args.concurrency
            profile.check()
    except (OSError, ValueError) as exc:
        print(f"paper-rl: {exc}")
        return 2
    experiment = Experiment(profile, Path(args.out), Path(args.repo), bars=not args.no_progress)
    print(
        f"paper-rl ({args.profile}): {len(profile.methods)} methods x {len(profile.seeds)} seeds, "
        f"{profile.steps} updates each -> {args.out}"
    )
    experiment.prepare()
    with experiment.services() as services:
        experiment.run_all(services)
        k_metrics = experiment.k_eval(services)
    curves = {
        method: {
            seed: eval_curve(read_events(experiment.run_dir(method, seed) / "events.jsonl"))
            for seed in profile.seeds
        }
        for method in profile.methods
    }
    report = build_report(curves, k_metrics, args.profile)
    report["seconds"] = round(time.monotonic() - began, 1)
    written = write_report(report, Path(args.out) / "report")
    print((Path(args.out) / "report" / "report.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    experiment = sub.add_parser("experiment", help="the paper's comparisons in miniature")
    commands = experiment.add_subparsers(dest="experiment_command", metavar="EXPERIMENT", required=True)
    paper_rl = commands.add_parser(
        "paper-rl",
        help="RFT, Online RFT, GRPO (outcome, process, iterative) from one SFT policy, several seeds",
    )
    paper_rl.add_argument("--config", default=DEFAULT_CONFIG, help="the experiment's profiles (YAML)")
    paper_rl.add_argument("--profile", default="quick", help="which profile of the config (quick, full)")
    paper_rl.add_argument(
        "--out", default="runs/paper-rl", help="the experiment's directory (rerun to resume)"
    )
    paper_rl.add_argument("--repo", default=".", help="where configs/tiny lives (the repository root)")
    paper_rl.add_argument("--no-progress", action="store_true", help="no progress bars")
    paper_rl.add_argument(
        "--concurrency", type=int, default=None, help="runs at a time (default: the profile's concurrency)"
    )
    paper_rl.set_defaults(handler=lambda args, *_: _paper_rl(args))
