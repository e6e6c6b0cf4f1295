"""Publishes policy weights to the sampler replicas: as numbered versions in a shared directory that
they load (the volume mode), or over the collective (weight_sync.py), as services.weight_sync says.

    publisher = PolicyPublisher(config.services, link, env, out_dir)
    publisher.publish(engine, model, tokenizer, version=8)   # every sampler replica serves it after
    path = WeightPublisher("/shared/published", keep=3).write(model, tokenizer, version=8)

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
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mathforge.models.checkpoint import save_model
from mathforge.training.distributed import DistEnv, barrier
from mathforge.training.grpo.config import ServicesConfig
from mathforge.training.grpo.services import LoadedModel, ServiceLink
from mathforge.training.grpo.weight_sync import WeightStreamer

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


class PolicyPublisher:
    """Makes the sampler replicas serve each new policy version, by the configured path: written to
    the shared volume and loaded from there (`volume`), or streamed over the collective
    (`collective`, weight_sync.py). Every training rank calls `publish`.

        publisher = PolicyPublisher(config.services, link, env, out_dir)
        seconds = publisher.publish(engine, model, tokenizer, version=8)
    """

    def __init__(self, config: ServicesConfig, link: ServiceLink, env: DistEnv, out_dir: str | Path):
        self.config = config
        self.link = link
        self.env = env
        self.volume = WeightPublisher(config.publish_dir or Path(out_dir) / "published", config.keep_versions)
        self.streamer = WeightStreamer(link, config, env) if config.weight_sync == "collective" else None

    def path_of(self, version: int) -> Path:
        return self.volume.path_of(version)

    def holds(self, version: int) -> bool:
        """Whether `version` can still be given to a sampler that lost it (volume: its directory is
        there; collective: only by the next transfer, so always as held as it gets)."""
        return self.streamer is not None or self.volume.path_of(version).is_dir()

    def loaded(self, version: int) -> LoadedModel:
        return LoadedModel(version, "" if self.streamer is not None else str(self.volume.path_of(version)))

    def publish(
        self, engine: Any, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, version: int
    ) -> float:
        """Publishes `version` to every sampler replica; returns the seconds it took."""
        began = time.perf_counter()
        if self.streamer is not None:
            self.streamer.publish(model, version, zero3=getattr(engine, "stage", 0) == 3)
        else:
            state_dict = engine.full_state_dict()
            if self.env.is_main:
                path = self.volume.write(model, tokenizer, version, state_dict)
                self.link.load_policy(version, str(path))
            barrier()
            self.link.policy = self.loaded(version)
        return time.perf_counter() - began
