"""fastText math classifier: training with the paper's settings and scoring P(math | text).

    model = train_classifier(positives, negatives, "round-1/model.bin", TrainSettings())
    MathModel.load("round-1/model.bin").score(["Let $x^2 = 2$ ...", "Buy two, get one free"])

Defaults are DeepSeekMath §2.1: vector dim 256, learning rate 0.1, word n-grams up to 3, min word count 3,
3 epochs, 500,000 positives and 500,000 negatives. The hash bucket count is our choice (see
TrainSettings.bucket).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import fasttext
import numpy as np

from mathforge.classifier.text import prepare_text

MATH_LABEL = "__label__math"
OTHER_LABEL = "__label__other"

#: Training threads for a repeatable model. fastText trains Hogwild: with more than one thread the
#: threads race on shared weights, and two runs with the same seed give different models. One
#: thread reads the training file in order and gives the same model, byte for byte, on any machine,
#: but fastText 0.9.x fills its input matrix with random values in ten blocks, one per thread, and
#: leaves the blocks of missing threads as the allocator hands them over: with one thread, nine
#: tenths of the rows hold whatever that memory held before (in a process that has trained or
#: scored before, often garbage, and training aborts with "Encountered NaN"). So a one-thread model
#: trains in a fresh child process whose allocator is told to take every large block from the
#: kernel (MALLOC_MMAP_THRESHOLD_), and the kernel's pages are zeroed: those rows start at zero, the
#: same way every time. The output matrix starts at zero anyway, so they learn from the first update
#: on (tests/unit/test_classifier_determinism.py checks the model and its accuracy).
#: Thread counts of 2 to 10 leave blocks of garbage too, so they are refused; 11 or more cover all
#: ten blocks and the remainder.
DETERMINISTIC_THREADS = 1
MIN_HOGWILD_THREADS = 11


@dataclass
class TrainSettings:
    """fastText supervised-training settings; defaults from DeepSeekMath §2.1 unless marked ours."""

    dim: int = 256  # §1 "vector dim 256"
    lr: float = 0.1  # §1 "learning rate 0.1"
    word_ngrams: int = 3  # §1 "max word n-gram 3"
    min_count: int = 3  # §1 "min word count 3"
    epoch: int = 3  # §1 "3 epochs"
    positives: int = 500_000  # §1 "500,000 positives from the seed"
    negatives: int = 500_000  # §1 "500,000 negatives sampled from CC"
    # Ours. Word n-grams are hashed into `bucket` rows of `dim` floats: fastText's default 2,000,000
    # x 256 x 4 bytes is a 2 GB model, loaded by every classifier replica. 2^19 rows (512 MiB at
    # dim 256) keeps replicas small; a binary math-vs-other decision loses little to the extra
    # hash collisions (docs/classifier.md has the measurement).
    bucket: int = 1 << 19
    # Ours. fastText training threads. 1 (the default) is deterministic: the same seed gives the same
    # model whatever the machine; more threads train faster (Hogwild) but differ from run to run.
    threads: int = DETERMINISTIC_THREADS
    seed: int = 0
    max_chars: int = 100_000  # ours: characters of a document used for training and scoring

    def validate(self) -> None:
        for name in (
            "dim",
            "epoch",
            "word_ngrams",
            "min_count",
            "bucket",
            "threads",
            "positives",
            "negatives",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"training setting {name} = {getattr(self, name)} must be at least 1")
        if 1 < self.threads < MIN_HOGWILD_THREADS:
            raise ValueError(
                f"training setting threads = {self.threads}: use 1 (repeatable) or at least "
                f"{MIN_HOGWILD_THREADS} (fastText leaves part of the model uninitialised with 2 to 10)"
            )
        if not 0 < self.lr <= 10:
            raise ValueError(f"training setting lr = {self.lr} must be in (0, 10]")

    def model_bytes(self, words: int) -> int:
        """Approximate size of the input matrix of a trained model with `words` vocabulary words."""
        return (words + self.bucket) * self.dim * 4

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def training_lines(
    positives: Iterable[str], negatives: Iterable[str], settings: TrainSettings, rng: random.Random
) -> list[str]:
    """Labelled, prepared, shuffled fastText lines: up to settings.positives/negatives of each."""
    lines = [f"{MATH_LABEL} {t}" for t in _prepared(positives, settings.positives, settings.max_chars)]
    lines += [f"{OTHER_LABEL} {t}" for t in _prepared(negatives, settings.negatives, settings.max_chars)]
    rng.shuffle(lines)
    return lines


def _prepared(texts: Iterable[str], limit: int, max_chars: int) -> list[str]:
    out: list[str] = []
    for text in texts:
        if len(out) >= limit:
            break
        prepared = prepare_text(text, max_chars)
        if prepared:
            out.append(prepared)
    return out


def train_classifier(
    positives: Iterable[str],
    negatives: Iterable[str],
    out_path: str | Path,
    settings: TrainSettings | None = None,
) -> MathModel:
    """Trains on balanced math/other texts and saves the model to `out_path` atomically."""
    settings = settings or TrainSettings()
    settings.validate()
    lines = training_lines(positives, negatives, settings, random.Random(settings.seed))
    labels = {line.split(" ", 1)[0] for line in lines}
    if labels != {MATH_LABEL, OTHER_LABEL}:
        raise ValueError("training needs at least one non-empty positive and one non-empty negative text")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".train-") as scratch:
        data = Path(scratch) / "train.txt"
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        model = _fit(data, settings)
        temporary = Path(scratch) / "model.bin"
        model.save_model(str(temporary))
        os.replace(temporary, out_path)
    return MathModel(model, str(out_path), max_chars=settings.max_chars)


def _fit_arguments(data: Path, settings: TrainSettings) -> dict[str, object]:
    return {
        "input": str(data),
        "dim": settings.dim,
        "lr": settings.lr,
        "wordNgrams": settings.word_ngrams,
        "minCount": settings.min_count,
        "epoch": settings.epoch,
        "bucket": settings.bucket,
        "thread": settings.threads,
        "seed": settings.seed,
        "loss": "softmax",
        "verbose": 0,
    }


# The child that trains a one-thread model: fastText only, so it starts in a fraction of a second.
_FIT_CHILD = """
import json, sys
import fasttext
arguments, out = json.loads(sys.argv[1]), sys.argv[2]
try:
    fasttext.train_supervised(**arguments).save_model(out)
