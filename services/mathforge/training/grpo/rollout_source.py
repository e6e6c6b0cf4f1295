"""Where the GRPO loop's batches come from: sampled when asked (on-policy) or ahead, in the background.

    versions = VersionRegistry()                      # the loop's one record of published versions
    source = OnPolicySource(collect, first_batch=step)                       # rollout.max_staleness 0
    source = OverlappedSource(collect, versions, max_staleness=1, first_batch=step)          # k >= 1
    rollout = source.next()                           # scored, each output tagged with its version
    staleness = check_staleness(rollout.output_versions(), versions.current.version, bound)

`collect(batch)` draws the batch's questions, samples and scores them. The overlapped source calls it
from a background thread while the trainer updates: batch b starts only once the published version
is at least (trainer's version when b is trained) - k, so no batch is ever older than the bound when
it is used, and at most k batches wait ahead of the trainer. A sample older than the bound anyway
(a sampler that served old weights) is refused with StaleRolloutError, never mixed in.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mathforge.training.grpo.rollout import Rollout
from mathforge.training.grpo.services import LoadedModel, ServiceLink, StaleSampleError
from mathforge.v1 import sampler_pb2

log = logging.getLogger(__name__)


class StaleRolloutError(RuntimeError):
    """A sample is more versions behind the trainer than rollout.max_staleness allows."""


@dataclass(frozen=True)
class PolicyVersion:
    """A policy version the trainer published, and where its weights are."""

    version: int
    path: str


class VersionRegistry:
    """The policy version published last, owned by the loop and read by the background sampler."""

    def __init__(self) -> None:
        self._current = PolicyVersion(0, "")
        self._changed = threading.Condition()

    @property
    def current(self) -> PolicyVersion:
        with self._changed:
            return self._current

    def publish(self, version: int, path: str) -> None:
        with self._changed:
            if version <= self._current.version:
                raise ValueError(f"version {version} is not above the published {self._current.version}")
            self._current = PolicyVersion(version, path)
            self._changed.notify_all()

    def wait_for(self, version: int, timeout_s: float) -> PolicyVersion | None:
        """The current version once it is at least `version`; None if none was within `timeout_s`."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._current.version >= version, timeout_s):
                return None
            return self._current


def check_staleness(versions: Sequence[int], trainer_version: int, bound: int) -> list[int]:
    """How many versions each sample is behind the trainer's; StaleRolloutError past `bound`."""
    staleness = [trainer_version - v for v in versions]
    for index, (version, behind) in enumerate(zip(versions, staleness, strict=True)):
        if behind > bound:
            raise StaleRolloutError(
                f"output {index} was sampled by weights version {version}, {behind} versions behind the "
                f"trainer's {trainer_version}; rollout.max_staleness is {bound}"
            )
        if behind < 0:
            raise StaleRolloutError(
                f"output {index} comes from weights version {version}, newer than the trainer's "
                f"{trainer_version}: is another trainer publishing to this sampler?"
            )
    return staleness


class RolloutSource(Protocol):
    def next(self) -> Rollout:
        """The next batch, scored."""
        ...

    def pending(self) -> int:
        """Batches sampled or being sampled ahead of the trainer."""
        ...

    def close(self) -> None: ...


class OnPolicySource:
    """Samples each batch when the trainer asks for it: the paper's loop."""

    def __init__(self, collect: Callable[[int], Rollout], first_batch: int):
        self.collect = collect
        self.batch = first_batch

    def next(self) -> Rollout:
        rollout = self.collect(self.batch)
        self.batch += 1
        return rollout

    def pending(self) -> int:
        return 0

    def close(self) -> None:
        return None


class OverlappedSource:
    """A bounded queue of batches that a background thread samples and scores ahead of the trainer."""

    def __init__(
        self,
        collect: Callable[[int], Rollout],
        versions: VersionRegistry,
        max_staleness: int,
        first_batch: int,
        end_batch: int | None = None,
        wait_timeout_s: float = 3600.0,
    ):
        if max_staleness < 1:
            raise ValueError(f"an overlapped source needs max_staleness >= 1, got {max_staleness}")
        self.collect = collect
        self.versions = versions
        self.max_staleness = max_staleness
        self.first_batch = first_batch
        self.end_batch = end_batch  # no batch from here on is sampled (the run ends before it)
        self.wait_timeout_s = wait_timeout_s
        # the version the trainer holds when it trains on `first_batch`; one more per batch after it
        self.first_version = versions.current.version
        self._ready: queue.Queue[Rollout | BaseException] = queue.Queue()
        self._stop = threading.Event()
        self._collecting = False
        self._thread = threading.Thread(target=self._fill, name="grpo-rollouts", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        batch = self.first_batch
        try:
            while not self._stop.is_set() and (self.end_batch is None or batch < self.end_batch):
                oldest = self.first_version + (batch - self.first_batch) - self.max_staleness
                if not self._wait_for(oldest):
                    return
                self._collecting = True
                self._ready.put(self.collect(batch))
                self._collecting = False
                batch += 1
        except BaseException as exc:  # handed to the trainer's next(), which raises it
            self._ready.put(exc)
        finally:
            self._collecting = False

    def _wait_for(self, version: int) -> bool:
        """Waits until `version` is published (True) or the source is closed (False)."""
        waited = 0.0
        while not self._stop.is_set():
            if self.versions.wait_for(version, 0.2) is not None:
                return True
            waited += 0.2
            if waited > self.wait_timeout_s:
                raise TimeoutError(
                    f"no policy version >= {version} was published in {self.wait_timeout_s:.0f}s"
                )
        return False

    def next(self) -> Rollout:
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise RuntimeError(f"background sampling failed: {item}") from item
        return item

    def pending(self) -> int:
        return self._ready.qsize() + int(self._collecting)

    def close(self) -> None:
        """Stops sampling; a batch being sampled is abandoned (its questions were not committed)."""
        self._stop.set()
        self._thread.join(timeout=5.0)


class LatestPolicyLink:
    """Generate from whatever version was published last (the background sampler's view).

    Its own ServiceLink, so the trainer's publishing never races its version checks. When the
    trainer publishes a newer version between reading the registry and the call, the sampler
    refuses the old one; the call waits for the registry to catch up and asks again.
    """

    def __init__(self, link: ServiceLink, versions: VersionRegistry, timeout_s: float):
        self.link = link
        self.versions = versions
        self.timeout_s = timeout_s

    def generate(
        self, prompts: Sequence[str], params: sampler_pb2.SamplingParams
    ) -> sampler_pb2.GenerateResponse:
        for _ in range(10):
            latest = self.versions.current
            self.link.policy = LoadedModel(latest.version, latest.path)
            try:
                return self.link.generate(prompts, params)
            except StaleSampleError as exc:
                log.info("the sampler moved past version %d (%s); asking again", latest.version, exc)
                if self.versions.wait_for(latest.version + 1, self.timeout_s) is None:
                    raise StaleSampleError(
                        f"the sampler serves a version other than {latest.version} and no newer one was "
                        f"published within {self.timeout_s:.0f}s"
                    ) from exc
        raise StaleSampleError("the sampler's version kept changing under ten Generate calls in a row")

    def score(self, request):  # type: ignore[no-untyped-def]
        return self.link.score(request)
