"""Stage 4: an outcome and a process reward model from policy samples (DeepSeekMath §4). The SFT policy,
served by the sampler, answers training questions; each answer is labelled by the rule verifier
(ORM) and each of its steps the Math-Shepherd way, from completions the sampler writes from that
step on (PRM). Both models are trained by `mathforge.reward.train` from the SFT checkpoint and
loaded into the reward service.

    rms = train_reward_models(config, models.sft, run_dir, sampler, reward, console)
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathforge.demo.children import run_stage_process
from mathforge.demo.config import DemoConfig
from mathforge.demo.console import Console
from mathforge.models.checkpoint import write_text_atomic
from mathforge.reward.data import RewardExample
from mathforge.reward.shepherd import (
    ShepherdSettings,
    label_solutions,
    outcome_labels,
    sample_solutions,
    sampler_completer,
)
from mathforge.runtime.clients.reward import RewardClient
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.training.synthetic_math import INSTRUCTION, generate_problems

HELD_OUT_SHARE = 0.125  # labelled examples kept aside for the reward models' eval numbers


@dataclass
class RewardModels:
    orm: Path
    prm: Path
    labels: dict[str, Any]
    losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    evals: dict[str, dict[str, float]] = field(default_factory=dict)


def held_out_split(
    examples: list[RewardExample], seed: int
) -> tuple[list[RewardExample], list[RewardExample]]:
    """A seeded 1/8 of each class held out: fully right solutions and the rest. Drawn over all
    examples at once, the 16 held-out answers of a policy right 18% of the time were all wrong in one
    run, which leaves the ORM's held-out AUC undefined; per class, both are in whenever both exist."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    held: set[int] = set()
    for right in (True, False):
        group = [i for i, e in enumerate(shuffled) if (min(e.labels) >= 0.5) is right]
        if len(group) >= 2:
            held.update(group[: min(len(group) - 1, max(1, round(len(group) * HELD_OUT_SHARE)))])
    train = [e for i, e in enumerate(shuffled) if i not in held]
    held_out = [e for i, e in enumerate(shuffled) if i in held]
    return train, held_out or shuffled[-1:]


def write_examples(examples: list[RewardExample], kind: str, directory: Path, seed: int) -> tuple[Path, Path]:
    """Training and held-out JSON-lines files of `examples` (held_out_split)."""
    train, held_out = held_out_split(examples, seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / f"{kind}-train.jsonl", directory / f"{kind}-eval.jsonl")
    for path, part in zip(paths, (train, held_out), strict=True):
        write_text_atomic(path, "".join(json.dumps(e.to_json(kind)) + "\n" for e in part))
    return paths


def train_reward_models(
    config: DemoConfig,
    policy: Path,
    run_dir: Path,
    sampler: SamplerClient,
    reward: RewardClient,
    console: Console,
) -> RewardModels:
    settings = config.reward
    difficulty = config.eval.difficulty
    problems = generate_problems(settings.questions, seed=config.seed + 7, difficulty=difficulty)
    questions = [(f"{p.question}\n{INSTRUCTION}", p.answer) for p in problems]
    complete = sampler_completer(sampler, settings.temperature, settings.max_tokens, seed=config.seed)
    with console.bar(2, "policy samples, Math-Shepherd labels", "pass") as bar:
        solutions = sample_solutions(questions, complete, settings.samples_per_question)
        bar.update(1)
        orm_examples = outcome_labels(solutions)
        prm_examples = label_solutions(
            solutions, complete, ShepherdSettings(samples_per_step=settings.shepherd_samples)
        )
        bar.update(1)
    right = sum(e.labels[0] for e in orm_examples)
    steps = [label for e in prm_examples for label in e.labels]
    labels = {
        "solutions": len(solutions),
        "correct_share": round(right / max(1, len(orm_examples)), 4),
        "prm_examples": len(prm_examples),
        "prm_steps": len(steps),
        "good_step_share": round(sum(steps) / max(1, len(steps)), 4),
    }
    console.line(
        f"   {labels['solutions']} sampled solutions, {labels['correct_share']:.0%} right; "
        f"{labels['prm_steps']} steps labelled, {labels['good_step_share']:.0%} good"
    )
    data_dir = run_dir / "data" / "reward"
    result = RewardModels(run_dir / "reward-orm" / "final", run_dir / "reward-prm" / "final", labels)
    for kind, examples, run in (("orm", orm_examples, settings.orm), ("prm", prm_examples, settings.prm)):
        train, held_out = write_examples(examples, kind, data_dir, config.seed)
        arguments = run.arguments(
            {
                "seed": config.seed,
                "out_dir": str(run_dir / f"reward-{kind}"),
                "model.init_from": str(policy),
                "data.train": [str(train)],
                "data.eval": [str(held_out)],
                "data.synthetic_train": 0,
                "data.synthetic_eval": 0,
                "metrics.progress_bar": "off",
            }
        )
        events = run_stage_process(
            "mathforge.reward.train",
            arguments,
            run_dir / "logs" / f"reward-{kind}.log",
            console,
            kind,
            run.steps(),
        )
        result.losses[kind] = [(int(e["step"]), float(e["loss"])) for e in events if e.get("event") == "step"]
        evals = [e for e in events if e.get("event") == "eval"]
        if evals:
            result.evals[kind] = eval_scores(evals[-1])
        path = result.orm if kind == "orm" else result.prm
        reward.load_model(kind, version=1, path=str(path.resolve()))
    for kind, scores in result.evals.items():
        console.line(
            f"   {kind} held-out: {shown_scores(scores)}; loaded into the reward service as version 1"
        )
    return result


def eval_scores(event: dict[str, Any]) -> dict[str, float]:
    """The numbers of a reward run's eval event (AUC, accuracy, count), counts kept as integers."""
    return {
        k: v
        for k, v in event.items()
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and k not in ("time", "step")
    }


def shown_scores(scores: dict[str, float]) -> str:
    """'accuracy 0.812, auc 0.904, count 16': rates to 3 decimals, counts as integers."""
    return ", ".join(f"{k} {v}" if isinstance(v, int) else f"{k} {v:.3f}" for k, v in sorted(scores.items()))
