"""The five services: their modules, proto names and default ports (DESIGN.md, Services).

Each service module defines `Config` (a ServiceConfig subclass with these ports as defaults) and
`create_service(config) -> Service`. A module that is not installed is simply not available.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    proto_name: str
    port: int
    metrics_port: int

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def available(self) -> bool:
        """Whether the service's module is installed. Found, not imported: `mathforge up` asks this
        of every service, and the sampler's module imports torch (seconds to load and to tear down
        in a process that only supervises); a missing dependency shows when the service starts."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:  # its package is missing
            return False


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("classifier", "mathforge.classifier.service", "mathforge.v1.Classifier", 50051, 9101),
        ServiceSpec("dedup", "mathforge.dedup.service", "mathforge.v1.Dedup", 50052, 9102),
        ServiceSpec("reward", "mathforge.reward.service", "mathforge.v1.Reward", 50053, 9103),
        ServiceSpec("sampler", "mathforge.sampler.service", "mathforge.v1.Sampler", 50054, 9104),
        ServiceSpec("evaluator", "mathforge.evaluator.service", "mathforge.v1.Evaluator", 50055, 9105),
    )
}
