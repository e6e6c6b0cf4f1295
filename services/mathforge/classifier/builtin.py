"""The model a classifier service serves when none is configured: trained once, in seconds, on a
small generated miniature web, and cached by generator version and settings."""

from __future__ import annotations

import logging
from pathlib import Path

from mathforge.classifier.model import TrainSettings, train_classifier
from mathforge.classifier.web import GENERATOR_VERSION, iter_pages

log = logging.getLogger(__name__)

BUILTIN_PAGES = 2500
BUILTIN_SETTINGS = TrainSettings(dim=16, epoch=8, bucket=1 << 16, min_count=2)


def builtin_model_path(cache_dir: Path) -> Path:
    """Returns the cached built-in model, training it first when it is not there."""
    s = BUILTIN_SETTINGS
    path = cache_dir / f"builtin-web{GENERATOR_VERSION}-p{BUILTIN_PAGES}-d{s.dim}-e{s.epoch}-b{s.bucket}.bin"
    if path.exists():
        return path
    pages = list(iter_pages(BUILTIN_PAGES, seed=0))
    positives = [str(p["text"]) for p in pages if p["is_math"]]
    negatives = [str(p["text"]) for p in pages if not p["is_math"]]
    log.info("training the built-in classifier on %d generated pages into %s", len(pages), path)
    train_classifier(positives, negatives, path, BUILTIN_SETTINGS)
    return path
