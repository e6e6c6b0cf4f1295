"""The reward model's commands: labelling data with the sampler and submitting the training job.

    mathforge reward label --input questions.jsonl --output prm.jsonl --sampler 127.0.0.1:50054 \\
        --kind prm --solutions-per-question 4 --samples-per-step 8 --estimation hard
    mathforge submit reward --config configs/paper-7b/reward.yaml --dry-run

Input lines are {"question", "reference"} (solutions are sampled) or {"question", "response",
"reference"} (that response is labelled). The output is the training format of reward/data.py,
written atomically. k8s/training/reward.yaml is the --dry-run output for configs/paper-7b/reward.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

STAGE = "reward"
MODULE = "mathforge.reward.train"


def _read_rows(path: str) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("question"), str):
                raise ValueError(f"{path}:{number}: needs a 'question' string")
            if not str(row.get("reference", "")).strip():
                raise ValueError(f"{path}:{number}: needs a 'reference' answer to grade against")
            rows.append(row)
    return rows


def _label(args: argparse.Namespace, rest: list[str]) -> int:
    from mathforge.reward.data import write_examples
    from mathforge.reward.shepherd import (
        ShepherdSettings,
        Solution,
        label_solutions,
        outcome_labels,
        sample_solutions,
        sampler_completer,
    )
    from mathforge.runtime.clients.sampler import SamplerClient

    try:
        rows = _read_rows(args.input)
        settings = ShepherdSettings(
            args.samples_per_step, args.estimation, args.separator, args.batch_prompts
        )
    except (OSError, ValueError) as exc:
        print(f"mathforge reward label: {exc}", file=sys.stderr)
        return 2
    sampler = SamplerClient(args.sampler, timeout_s=args.timeout_s)
    try:
        complete = sampler_completer(sampler, args.temperature, args.max_tokens, args.seed)
        given = [Solution(r["question"], r["response"], str(r["reference"])) for r in rows if "response" in r]
        open_questions = [(r["question"], str(r["reference"])) for r in rows if "response" not in r]
        solutions = given + sample_solutions(
            open_questions, complete, args.solutions_per_question, args.batch_prompts
        )
        if args.kind == "orm":
            examples = outcome_labels(solutions)
        else:
            examples = label_solutions(solutions, complete, settings)
    finally:
        sampler.close()
    write_examples(args.output, examples, args.kind)
    good = sum(1 for e in examples if e.labels[-1] >= 0.5)
    print(f"labelled {len(examples)} solutions ({good} with a right final answer) -> {args.output}")
    return 0


def _render_job(config_path: str, overrides: list[str]) -> tuple[list[dict[str, Any]], str]:
    """The ConfigMap and PyTorchJob for a reward-training config, and their YAML."""
    from mathforge.reward.train_config import RewardTrainConfig
    from mathforge.training.config import load_config
    from mathforge.training.jobs import job_manifests, manifests_yaml
    from mathforge.training.submit import dry_run_header

    config = load_config(RewardTrainConfig, ["--config", config_path, *overrides])
    objects = job_manifests(STAGE, config, module=MODULE)
    return objects, manifests_yaml(objects, dry_run_header(STAGE, config_path, overrides))


def register(sub: argparse._SubParsersAction) -> None:
    reward = sub.add_parser("reward", help="reward-model data: Math-Shepherd step labels, outcome labels")
    commands = reward.add_subparsers(dest="reward_command", metavar="COMMAND", required=True)
    label = commands.add_parser(
        "label", help="label solutions through the sampler (PRM: Math-Shepherd; ORM: rule)"
    )
    label.add_argument("--input", required=True, help="JSON lines: question, reference, optional response")
    label.add_argument("--output", required=True, help="training data to write (reward/data.py format)")
    label.add_argument("--sampler", required=True, help="sampler service address, host:port")
    label.add_argument("--kind", choices=("prm", "orm"), default="prm", help="step labels or one label each")
    label.add_argument("--solutions-per-question", type=int, default=4, help="for rows without a response")
    label.add_argument("--samples-per-step", type=int, default=8, help="completions per step prefix (PRM)")
    label.add_argument(
        "--estimation",
        choices=("hard", "soft"),
        default="hard",
        help="hard: 1 if any completion is right; soft: the share that is right",
    )
    label.add_argument("--separator", default="\n", help="step separator (default: newline)")
    label.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    label.add_argument("--max-tokens", type=int, default=256, help="new tokens per completion")
    label.add_argument("--seed", type=int, default=0, help="sampling seed (reproducible labels)")
    label.add_argument("--batch-prompts", type=int, default=64, help="prompts per Generate call")
    label.add_argument("--timeout-s", type=float, default=600.0, help="deadline of one Generate call")
    label.set_defaults(handler=_label)

    from mathforge.training.submit import add_stage_parser

    add_stage_parser(
        sub, STAGE, _render_job, "run reward-model training as a Kubeflow PyTorchJob", "job.nodes=2"
    )
