"""The model a classifier service serves when none is configured: trained once, in seconds, on a
small generated miniature web, and cached by generator version and settings."""

from __future__ import annotations

import logging
from pathlib import Path

from mathforge.classifier.model import TrainSettings, train_classifier
from mathforge.classifier.web import GENERATOR_VERSION, iter_pages

log = logging.getLogger(__name__)

BUILTIN_PAGES = 4000
BUILTIN_SETTINGS = TrainSettings(dim=32, epoch=15, bucket=1 << 17, min_count=2)


def builtin_model_path(cache_dir: Path) -> Path:
    """Returns the cached built-in model, training it first when it is not there."""
    path = cache_dir / f"builtin-web{GENERATOR_VERSION}-d{BUILTIN_SETTINGS.dim}-e{BUILTIN_SETTINGS.epoch}.bin"
    if path.exists():
        return path
    pages = list(iter_pages(BUILTIN_PAGES, seed=0))
    positives = [str(p["text"]) for p in pages if p["is_math"]]
    negatives = [str(p["text"]) for p in pages if not p["is_math"]]
    log.info("training the built-in classifier on %d generated pages into %s", len(pages), path)
    train_classifier(positives, negatives, path, BUILTIN_SETTINGS)
    return path
