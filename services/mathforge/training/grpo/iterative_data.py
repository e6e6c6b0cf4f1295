"""The data of iterative RL's reward-model retraining (DeepSeekMath §4): what is recorded of the
policy's samples, how they are labelled, and what is replayed.

    rows = read_samples(fresh_files)                                   # recorded step by step
    examples = label_samples(rows, "prm", labelling, separator, complete, settings)
    data = RetrainData(train=[labels_file], replay=[original_file, *earlier_labels], share=0.1)

Labelling ("iterative.labels"):
- "shepherd" (the default for a PRM): Math-Shepherd labels; the current policy continues every step
  prefix `shepherd_samples_per_step` times and a step is good when a continuation reaches the
  reference (reward/shepherd.py). This is what the paper's PRM is trained on.
- "outcome": the cheaper proxy; every step gets the final answer's correctness. It costs no
  sampling, but a PRM retrained on it over several iterations drifts towards an outcome model.
An ORM is always labelled by the answer's correctness.

Blank and unfinished outputs: a sample records whether it was cut at the token limit. An output
that never finished (or has no text) is labelled wrong: it is not a solution (the same rule the
trainer applies to its rewards, training/grpo/unfinished.py). A PRM example needs at least one step,
so a PRM drops samples whose response has no step (counted and logged); an ORM keeps them (a blank
answer is a wrong answer it should learn to score low). Rows written before these rules (a PRM row
of one label for a blank response) are read the same way, so a resumed run does not fail on them.

Replay draws the configured share from all earlier data: the reward model's original training set
(materialised once from its reward-training config) and every earlier iteration's labelled samples.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mathforge.reward.data import DataError, RewardExample, write_examples
from mathforge.reward.shepherd import Completer, ShepherdSettings, Solution, label_solutions
from mathforge.reward.steps import split_steps

log = logging.getLogger(__name__)

LABELLINGS = ("shepherd", "outcome")


@dataclass(frozen=True)
class RecordedSample:
    """One policy output kept for the reward model, with the rule verifier's verdict."""

    question: str
    response: str
    reference: str
    correct: bool
    truncated: bool = False

    @property
    def finished(self) -> bool:
        return not self.truncated and bool(self.response.strip())

    @property
    def label(self) -> bool:
        """Right only when finished: an output cut at the token limit is not a solution."""
        return self.correct and self.finished

    def to_json(self) -> dict[str, object]:
        return {
            "question": self.question,
            "response": self.response,
            "reference": self.reference,
            "correct": self.label,
            "truncated": self.truncated,
        }


def _sample_from_row(row: object, where: str) -> RecordedSample:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    for key in ("question", "response"):
        if not isinstance(row.get(key), str):
            raise DataError(f"{where}: {key!r} is missing or not a string")
    if "correct" in row:
        correct = bool(row["correct"])
    elif isinstance(row.get("step_labels"), list) and row["step_labels"]:
        correct = float(row["step_labels"][-1]) >= 0.5  # an older row: every step had the outcome
    else:
        raise DataError(f"{where}: a recorded sample needs 'correct' (or the older 'step_labels')")
    return RecordedSample(
        row["question"], row["response"], str(row.get("reference") or ""), correct, bool(row.get("truncated"))
    )


def read_samples(paths: Sequence[str | Path]) -> list[RecordedSample]:
    """The recorded samples of the given step files, in order."""
    samples = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    samples.append(_sample_from_row(json.loads(line), f"{path}:{number}"))
    return samples


def label_samples(
    samples: Sequence[RecordedSample],
    kind: str,
    labelling: str,
    separator: str,
    complete: Completer | None = None,
    settings: ShepherdSettings | None = None,
    prompt: Callable[[str, str], str] | None = None,
) -> list[RewardExample]:
    """Reward-model examples of the samples: one label (ORM) or one per step (PRM)."""
    if kind == "orm":
        return [
            RewardExample(s.question, s.response, [1.0 if s.label else 0.0], s.reference) for s in samples
        ]
    if labelling not in LABELLINGS:
        raise ValueError(f"labelling {labelling!r} is not one of {', '.join(LABELLINGS)}")
    usable = [s for s in samples if split_steps(s.response, separator)]
    if len(usable) < len(samples):
        log.info(
            "PRM labels: %d of %d samples have no step and are left out",
            len(samples) - len(usable),
            len(samples),
        )
    if labelling == "outcome":
        return [
            RewardExample(
                s.question,
                s.response,
                [1.0 if s.label else 0.0] * len(split_steps(s.response, separator)),
                s.reference,
            )
            for s in usable
        ]
    if complete is None:
        raise ValueError("Math-Shepherd labels need a completer (the policy's sampler)")
    settings = settings or ShepherdSettings(step_separator=separator)
    solutions = [Solution(s.question, s.response, s.reference) for s in usable]
    examples = label_solutions(solutions, complete, settings, prompt=prompt)
    # the last step's label is the outcome; an unfinished output did not reach one
    return [
        RewardExample(e.question, e.response, [*e.labels[:-1], 0.0], e.reference) if not s.finished else e
        for s, e in zip(usable, examples, strict=True)
    ]


@dataclass(frozen=True)
class RetrainData:
    """What one retraining reads: fresh examples, the earlier data it replays, and the share."""

    train: list[str]
    replay: list[str]
    share: float


def write_labels(path: Path, examples: list[RewardExample], kind: str) -> Path:
    """Writes one iteration's labelled examples; DataError when none are left to train on."""
    if not examples:
        raise DataError(f"{path}: no usable samples to retrain the reward model on (every output was blank)")
    write_examples(path, examples, kind)
    return path
