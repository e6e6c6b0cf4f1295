"""Stage 6: evaluate the base, SFT and RL models on held-out word problems through the evaluator
service's Evaluate RPC against the sampler (DeepSeekMath §3.2): greedy accuracy, maj@k and pass@k.

Each model is loaded into the sampler in turn (LoadWeights, a new version each time); the
evaluator samples the greedy answer plus k samples per problem and grades them; maj@k and pass@k
are over the k samples, greedy accuracy is the greedy answer's.

    results = evaluate_models(config, {"base": ..., "sft": ..., "rl": ...}, run_dir, clients, offset, console)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mathforge.demo.children import target
from mathforge.demo.config import DemoConfig
from mathforge.demo.console import Console
from mathforge.evaluator.metrics import k_values
from mathforge.models.checkpoint import write_text_atomic
from mathforge.runtime.clients.evaluator import EvaluatorClient
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.training.synthetic_math import generate_problems


@dataclass
class StageScores:
    accuracy: float
    maj_at_k: dict[int, float]
    pass_at_k: dict[int, float]
    prompt_style: str
    weights_version: int
    seconds: float


def write_held_out(config: DemoConfig, path: Path) -> Path:
    """The held-out problems (the synthetic test split) as a GSM8K-format benchmark file."""
    problems = generate_problems(
        config.eval.problems, seed=config.seed, difficulty=config.eval.difficulty, split="test"
    )
    lines = [
        json.dumps({"question": p.question, "answer": f"{p.solution}\n#### {p.answer}"}) + "\n"
        for p in problems
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(lines))
    return path


def evaluate_models(
    config: DemoConfig,
    models: dict[str, Path],
    run_dir: Path,
    sampler: SamplerClient,
    evaluator: EvaluatorClient,
    offset: int,
    console: Console,
) -> dict[str, StageScores]:
    held_out = write_held_out(config, run_dir / "data" / "held_out_test.jsonl").resolve()
    console.line(
        f"   {config.eval.problems} held-out problems (never trained on), k = {config.eval.k} samples each"
    )
    results: dict[str, StageScores] = {}
    for stage, path in models.items():
        version = int(sampler.info().model_version) + 1
        sampler.load_weights(version, str(path.resolve()))
        style = config.eval.prompt_styles.get(stage, "zero_shot")
        metrics: dict[str, float] = {}
        seconds = 0.0
        with console.bar(config.eval.problems, f"evaluate {stage} ({style})", "problem") as bar:
            for event in evaluator.evaluate(
                str(held_out),
                sampler=target("sampler", offset),
                k=config.eval.k,
                temperature=config.eval.temperature,
                max_tokens=config.eval.max_tokens,
                prompt_style=style,
                seed=config.seed,
            ):
                if event.HasField("progress"):
                    bar.n = event.progress.done
                    bar.set_postfix(acc=f"{event.progress.accuracy:.3f}", refresh=True)
                else:
                    metrics = dict(event.result.metrics)
                    seconds = event.result.seconds
        ks = k_values(config.eval.k)
        results[stage] = StageScores(
            accuracy=metrics["acc"],
            maj_at_k={k: metrics[f"maj@{k}"] for k in ks},
            pass_at_k={k: metrics[f"pass@{k}"] for k in ks},
            prompt_style=style,
            weights_version=version,
            seconds=round(seconds, 1),
        )
    ks = k_values(config.eval.k)
    header = ["model", "prompt", "greedy acc", *(f"maj@{k}" for k in ks), *(f"pass@{k}" for k in ks)]
    console.table(
        header,
        [
            [stage, s.prompt_style, s.accuracy, *(s.maj_at_k[k] for k in ks), *(s.pass_at_k[k] for k in ks)]
            for stage, s in results.items()
        ],
    )
    return results
