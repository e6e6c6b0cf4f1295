"""The trainer's side of the sampler and reward services: versioned calls that survive a restart.

    link = ServiceLink(config.services)
    link.wait_ready()
    link.load_policy(version=7, path="/shared/published/v-00000007")
    response = link.generate(prompts, params, seed=11)        # every completion from version 7
    response = link.score(items, kind, weights, penalty)

Every call has a deadline and retries UNAVAILABLE for `retry_budget_s`, so a service that restarts
is waited for. A restarted sampler comes back serving its start-up weights: the version guard
(`require_version`) turns that into FAILED_PRECONDITION, and the link reloads the policy it last
published under the same version and asks again. A completion from any other version is a
StaleSampleError, never mixed into a batch. The reward models loaded by iterative RL are guarded the
same way through the versions each Score response reports.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from mathforge.runtime.client import RetryPolicy
from mathforge.runtime.clients.reward import RewardClient
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.training.grpo.config import ServicesConfig
from mathforge.v1 import reward_pb2, sampler_pb2

log = logging.getLogger(__name__)


class StaleSampleError(RuntimeError):
    """A completion came from weights other than the version the trainer asked for."""


@dataclass(frozen=True)
class LoadedModel:
    """A model the trainer put into a service: its version and checkpoint path."""

    version: int
    path: str


class ServiceLink:
    """Typed clients of the sampler and the reward service, with the versions the trainer expects."""

    def __init__(self, config: ServicesConfig):
        self.config = config
        retry = RetryPolicy(attempts=10_000, max_backoff_s=2.0, budget_s=config.retry_budget_s)
        self.sampler = SamplerClient(config.sampler, retry=retry)
        self.reward = RewardClient(config.reward, retry=retry)
        self.policy: LoadedModel | None = None
        self.reward_models: dict[str, LoadedModel] = {}
        self.recoveries = 0

    def wait_ready(self) -> None:
        self.sampler.wait_ready(self.config.ready_timeout_s)
        self.reward.wait_ready(self.config.ready_timeout_s)

    # ---- the policy ----------------------------------------------------------------------
    def served_policy_version(self) -> int:
        return int(self.sampler.info().model_version)

    def load_policy(self, version: int, path: str) -> float:
        """Makes the sampler serve `path` as `version`; returns the seconds the load took."""
        response = self.sampler.load_weights(version, path, timeout_s=self.config.load_timeout_s)
        if response.version != version:
            raise StaleSampleError(f"sampler answered LoadWeights({version}) with version {response.version}")
        self.policy = LoadedModel(version, path)
        return float(response.load_seconds)

    def _restore_policy(self) -> None:
        """After a FAILED_PRECONDITION: reload our policy if the sampler lost it in a restart."""
        if self.policy is None:
            raise StaleSampleError("the sampler rejected the version guard before any policy was published")
        self.sampler.wait_ready(self.config.ready_timeout_s)
        served = self.served_policy_version()
        if served == self.policy.version:
            return
        if served > self.policy.version:
            raise StaleSampleError(
                f"the sampler serves version {served}, newer than this trainer's {self.policy.version}: "
                "is another trainer publishing to it?"
            )
        log.warning(
            "sampler serves version %d, reloading %d from %s", served, self.policy.version, self.policy.path
        )
        self.recoveries += 1
        self.load_policy(self.policy.version, self.policy.path)

    def generate(
        self, prompts: Sequence[str], params: sampler_pb2.SamplingParams
    ) -> sampler_pb2.GenerateResponse:
        """Samples from exactly the published policy version; recovers a sampler that restarted."""
        if self.policy is None:
            raise StaleSampleError("no policy version has been published to the sampler yet")
        for attempt in range(3):
            request = sampler_pb2.GenerateRequest(
                prompts=[sampler_pb2.Prompt(text=p) for p in prompts],
                params=params,
                require_version=self.policy.version,
            )
            try:
                response = self.sampler.call("Generate", request, timeout_s=self.config.generate_timeout_s)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or attempt == 2:
                    raise
                self._restore_policy()
                continue
            check_versions(response, self.policy.version)
            return response
        raise AssertionError("unreachable")

    # ---- rewards -------------------------------------------------------------------------
    def served_reward_version(self, kind: str) -> int:
        return int(self.reward.info().details.get(f"{kind}_version", "0"))

    def load_reward_model(self, kind: str, version: int, path: str) -> int:
        """Loads the RM at `path`; returns the version it serves under: `version`, or one above the
        served version when the service already holds a version that high (a retried iteration)."""
        version = max(version, self.served_reward_version(kind) + 1)
        request = reward_pb2.LoadRewardModelRequest(kind=kind, version=version, path=path)
        response = self.reward.call("LoadModel", request, timeout_s=self.config.load_timeout_s)
        self.reward_models[kind] = LoadedModel(int(response.version), path)
        return int(response.version)

    def score(self, request: reward_pb2.RewardRequest) -> reward_pb2.RewardResponse:
        """Scores with the reward models the trainer loaded; reloads them after a service restart."""
        for attempt in range(3):
            try:
                response = self.reward.call("Score", request, timeout_s=self.config.score_timeout_s)
            except grpc.RpcError as exc:
                if (
                    exc.code() != grpc.StatusCode.FAILED_PRECONDITION
                    or not self.reward_models
                    or attempt == 2
                ):
                    raise
                self._restore_reward_models({})
                continue
            served = dict(response.model_versions)
            if all(
                served.get(kind, model.version) == model.version for kind, model in self.reward_models.items()
            ):
                return response
            if attempt == 2:
                raise StaleSampleError(f"reward models {served} are not the loaded {self.reward_models}")
            self._restore_reward_models(served)
        raise AssertionError("unreachable")

    def _restore_reward_models(self, served: dict[str, int]) -> None:
        self.reward.wait_ready(self.config.ready_timeout_s)
        for kind, model in list(self.reward_models.items()):
            if served.get(kind) != model.version:
                log.warning(
                    "reward service lost the %s RM version %d; reloading %s", kind, model.version, model.path
                )
                self.recoveries += 1
                self.load_reward_model(kind, model.version, model.path)  # under a fresh version if need be

    def close(self) -> None:
        self.sampler.close()
        self.reward.close()


def check_versions(response: sampler_pb2.GenerateResponse, version: int) -> None:
    """Raises StaleSampleError unless every completion was produced by `version`."""
    for index, result in enumerate(response.results):
        for completion in result.completions:
            if completion.weights_version != version:
                raise StaleSampleError(
                    f"prompt {index} sample {completion.sample_index} came from weights version "
                    f"{completion.weights_version}, not the expected {version}"
                )