except RuntimeError as exc:
    print(exc, file=sys.stderr)
    sys.exit(3)
"""
#: Allocations at least this large come from fresh (zeroed) kernel pages in the training child.
_MMAP_THRESHOLD = 65536


def _fit(data: Path, settings: TrainSettings) -> fasttext.FastText._FastText:
    arguments = _fit_arguments(data, settings)
    if settings.threads == DETERMINISTIC_THREADS:
        model_path = data.with_name("fit.bin")
        environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(_MMAP_THRESHOLD)}
        child = subprocess.run(
            [sys.executable, "-c", _FIT_CHILD, json.dumps(arguments), str(model_path)],
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            problem = (
                child.stderr.strip().splitlines()[-1] if child.stderr.strip() else f"exit {child.returncode}"
            )
            raise RuntimeError(
                f"fastText training failed ({problem}); if it diverged, lower train.lr (now {settings.lr})"
            )
        return fasttext.load_model(str(model_path))
    try:
        return fasttext.train_supervised(**arguments)
    except RuntimeError as exc:
        raise RuntimeError(
            f"fastText training failed ({exc}); if it diverged, lower train.lr (now {settings.lr})"
        ) from None


class MathModel:
    """A loaded classifier: P(math) for texts. Immutable once loaded, so threads can share it."""

    def __init__(self, model: fasttext.FastText._FastText, path: str, max_chars: int = 100_000):
        labels = set(model.get_labels())
        if MATH_LABEL not in labels:
            raise ValueError(f"{path}: not a math classifier (labels {sorted(labels)}, no {MATH_LABEL})")
        self.model = model
        self.path = path
        self.max_chars = max_chars
        self.dim = model.get_dimension()
        self.words = len(model.get_words())
        self.loaded_at = time.time()

    @classmethod
    def load(cls, path: str | Path, max_chars: int = 100_000) -> MathModel:
        """Loads a fastText .bin model; ValueError naming the file when it is missing or not one."""
        path = str(path)
        if not os.path.isfile(path):
            raise ValueError(f"model file {path} does not exist")
        try:
            model = fasttext.load_model(path)
        except Exception as exc:  # fastText raises ValueError/RuntimeError for a bad file
            raise ValueError(f"{path} is not a fastText model ({exc})") from None
        return cls(model, path, max_chars)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(math) in [0, 1] for each text, in order; an empty text scores 0."""
        prepared = [prepare_text(t, self.max_chars) for t in texts]
        return self.score_prepared(prepared)

    def score_prepared(self, prepared: list[str]) -> np.ndarray:
        """Scores texts that already went through prepare_text (a list: fastText needs one)."""
        scores = np.zeros(len(prepared), dtype=np.float32)
        if not prepared:
            return scores
        labels, probs = self.model.predict(prepared, k=1)
        for i, (label, prob) in enumerate(zip(labels, probs, strict=True)):
            if not prepared[i]:
                continue
            p = float(prob[0]) if len(prob) else 0.5
            scores[i] = p if label[0] == MATH_LABEL else 1.0 - p
        np.clip(scores, 0.0, 1.0, out=scores)
        return scores
