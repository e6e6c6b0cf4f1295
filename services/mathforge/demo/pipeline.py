"""The whole miniature recipe, stage after stage, against the five services started locally.

    outcome = run_demo(config, profile="full", console=Console())   # DemoOutcome(run_dir, checks)

The data services (classifier, dedup, evaluator) start first; the model services (sampler,
reward) start once the base model exists, pointed at it. Whatever happens (an error, Ctrl-C),
every service and training process is stopped before this returns or raises.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mathforge.demo.checks import Check, demo_checks
from mathforge.demo.children import free_port_offset, start_services, target
from mathforge.demo.config import DemoConfig
from mathforge.demo.console import Console
from mathforge.demo.corpus_stage import clean_corpus
from mathforge.demo.eval_stage import evaluate_models
from mathforge.demo.grpo_stage import run_grpo
from mathforge.demo.plots import write_plots
from mathforge.demo.report import write_report
from mathforge.demo.reward_stage import train_reward_models
from mathforge.demo.training_stage import pretrain_and_sft
from mathforge.demo.web_stage import mine_web
from mathforge.runtime.clients.classifier import ClassifierClient
from mathforge.runtime.clients.dedup import DedupClient
from mathforge.runtime.clients.evaluator import EvaluatorClient
from mathforge.runtime.clients.reward import RewardClient
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.runtime.registry import SERVICES


@dataclass
class DemoOutcome:
    run_dir: Path
    report: dict[str, Any]
    checks: list[Check]


def new_run_dir(runs_dir: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(runs_dir) / stamp
    suffix = 1
    while run_dir.exists():
        run_dir = Path(runs_dir) / f"{stamp}-{suffix}"
        suffix += 1
    run_dir.mkdir(parents=True)
    return run_dir.resolve()


def data_service_overrides(config: DemoConfig, run_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        "dedup": {"store_path": str(run_dir / "dedup-index"), "fsync": False},
        "evaluator": {"benchmark_dir": config.corpus.benchmark_dir, "symbolic_workers": 1},
    }


def model_service_overrides(base: Path, config: DemoConfig) -> dict[str, dict[str, Any]]:
    return {
        "sampler": {"model_path": str(base), "seed": config.seed},
        "reward": {"symbolic_workers": 1, "device": "cpu"},
    }


def run_demo(config: DemoConfig, profile: str, console: Console) -> DemoOutcome:
    started = time.monotonic()
    run_dir = new_run_dir(config.runs_dir)
    offset = config.port_offset if config.port_offset >= 0 else free_port_offset()
    service_logs = run_dir / "logs" / "services"
    console.line(f"mathforge demo ({profile} profile, seed {config.seed}) -> {run_dir}")
    ports = sorted(spec.port + offset for spec in SERVICES.values())
    console.line(f"services on ports {ports[0]}-{ports[-1]}; their logs in {service_logs}")
    report: dict[str, Any] = {
        "seed": config.seed,
        "profile": profile,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.as_dict(),
    }
    with ExitStack() as stack:
        stack.enter_context(
            start_services(
                ["classifier", "dedup", "evaluator"],
                data_service_overrides(config, run_dir),
                offset,
                service_logs,
                console,
            )
        )
        classifier = ClassifierClient(target("classifier", offset), timeout_s=120.0)
        stack.callback(classifier.close)
        dedup = DedupClient(target("dedup", offset), timeout_s=120.0)
        stack.callback(dedup.close)
        evaluator = EvaluatorClient(target("evaluator", offset))
        stack.callback(evaluator.close)

        with console.stage(1, "Miniature web and iterative recall with domain discovery", "web_recall"):
            mined = mine_web(config, run_dir, classifier, console)
        report["recall_rounds"] = mined.rounds
        report["classifier_service"] = mined.service

        with console.stage(2, "Dedup and decontamination (dedup service)", "dedup_decontamination"):
            clean, counts = clean_corpus(config, mined.corpus, run_dir, dedup, console)
        report["corpus"] = counts

        with console.stage(3, "Tokenizer, pretraining, SFT", "pretrain_sft"):
            models = pretrain_and_sft(config, clean, mined.other_texts, run_dir, console)

        stack.enter_context(
            start_services(
                ["sampler", "reward"],
                model_service_overrides(models.base, config),
                offset,
                service_logs,
                console,
            )
        )
        sampler = SamplerClient(target("sampler", offset), timeout_s=600.0)
        stack.callback(sampler.close)
        reward = RewardClient(target("reward", offset), timeout_s=600.0)
        stack.callback(reward.close)

        with console.stage(4, "Outcome and process reward models from policy samples", "reward_models"):
            sampler.load_weights(int(sampler.info().model_version) + 1, str(models.sft))
            rms = train_reward_models(config, models.sft, run_dir, sampler, reward, console)
        report["reward_models"] = {"labels": rms.labels, "eval": rms.evals}

        with console.stage(5, "GRPO with one round of iterative RL", "grpo"):
            rl = run_grpo(config, models.sft, rms.orm, run_dir, offset, console)
        report["grpo"] = {"curves": rl.curves, "held_out": rl.held_out, "iterations": rl.iterations}
        report["losses"] = {
            **models.losses,
            **{f"reward-{k}": v for k, v in rms.losses.items()},
            "grpo": rl.curves["loss"],
        }

        with console.stage(6, "Evaluation through the evaluator service", "evaluation"):
            scores = evaluate_models(
                config,
                {"base": models.base, "sft": models.sft, "rl": rl.final},
                run_dir,
                sampler,
                evaluator,
                offset,
                console,
            )
        report["held_out_problems"] = config.eval.problems
        report["prompt_styles"] = {stage: s.prompt_style for stage, s in scores.items()}
        report["accuracy"] = {stage: s.accuracy for stage, s in scores.items()}
        report["maj_at_k"] = {
            stage: {str(k): v for k, v in s.maj_at_k.items()} for stage, s in scores.items()
        }
        report["pass_at_k"] = {
            stage: {str(k): v for k, v in s.pass_at_k.items()} for stage, s in scores.items()
        }
        report["eval_seconds"] = {stage: s.seconds for stage, s in scores.items()}
        console.line("\n== stopping the services")

    with console.stage(7, "Report", "report"):
        report["stage_durations_s"] = dict(console.stage_seconds)
        report["duration_s"] = round(time.monotonic() - started, 1)
        checks = demo_checks(report, config.checks)
        write_plots(report, run_dir)
        json_path, md_path = write_report(report, checks, run_dir)
        console.line(f"   {json_path}\n   {md_path}")
    return DemoOutcome(run_dir, report, checks)
