"""Publishes policy weights as numbered versions in a shared directory for the sampler to load.

    publisher = WeightPublisher("/shared/published", keep=3)
    path = publisher.write(model, tokenizer, version=8)      # /shared/published/v-00000008, whole or absent

Each version is a complete model directory (safetensors + config + tokenizer) written under a
temporary name, fsynced and renamed, so the sampler never reads half a checkpoint. Older versions
beyond `keep` are deleted; the newest `keep` stay, so the version being served is never removed
while its successor is loading.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mathforge.models.checkpoint import save_model

_VERSION_DIR = re.compile(r"^v-(\d+)$")


def version_dir_name(version: int) -> str:
    return f"v-{version:08d}"


class WeightPublisher:
    """Writes versions atomically and prunes old ones."""

    def __init__(self, directory: str | Path, keep: int = 3):
        self.directory = Path(directory)
        self.keep = keep
        self.last_seconds = 0.0
        self.last_bytes = 0

    def path_of(self, version: int) -> Path:
        return self.directory / version_dir_name(version)

    def write(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        version: int,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Writes `model` as `version` (replacing a partial or older copy of that version)."""
        began = time.perf_counter()
        path = save_model(model, tokenizer, self.path_of(version), state_dict)
        self.last_seconds = time.perf_counter() - began
        self.last_bytes = sum(f.stat().st_size for f in path.glob("*.safetensors"))
        self.prune()
        return path

    def versions(self) -> list[int]:
        found = []
        if self.directory.is_dir():
            for child in self.directory.iterdir():
                match = _VERSION_DIR.match(child.name)
                if match and child.is_dir():
                    found.append(int(match.group(1)))
        return sorted(found)

    def prune(self) -> None:
        for version in self.versions()[: -self.keep]:
            shutil.rmtree(self.path_of(version), ignore_errors=True)
