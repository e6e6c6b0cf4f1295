"""Reward-model training data: labelled examples in JSON lines, the replay of historical data, and a
resumable order over them.

    fresh = read_examples("runs/labels/iter-2.jsonl", "prm")
    mixed = mix_replay(fresh, read_examples("runs/labels/iter-1.jsonl", "prm"), share=0.1, seed=0)
    order = ExampleOrder(len(mixed), seed=0); order.take(16)        # indices, epoch after epoch

Line formats (one JSON object per line; other keys are kept but ignored):
  ORM: {"question": ..., "response": ..., "correct": true}   or "label": a number in [0, 1]
  PRM: {"question": ..., "response": ..., "step_labels": [1, 1, 0]}   one label per step
The labelling job (shepherd.py) writes both forms.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A data file is missing or a line of it is not a valid example."""


@dataclass(frozen=True)
class RewardExample:
    """A question, a response and its labels: one (ORM) or one per step (PRM), each in [0, 1]."""

    question: str
    response: str
    labels: list[float]
    reference: str = ""
    source: str = field(default="", compare=False)

    def to_json(self, kind: str) -> dict[str, Any]:
        row: dict[str, Any] = {"question": self.question, "response": self.response}
        if self.reference:
            row["reference"] = self.reference
        if kind == "orm":
            row["label"] = self.labels[0]
            row["correct"] = self.labels[0] >= 0.5
        else:
            row["step_labels"] = list(self.labels)
        return row


def _label(value: Any, where: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 1:
        raise DataError(f"{where}: label {value!r} is not a boolean or a number in [0, 1]")
    return float(value)


def parse_example(row: Any, kind: str, where: str) -> RewardExample:
    """One example from a decoded JSON line; DataError names the line and the problem."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    for key in ("question", "response"):
        if not isinstance(row.get(key), str):
            raise DataError(f"{where}: {key!r} is missing or not a string")
    if kind == "orm":
        raw = row.get("label", row.get("correct"))
        if raw is None:
            raise DataError(f"{where}: an ORM example needs 'correct' (true/false) or 'label' (0..1)")
        labels = [_label(raw, where)]
    else:
        raw_steps = row.get("step_labels")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise DataError(f"{where}: a PRM example needs 'step_labels', a non-empty list")
        labels = [_label(v, where) for v in raw_steps]
    reference = row.get("reference", "")
    return RewardExample(row["question"], row["response"], labels, str(reference or ""), where)


def read_examples(path: str | Path, kind: str) -> list[RewardExample]:
    """Every example of a JSON-lines file; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    examples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not JSON ({exc})") from None
            examples.append(parse_example(row, kind, where))
    return examples


def write_examples(path: str | Path, examples: list[RewardExample], kind: str) -> None:
    """Writes examples as JSON lines, atomically (temporary name, fsync, rename)."""
    from mathforge.models.checkpoint import write_text_atomic

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(e.to_json(kind), ensure_ascii=False) + "\n" for e in examples)
    write_text_atomic(path, text)


@dataclass(frozen=True)
class ReplayMix:
    """The mixed training set and how it was made."""

    examples: list[RewardExample]
    fresh: int
    replayed: int

    @property
    def replay_share(self) -> float:
        return self.replayed / max(1, len(self.examples))


def mix_replay(
    fresh: list[RewardExample], historical: list[RewardExample], share: float, seed: int = 0
) -> ReplayMix:
    """Fresh examples plus enough historical ones, drawn without replacement, that they make up
    `share` of the result (DeepSeekMath §4: 10%). With too little history, all of it is used."""
    if not 0 <= share < 1:
        raise ValueError(f"replay share {share} must be in [0, 1)")
    wanted = round(share * len(fresh) / (1 - share)) if fresh else 0
    count = min(wanted, len(historical))
    picked = random.Random(f"replay:{seed}").sample(range(len(historical)), count)
    replayed = [historical[i] for i in sorted(picked)]
    return ReplayMix(list(fresh) + replayed, len(fresh), count)


class ExampleOrder:
    """A seeded shuffled order over n examples, reshuffled every epoch; resumable by state_dict."""

    def __init__(self, n: int, seed: int = 0):
        if n < 1:
            raise DataError("no training examples (check data.train and the length limit)")
        self.n = n
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(self.n))
        random.Random(f"order:{self.seed}:{epoch}").shuffle(order)
        return order

    def take(self, count: int) -> list[int]:
        """The next `count` example indices."""
        picked: list[int] = []
        while len(picked) < count:
            if self.position == self.n:
                self.epoch += 1
                self.position = 0
                self._perm = self._permutation(self.epoch)
            picked.append(self._perm[self.position])
            self.position += 1
        return picked

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["n"] != self.n:
            raise DataError(f"the checkpoint was taken over {state['n']} examples; the data now has {self.n}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._perm = self._permutation(self.epoch)
