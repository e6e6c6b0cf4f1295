"""The demo's child processes: training entrypoints run as `python -m <module>` with their JSON
metric lines turned into a progress bar, and the services started as `mathforge up` starts them.

    events = run_stage_process("mathforge.training.sft", ["--config", ...], log, console, "sft", 300)
    with start_services(["sampler", "reward"], overrides, offset, log_dir) as group: ...

Every child runs in its own session (process group), so Ctrl-C reaches only the demo, which then
stops each child and everything the child started: SIGTERM to the group, SIGKILL after a grace.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mathforge.demo.console import Console
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.supervisor import ServiceGroup

GRACE_S = 10.0


class StageFailed(RuntimeError):
    """A training entrypoint exited with an error; the message holds the tail of its log."""


def stop_process_group(process: subprocess.Popen[Any], grace_s: float = GRACE_S) -> None:
    """SIGTERM to the child's whole process group, SIGKILL to what is left after `grace_s`."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # grandchildren that outlived their parent
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def child_environment() -> dict[str, str]:
    """The demo's environment for children: one thread each (the cores are few) and no network."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(".cache/torch_extensions").resolve()))
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # each stage is a single-process job of its own
    return env


def run_stage_process(
    module: str,
    arguments: Sequence[str],
    log_path: Path,
    console: Console,
    desc: str,
    total_steps: int,
) -> list[dict[str, Any]]:
    """Runs `python -m module arguments`; returns its JSON event lines (step, eval, done...).

    The bar advances on each "step" event and shows the loss (or reward) of the last step; the
    child's stderr and its non-JSON output go to `log_path`.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    events: list[dict[str, Any]] = []
    with open(log_path, "w") as log, console.bar(total_steps, desc, "step") as bar:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            stdout=subprocess.PIPE,
            stderr=log,
            env=child_environment(),
            text=True,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            for line in process.stdout:
                event = _event(line)
                if event is None:
                    log.write(line)
                    continue
                events.append(event)
                log.write(line)
                if event.get("event") == "step":
                    bar.n = int(event.get("step", bar.n))
                    shown = {k: f"{event[k]:.3f}" for k in ("loss", "reward_mean") if k in event}
                    bar.set_postfix(shown, refresh=True)
            code = process.wait()
        finally:
            stop_process_group(process)
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise StageFailed(f"{module} exited with status {code}; log {log_path}:\n{tail}")
    return events


def _event(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and "event" in value else None


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_offset(first: int = 1000, step: int = 100, slots: int = 200) -> int:
    """An offset at which every service's gRPC and metrics port is free on loopback.

    The search starts at a slot picked from the process id, so two demos starting at the same
    moment (before either has bound its ports) are unlikely to pick the same offset."""
    start = os.getpid() % slots
    for attempt in range(slots):
        offset = first + ((start + attempt) % slots) * step
        ports = [p + offset for spec in SERVICES.values() for p in (spec.port, spec.metrics_port)]
        if all(p < 65536 and _free(p) for p in ports):
            return offset
    raise RuntimeError("no free port offset for the five services (is another demo running?)")


@contextmanager
def start_services(
    names: list[str],
    overrides: Mapping[str, Mapping[str, Any]],
    offset: int,
    log_dir: Path,
    console: Console,
) -> Iterator[ServiceGroup]:
    """The services as `mathforge up` starts them (ServiceGroup), stopped on the way out, whatever
    the way (an error, Ctrl-C); their exit statuses are printed."""
    group = ServiceGroup(names, overrides=overrides, log_dir=log_dir, port_offset=offset, grace_s=5.0)
    try:
        group.start(ready_timeout_s=300.0)
        yield group
    finally:
        sessions = [child.process.pid for child in group.children.values()]
        codes = group.stop()
        if codes:
            console.line("   stopped " + ", ".join(f"{name} (exit {code})" for name, code in codes.items()))
        for session in sessions:  # worker processes a service started (sandboxes, grader workers)
            try:
                os.killpg(session, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def target(name: str, offset: int) -> str:
    return f"127.0.0.1:{SERVICES[name].port + offset}"
