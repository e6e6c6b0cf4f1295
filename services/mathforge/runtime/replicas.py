"""Every replica of a service as one client: a channel per pod, control calls fanned out to all of
them and awaited together, work sent to the least-loaded one, and a replica that dies mid-call has
its work redone on the others.

    samplers = ReplicaSet("dns:///mathforge-sampler:50054", SamplerClient, prepare=give_current_policy)
    answers = samplers.fan_out(lambda client: client.load_weights(8, path))   # every replica, at once
    response = samplers.submit(lambda client: client.generate(prompts))       # the least-loaded one
    responses = samplers.map([work_a, work_b, work_c])                        # spread, concurrently

The replicas behind `dns:///name:port` are every address the name resolves to (a headless Service
answers with one per ready pod), looked up again every `refresh_s` and whenever no replica can take
work; a comma-separated list names them directly (local runs, tests). A replica is given work only
once it is prepared: it answered a health check SERVING and `prepare` (e.g. "load the current
policy version") succeeded. One that fails with UNAVAILABLE, or whose work raises ReplicaStale (it
lost its state in a restart), goes back to unprepared, and the work moves on; it is prepared again
before its next piece of work. Nothing is double counted: a piece of work returns one result, from
the one replica whose call succeeded.
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import grpc

log = logging.getLogger(__name__)
C = TypeVar("C")
T = TypeVar("T")

#: Codes that mean the replica itself is gone or going (not that the request was wrong).
DEAD_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
STALE_RETRIES = 3


class ReplicaStale(Exception):
    """Raised by a piece of work when its replica no longer holds the state prepare gave it."""


class NoReplicaError(RuntimeError):
    """No replica could take the work within the budget."""


def resolve_targets(target: str) -> list[str]:
    """The replica addresses behind a target: "a:1,b:2" as listed; "dns:///name:port" (or
    "dns://authority/name:port") every address `name` resolves to, sorted; "host:port" itself."""
    if "," in target:
        return [part.strip() for part in target.split(",") if part.strip()]
    if not target.startswith("dns:"):
        return [target]
    rest = target.removeprefix("dns:").lstrip("/")
    if target.startswith("dns://") and not target.startswith("dns:///"):
        rest = rest.split("/", 1)[1] if "/" in rest else rest  # drop the DNS server authority
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"target {target!r} is not dns:///name:port")
    try:
        found = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []  # no ready pod yet: the set waits for one within its budget
    addresses = {str(info[4][0]) for info in found}  # the host of an IPv4 or IPv6 socket address
    return sorted(f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses)


def is_dead(exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) and exc.code() in DEAD_CODES


@dataclass
class Replica(Generic[C]):
    """One pod of the service: its address, its client and what the set knows of it."""

    address: str
    client: C
    in_flight: int = 0
    prepared: bool = False
    calls: int = 0
    failures: int = 0
    probed_at: float = 0.0
    probing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReplicaSet(Generic[C]):
    """Clients of every replica of one service, used together."""

    def __init__(
        self,
        target: str,
        make_client: Callable[[str], C],
        *,
        prepare: Callable[[Replica[C]], None] | None = None,
        budget_s: float = 600.0,
        refresh_s: float = 30.0,
        resolve: Callable[[str], list[str]] = resolve_targets,
        health: Callable[[C], str] | None = None,
        max_workers: int = 64,
        probe_s: float = 1.0,
    ):
        self.target = target
        self.make_client = make_client
        self.prepare = prepare
        self.budget_s = budget_s
        self.refresh_s = refresh_s
        self.probe_s = probe_s
        self.resolve = resolve
        self.health = health or (lambda client: client.health())  # type: ignore[attr-defined]
        self.replicas: dict[str, Replica[C]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="replicas")
        self._turn = itertools.count()
        self._resolved_at = 0.0
        self.refresh()

    # ---- membership ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Looks the replicas up again: new addresses join unprepared, vanished ones are closed."""
        addresses = self.resolve(self.target)
        with self._lock:
            self._resolved_at = time.monotonic()
            for address in addresses:
                if address not in self.replicas:
                    self.replicas[address] = Replica(address, self.make_client(address))
                    log.info("replica joined", extra={"fields": {"target": self.target, "address": address}})
            gone = [a for a in self.replicas if a not in addresses]
            for address in gone:
                replica = self.replicas.pop(address)
                log.warning("replica left", extra={"fields": {"target": self.target, "address": address}})
                close = getattr(replica.client, "close", None)
                if close is not None:
                    close()

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._resolved_at >= self.refresh_s:
            self.refresh()

    @property
    def addresses(self) -> list[str]:
        with self._lock:
            return sorted(self.replicas)

    def __len__(self) -> int:
        return len(self.replicas)

    def mark_unprepared(self, address: str) -> None:
        """Makes the replica pass health and `prepare` again before its next work (e.g. after a
        control call could not reach it)."""
        replica = self.replicas.get(address)
        if replica is not None:
            replica.prepared = False

    # ---- control calls: every replica ------------------------------------------------------
    def fan_out(
        self, call: Callable[[C], T], *, skip_dead: bool = True, prepares: bool = False
    ) -> dict[str, T]:
        """Runs `call` on every replica at once and waits for all; {address: result}. A replica that
        is down (UNAVAILABLE) is skipped and left unprepared, so `prepare` brings it up to date
        before it gets work; any other error is raised once all calls ended. With `prepares` (the
        call itself gives a replica the state `prepare` would, e.g. the current weights) a replica
        that answered may take work at once. NoReplicaError when no replica answered."""
        self._maybe_refresh()
        with self._lock:
            replicas = list(self.replicas.values())
        futures = {r.address: self._pool.submit(call, r.client) for r in replicas}
        results: dict[str, T] = {}
        errors: list[BaseException] = []
        for replica in replicas:
            try:
                results[replica.address] = futures[replica.address].result()
                if prepares:
                    replica.prepared = True
            except BaseException as exc:
                if skip_dead and is_dead(exc):
                    replica.prepared = False
                    log.warning(
                        "replica unreachable; it is brought up to date before its next work",
                        extra={"fields": {"target": self.target, "address": replica.address}},
                    )
                else:
                    errors.append(exc)
        if errors:
            raise errors[0]
        if not results:
            raise NoReplicaError(f"no replica of {self.target} answered ({len(replicas)} known)")
        return results

    # ---- work: the least-loaded replica ----------------------------------------------------
    def submit(self, work: Callable[[C], T], budget_s: float | None = None) -> T:
        """Runs `work` on the least-loaded prepared replica; on a dead or stale replica, again on
        another (or the same once it is back and prepared), until the budget (`budget_s`, else the
        set's) runs out."""
        budget = self.budget_s if budget_s is None else budget_s
        started = time.monotonic()
        stale = 0
        pause = 0.05
        last_error: BaseException | None = None
        while True:
            replica = self._acquire()
            if replica is None:
                elapsed = time.monotonic() - started
                if elapsed >= budget:
                    why = f"last error: {last_error}" if last_error else "none answered its health check"
                    raise NoReplicaError(
                        f"no replica of {self.target} could take work for {elapsed:.0f}s "
                        f"(known: {', '.join(self.addresses) or 'none'}; {why})"
                    )
                time.sleep(random.uniform(0, pause))
                pause = min(pause * 2, 2.0)
                self.refresh()
                continue
            try:
                return work(replica.client)
            except ReplicaStale as exc:
                replica.prepared = False
                stale += 1
                last_error = exc
                if stale > STALE_RETRIES:
                    raise
                log.warning(
                    "replica lost its state; preparing it again",
                    extra={"fields": {"target": self.target, "address": replica.address, "error": str(exc)}},
                )
            except grpc.RpcError as exc:
                if not is_dead(exc):
                    raise
                replica.prepared = False
                replica.failures += 1
                last_error = exc
                log.warning(
                    "replica failed; its work moves to another",
                    extra={"fields": {"target": self.target, "address": replica.address}},
                )
            finally:
                with self._lock:
                    replica.in_flight -= 1

    def map(self, works: Sequence[Callable[[C], T]]) -> list[T]:
        """Runs every piece of work concurrently, each on the least-loaded replica when it starts;
        results in the order given. The first error is raised once every piece ended."""
        futures: list[Future[T]] = [self._pool.submit(self.submit, work) for work in works]
        results: list[T] = []
        error: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
        return results

    def _acquire(self) -> Replica[C] | None:
        """The least-loaded prepared replica, its in-flight count taken; prepares unprepared ones
        first when none is ready. None when no replica can take work now. Unprepared replicas are
        probed in the background every `probe_s`, so one that comes back rejoins the work."""
        self._maybe_refresh()
        self._probe_unprepared()
        for attempt in range(2):
            with self._lock:
                ready = [r for r in self.replicas.values() if r.prepared]
                if ready:
                    turn = next(self._turn)
                    # fewest calls in flight; ties taken in turn so equal replicas share the work
                    order = sorted(
                        range(len(ready)), key=lambda i: (ready[i].in_flight, (i - turn) % len(ready))
                    )
                    chosen = ready[order[0]]
                    chosen.in_flight += 1
                    chosen.calls += 1
                    return chosen
                waiting = list(self.replicas.values())
            if attempt == 0:
                for replica in waiting:
                    self._prepare(replica)
        return None

    def _probe_unprepared(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [
                r
                for r in self.replicas.values()
                if not r.prepared and not r.probing and now - r.probed_at >= self.probe_s
            ]
            for replica in due:
                replica.probing = True
        for replica in due:
            self._pool.submit(self._probe, replica)

    def _probe(self, replica: Replica[C]) -> None:
        try:
            self._prepare(replica)
        except Exception as exc:  # a failed probe leaves it unprepared; the work goes elsewhere
            log.warning(
                "replica could not be prepared",
                extra={"fields": {"target": self.target, "address": replica.address, "error": str(exc)}},
            )
        finally:
            replica.probing = False

    def _prepare(self, replica: Replica[C]) -> None:
        """Health check, then `prepare`; the replica is ready for work only if both pass."""
        with replica.lock:  # one preparation at a time per replica
            replica.probed_at = time.monotonic()
            if replica.prepared:
                return
            try:
                if self.health(replica.client) != "SERVING":
                    return
                if self.prepare is not None:
                    self.prepare(replica)
            except ReplicaStale as exc:
                log.info(
                    "replica not ready for work yet",
                    extra={"fields": {"target": self.target, "address": replica.address, "why": str(exc)}},
                )
                return
            except grpc.RpcError as exc:
                if is_dead(exc):
                    return
                raise
            replica.prepared = True

    def prepare_all(self) -> None:
        """Prepares every replica that is not ready (those that are down stay unprepared)."""
        with self._lock:
            waiting = [r for r in self.replicas.values() if not r.prepared]
        list(self._pool.map(self._prepare, waiting))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for replica in self.replicas.values():
                close = getattr(replica.client, "close", None)
                if close is not None:
                    close()
            self.replicas.clear()
