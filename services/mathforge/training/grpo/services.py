"""The trainer's side of the sampler and reward services: every replica, versioned calls, and work
that survives a replica dying or restarting.

    link = ServiceLink(config.services)
    link.wait_ready()
    link.load_policy(version=7, path="/shared/published/v-00000007")   # every sampler replica, at once
    responses = link.generate_many([(prompts_a, params_a), (prompts_b, params_b)])  # spread over them
    responses = link.score_many([request_a, request_b])                 # over the reward replicas

Sampler and reward replicas are runtime/replicas.py sets: `services.sampler` / `services.reward`
name every address behind a headless Service (`dns:///mathforge-sampler:50054`) or list them. A new
policy version reaches every sampler replica before any Generate asks for it, and each Generate
carries `min_version`, so a replica that restarted with its start-up weights answers
FAILED_PRECONDITION: it is then given the current version (reloaded from the published path) before
it gets work again, and the call moves on. A completion from a version other than the ones allowed
is a StaleSampleError, never mixed into a batch. The reward models iterative RL loads are handled
the same way, through the versions each Score response and each replica's Info report.

`services.policy_line` names this run's line when several runs share the services: every call of
the link's clients (work, loads, the version checks and reloads of a restarted or evicted replica,
the collective publisher's) carries it, so the run's versions and reward models never touch another
run's. A replica whose line was evicted answers like one that restarted and is brought back the
same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from mathforge.runtime.client import RetryPolicy
from mathforge.runtime.clients.reward import RewardClient
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.runtime.lines import valid_line
from mathforge.runtime.replicas import NoReplicaError, Replica, ReplicaSet, ReplicaStale
from mathforge.training.grpo.config import ServicesConfig
from mathforge.v1 import reward_pb2, sampler_pb2

log = logging.getLogger(__name__)

START_HINT = (
    "start them with `mathforge up`, or `mathforge serve sampler --model-path DIR` and `mathforge serve "
    "reward`; services.sampler and services.reward name their addresses"
)
R = TypeVar("R")
#: Most Generate or Score calls one rollout keeps in flight at once.
MAX_CONCURRENT_CALLS = 64

#: Per call to one replica: a short retry, because the set moves the work to another replica and
#: waits for a restarting one itself (within services.retry_budget_s).
REPLICA_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.5, budget_s=3.0)


class StaleSampleError(RuntimeError):
    """A completion came from weights other than the versions the trainer allows."""


@dataclass(frozen=True)
class LoadedModel:
    """A model the trainer put into a service: its version and checkpoint path ("" when the weights
    went over the collective and exist on no volume)."""

    version: int
    path: str


class ServiceLink:
    """Every sampler and reward replica, with the versions the trainer expects them to serve."""

    def __init__(self, config: ServicesConfig):
        if not valid_line(config.policy_line):
            raise ValueError(
                f"services.policy_line {config.policy_line[:80]!r} is not a line name: letters, digits, "
                "'.', '_' and '-' (at most 64), starting with a letter or digit"
            )
        self.config = config
        line = config.policy_line
        self.samplers: ReplicaSet[SamplerClient] = ReplicaSet(
            config.sampler,
            lambda address: SamplerClient(address, retry=REPLICA_RETRY, line=line),
            prepare=self._prepare_sampler,
            budget_s=config.retry_budget_s,
            refresh_s=config.replica_refresh_s,
        )
        self.rewards: ReplicaSet[RewardClient] = ReplicaSet(
            config.reward,
            lambda address: RewardClient(address, retry=REPLICA_RETRY, line=line),
            prepare=self._prepare_reward,
            budget_s=config.retry_budget_s,
            refresh_s=config.replica_refresh_s,
        )
        self.policy: LoadedModel | None = None
        self.reward_models: dict[str, LoadedModel] = {}
        self.recoveries = 0
        #: Set by the collective publisher: brings the given sampler replicas to the current version
        #: when no volume copy exists (returns False when it cannot now).
        self.restream: Callable[[list[str]], bool] | None = None

    def wait_ready(self) -> None:
        """Waits until at least one replica of each service is ready; says what it waits for, and
        how to start what is missing, instead of waiting in silence."""
        log.info(
            "waiting for the sampler at %s and the reward service at %s (up to %.0f s; %s)",
            self.config.sampler,
            self.config.reward,
            self.config.ready_timeout_s,
            START_HINT,
        )
        for replicas in (self.samplers, self.rewards):
            try:
                # services.ready_timeout_s bounds the wait, not the (longer) retry budget of work
                replicas.submit(
                    lambda client: client.wait_ready(self.config.ready_timeout_s), self.config.ready_timeout_s
                )
            except (NoReplicaError, TimeoutError) as exc:
                raise TimeoutError(f"{exc}; {START_HINT}") from None

    # ---- the policy ----------------------------------------------------------------------
    def served_policy_version(self) -> int:
        """The newest policy version any sampler replica serves."""
        served = self.samplers.fan_out(lambda client: client.policy(self.config.ready_timeout_s).version)
        return max(int(v) for v in served.values())

    def load_policy(self, version: int, path: str) -> float:
        """Makes every sampler replica serve `path` as `version`, all at once; returns the longest
        load. A replica that is down now is given this version when it is back, before any work."""
        self.policy = LoadedModel(version, path)

        def load(client: SamplerClient) -> sampler_pb2.LoadWeightsResponse:
            served = client.policy(self.config.ready_timeout_s).version
            if served == version:  # it took this version already (a retried publish)
                return sampler_pb2.LoadWeightsResponse(version=version)
            return client.load_weights(version, path, timeout_s=self.config.load_timeout_s)

        answers = self.samplers.fan_out(load, prepares=True)
        for address, response in answers.items():
            if response.version != version:
                raise StaleSampleError(
                    f"sampler {address} answered LoadWeights({version}) with version {response.version}"
                )
        return max(float(r.load_seconds) for r in answers.values())

    def _prepare_sampler(self, replica: Replica[SamplerClient]) -> None:
        """Before a replica gets work: it must serve the current policy; a restarted one is reloaded."""
        if self.policy is None:
            return
        served = int(replica.client.policy(self.config.ready_timeout_s).version)
        if served == self.policy.version:
            return
        if served > self.policy.version:
            raise StaleSampleError(
                f"sampler {replica.address} serves version {served}, newer than this trainer's "
                f"{self.policy.version}: is another trainer publishing to it?"
            )
        log.warning(
            "sampler replica serves an older version; bringing it to the current one",
            extra={"fields": {"address": replica.address, "served": served, "current": self.policy.version}},
        )
        if self.policy.path:
            try:
                replica.client.load_weights(self.policy.version, self.policy.path, self.config.load_timeout_s)
            except grpc.RpcError as exc:
                # another rank of this trainer brought it up to date first
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                if int(replica.client.policy(self.config.ready_timeout_s).version) != self.policy.version:
                    raise
                return
        elif self.restream is None or not self.restream([replica.address]):
            raise ReplicaStale(f"version {self.policy.version} reaches it with the next publish")
        self.recoveries += 1

    def generate(
        self, prompts: Sequence[str], params: sampler_pb2.SamplingParams, min_version: int | None = None
    ) -> sampler_pb2.GenerateResponse:
        """Samples on the least-loaded sampler replica, from the current policy version (or any
        version from `min_version` on); a replica that died or restarted is replaced by another."""
        return self.generate_many([(prompts, params)], min_version)[0]

    def generate_many(
        self,
        calls: Sequence[tuple[Sequence[str], sampler_pb2.SamplingParams]],
        min_version: int | None = None,
    ) -> list[sampler_pb2.GenerateResponse]:
        """Each (prompts, params) as one Generate, all at once, spread over the sampler replicas
        (a call's prompts, and so each question's G samples, stay on one replica); in order."""
        if self.policy is None:
            raise StaleSampleError("no policy version has been published to the sampler yet")
        newest = self.policy.version
        oldest = newest if min_version is None else min_version

        def work(prompts: Sequence[str], params: sampler_pb2.SamplingParams):
            request = sampler_pb2.GenerateRequest(
                prompts=[sampler_pb2.Prompt(text=p) for p in prompts], params=params, min_version=oldest
            )

            def on(client: SamplerClient) -> sampler_pb2.GenerateResponse:
                try:
                    response = client.send(request, timeout_s=self.config.generate_timeout_s)
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                        raise ReplicaStale(exc.details()) from exc
                    raise
                check_versions(response, newest, oldest)
                return response

            return on

        return self.samplers.map([work(prompts, params) for prompts, params in calls])

    # ---- rewards -------------------------------------------------------------------------
    def served_reward_version(self, kind: str) -> int:
        """The newest version of the `kind` RM any reward replica serves (0: none loaded)."""
        served = self.rewards.fan_out(lambda client: client.model_versions(self.config.ready_timeout_s))
        return max(versions.get(kind, 0) for versions in served.values())

    def load_reward_model(self, kind: str, version: int, path: str) -> int:
        """Loads the RM at `path` into every reward replica; returns the version it serves under:
        `version`, or one above the newest served version when a replica already holds a version
        that high (a retried iteration)."""
        version = max(version, self.served_reward_version(kind) + 1)
        self.reward_models[kind] = LoadedModel(version, path)
        self.rewards.fan_out(
            lambda client: client.load_model(kind, version, path, self.config.load_timeout_s), prepares=True
        )
        return version

    def _prepare_reward(self, replica: Replica[RewardClient]) -> None:
        """Before a reward replica gets work: it must serve the RMs the trainer loaded."""
        if not self.reward_models:
            return
        # a named line's own models only: one that was evicted must not pass for the default line's
        served = replica.client.model_versions(self.config.ready_timeout_s, own=True)
        for kind, model in self.reward_models.items():
            if served.get(kind) == model.version:
                continue
            if served.get(kind, 0) > model.version:
                raise StaleSampleError(
                    f"reward replica {replica.address} serves {kind} version {served[kind]}, newer than "
                    f"the loaded {model.version}: is another trainer loading models into it?"
                )
            log.warning(
                "reward replica lost the %s RM version %d; reloading %s", kind, model.version, model.path
            )
            self.recoveries += 1
            try:
                replica.client.load_model(kind, model.version, model.path, self.config.load_timeout_s)
            except grpc.RpcError as exc:
                # another rank of this trainer reloaded it first
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                if replica.client.model_versions(self.config.ready_timeout_s).get(kind) != model.version:
                    raise

    def score(self, request: reward_pb2.RewardRequest) -> reward_pb2.RewardResponse:
        """Scores on the least-loaded reward replica with the RMs the trainer loaded."""
        return self.score_many([request])[0]

    def score_many(self, requests: Sequence[reward_pb2.RewardRequest]) -> list[reward_pb2.RewardResponse]:
        """Every request at once, spread over the reward replicas; responses in order."""

        def work(request: reward_pb2.RewardRequest):
            def on(client: RewardClient) -> reward_pb2.RewardResponse:
                try:
                    response = client.send(request, timeout_s=self.config.score_timeout_s)
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and self.reward_models:
                        raise ReplicaStale(exc.details()) from exc
                    raise
                served = dict(response.model_versions)
                for kind, model in self.reward_models.items():
                    if served.get(kind, model.version) != model.version:
                        raise ReplicaStale(
                            f"it scored with {kind} version {served[kind]}, not {model.version}"
                        )
                return response

            return on

        return self.rewards.map([work(request) for request in requests])

    def close(self) -> None:
        self.samplers.close()
        self.rewards.close()


def all_at_once(call: Callable[[Any], R], items: Sequence[Any]) -> list[R]:
    """`call` on every item concurrently (a ServiceLink sends each to the least-loaded replica);
    results in order, the first error raised once all ended."""
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(len(items), MAX_CONCURRENT_CALLS)) as pool:
        futures = [pool.submit(call, item) for item in items]
        wait(futures)
    return [future.result() for future in futures]


def check_versions(response: sampler_pb2.GenerateResponse, version: int, oldest: int | None = None) -> None:
    """Raises StaleSampleError unless every completion was produced by a version from `oldest` (by
    default `version` itself) to `version`."""
    oldest = version if oldest is None else oldest
    for index, result in enumerate(response.results):
        for completion in result.completions:
            if not oldest <= completion.weights_version <= version:
                expected = f"{version}" if oldest == version else f"{oldest}..{version}"
                raise StaleSampleError(
                    f"prompt {index} sample {completion.sample_index} came from weights version "
                    f"{completion.weights_version}, not the expected {expected}"
                )
