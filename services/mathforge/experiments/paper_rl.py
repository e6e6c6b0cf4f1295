"""`mathforge experiment paper-rl`: the RL findings of DeepSeekMath §5.2 in miniature, on the synthetic
arithmetic task, from one SFT checkpoint.

    mathforge experiment paper-rl --profile quick --out runs/paper-rl

Steps, each skipped when its result is on disk (so a killed experiment resumes where it stopped):
1. the SFT policy (`mathforge.training.sft`, configs/tiny/sft.yaml) and the PRM
   (`mathforge.reward.train`, configs/tiny/reward-prm.yaml) every run starts from;
2. the runs: RFT, Online RFT, GRPO with outcome supervision, GRPO with process supervision and
   iterative GRPO (process supervision, the PRM retrained on the policy's samples), each for the same
   number of policy updates over the same questions, once per seed. A run is the GRPO trainer with
   `objective.method`, `concurrency` runs at a time. All runs share ONE sampler and ONE reward
   service, each run on its own line (`services.policy_line=<method>-seed<s>`): its own policy
   versions in the sampler, and in the reward service its own PRM (the iterative run's retrained
   one) beside the start-up PRM every other run scores with. An unfinished run is started again and
   resumes from its last checkpoint (a fresh service has lost its line, and the trainer loads it
   again, as after a sampler restart);
3. maj@k and pass@k (k = 1..k_max) of the SFT policy (the sampler's default line) and of each
   seed's GRPO (outcome) policy (a line of its own) on held-out problems, k_max samples each,
   graded by the rule verifier;
4. the report (report.py): markdown, JSON and plots.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mathforge.models.checkpoint import write_text_atomic

METHODS: dict[str, list[str]] = {
    "rft": ["objective.method=rft"],
    "online_rft": ["objective.method=online_rft"],
    "grpo_outcome": [],
    "grpo_process": ["objective.supervision=process", "reward.kind=prm"],
    "iterative_grpo": [
        "objective.supervision=process",
        "reward.kind=prm",
        "iterative.retrain_reward_model=true",
        "iterative.reward_model_kind=prm",
    ],
}


@dataclass
class Profile:
    """What one experiment runs (configs/tiny/experiments/paper-rl.yaml names two: quick and full)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    steps: int = 40
    eval_every: int = 10
    eval_problems: int = 100
    iterative_every: int = 20
    k_max: int = 64
    k_problems: int = 50
    k_temperature: float = 0.7
    concurrency: int = 1
    sft: list[str] = field(default_factory=list)
    prm: list[str] = field(default_factory=list)
    grpo: list[str] = field(default_factory=list)

    def check(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
        for name in ("steps", "eval_problems", "k_max", "k_problems", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if "iterative_grpo" in self.methods and not 0 < self.iterative_every < self.steps:
            raise ValueError(
                f"iterative_every must be in 1..steps-1 ({self.steps - 1}), got {self.iterative_every}"
            )


def load_profile(path: str | Path, name: str) -> Profile:
    """The named profile of a YAML file: `defaults` overlaid with `profiles.<name>`."""
    document = yaml.safe_load(Path(path).read_text()) or {}
    profiles = document.get("profiles", {})
    if name not in profiles:
        raise ValueError(f"{path}: no profile {name!r}; it has {', '.join(profiles) or 'none'}")
    values = {**document.get("defaults", {}), **profiles[name]}
    known = set(Profile.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown} in profile {name!r}")
    profile = Profile(**values)
    profile.check()
    return profile


def child_environment() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT")
    }
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Services:
    """The sampler and the reward service every run shares (a line each), stopped (with their
    process groups) on exit. `lines`: named lines each holds (every run keeps its own: a tiny
    policy is a few MB, and no live run's line is evicted for another's)."""

    def __init__(self, policy: Path, prm: Path, log_dir: Path, lines: int = 4):
        self.ports = {"sampler": free_port(), "reward": free_port()}
        self.args = {
            "sampler": ["--model-path", str(policy), "--max-lines", str(lines)],
            "reward": ["--prm-path", str(prm), "--symbolic-workers", "1", "--max-lines", str(lines)],
        }
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def __enter__(self) -> Services:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, port in self.ports.items():
            command = [sys.executable, "-m", "mathforge", "serve", name, "--port", str(port)]
            command += ["--metrics-port", "-1", "--grace-s", "1", *self.args[name]]
            with open(self.log_dir / f"{name}.log", "ab") as log:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=child_environment(),
                        start_new_session=True,
                    )
                )
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_module(
    module: str, arguments: list[str], events_path: Path, progress: Any = None
) -> list[dict[str, Any]]:
    """Runs `python -m module arguments`, appending its JSON events to `events_path` (a resumed run
    adds to them); RuntimeError with the log's tail when it fails."""
    events_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = events_path.with_suffix(".log")
    found: list[dict[str, Any]] = []
    with open(events_path, "a") as events, open(log_path, "a") as log:
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
                if not line.startswith("{"):
                    continue
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                found.append(event)
                events.write(line if line.endswith("\n") else line + "\n")
                events.flush()
                if progress is not None and event.get("event") == "step":
                    progress.n = int(event.get("step", progress.n))
                    progress.refresh()
            code = process.wait()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(
            f"{module} {' '.join(arguments[:3])}... exited with {code}; log {log_path}:\n{tail}"
        )
    return found


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@dataclass
class Experiment:
    """One experiment directory and the profile it runs."""

    profile: Profile
    out: Path
    repo: Path = Path(".")
    bars: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sft(self) -> Path:
        return self.out / "sft" / "final"

    @property
    def prm(self) -> Path:
        return self.out / "prm" / "final"

    def run_dir(self, method: str, seed: int) -> Path:
        return self.out / "runs" / self.line(method, seed)

    @staticmethod
    def line(method: str, seed: int) -> str:
        """The run's line in the shared services (and its directory's name)."""
        return f"{method}-seed{seed}"

    def plan(self) -> list[tuple[str, int]]:
        return [(m, s) for s in self.profile.seeds for m in self.profile.methods]

    def services(self) -> Services:
        """The shared sampler (serving the SFT policy on its default line) and reward service (the
        PRM), with a line for every run and every k-eval policy."""
        lines = len(self.plan()) + len(self.k_models())
        return Services(self.sft, self.prm, self.out / "services", lines=lines)

    def prepare(self) -> None:
        """The SFT policy and the PRM, each trained once."""
        p = self.profile
        if not (self.sft / "config.json").is_file():
            arguments = ["--config", str(self.repo / "configs/tiny/sft.yaml"), f"out_dir={self.sft.parent}"]
            run_module(
                "mathforge.training.sft",
                [*arguments, "metrics.progress_bar=off", *p.sft],
                self.out / "sft" / "events.jsonl",
            )
        if not (self.prm / "config.json").is_file():
            config = self.prm_config()
            arguments = ["--config", str(config), f"out_dir={self.prm.parent}", "metrics.progress_bar=off"]
            run_module("mathforge.reward.train", arguments, self.out / "prm" / "events.jsonl")

    def prm_config(self) -> Path:
        """The PRM's reward-training config with the profile's overrides, written out so that the
        iterative run's retraining (and its replay of the PRM's original set) reads the same."""
        from mathforge.reward.train_config import RewardTrainConfig
        from mathforge.training.config import dump_config, load_config

        path = self.out / "prm" / "config.yaml"
        if not path.is_file():
            base = str(self.repo / "configs/tiny/reward-prm.yaml")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(
                path, dump_config(load_config(RewardTrainConfig, ["--config", base, *self.profile.prm]))
            )
        return path

    def trainer_arguments(self, method: str, seed: int, services: Services) -> list[str]:
        p = self.profile
        arguments = [
            "--config",
            str(self.repo / "configs/tiny/grpo.yaml"),
            f"seed={seed}",
            f"model.init_from={self.sft}",
            f"out_dir={self.run_dir(method, seed)}",
            f"batch.steps={p.steps}",
            f"eval.every={p.eval_every}",
            f"eval.problems={p.eval_problems}",
            f"checkpoint.every={p.eval_every}",
            f"services.sampler={services.target('sampler')}",
            f"services.reward={services.target('reward')}",
            f"services.policy_line={self.line(method, seed)}",
            "metrics.progress_bar=off",
            *p.grpo,
            *METHODS[method],
        ]
        if method == "iterative_grpo":
            arguments += [
                f"iterative.every={p.iterative_every}",
                f"iterative.reward_model_init={self.prm}",
                f"iterative.reward_model_config={self.prm_config()}",
            ]
        return arguments

    def run_one(self, method: str, seed: int, position: int, services: Services) -> None:
        run = self.run_dir(method, seed)
        if (run / "final" / "config.json").is_file():
            return
        bar = None
        if self.bars:
            from tqdm import tqdm

            with self.lock:
                bar = tqdm(
                    total=self.profile.steps, desc=f"{method} seed {seed}", position=position, leave=True
                )
        try:
            run_module(
                "mathforge.training.grpo",
                self.trainer_arguments(method, seed, services),
                run / "events.jsonl",
                bar,
            )
        finally:
            if bar is not None:
                bar.close()

    def run_all(self, services: Services) -> None:
        plan = self.plan()
        with ThreadPoolExecutor(max_workers=self.profile.concurrency) as pool:
            futures = [pool.submit(self.run_one, m, s, i, services) for i, (m, s) in enumerate(plan)]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(plan)} runs failed; the first: {failed[0]}")

    def k_models(self) -> dict[str, Path]:
        models = {"sft": self.sft}
        if "grpo_outcome" in self.profile.methods:
            models.update(
                {f"rl-seed{s}": self.run_dir("grpo_outcome", s) / "final" for s in self.profile.seeds}
            )
        return models

    def k_eval(self, services: Services) -> dict[str, dict[str, float]]:
        """maj@k and pass@k of each model, cached per model under <out>/k-eval/: the SFT policy on
        the shared sampler's default line, every other on a line `k-<name>`."""
        from mathforge.experiments.k_eval import sample_and_grade

        found = {}
        for name, model in self.k_models().items():
            cache = self.out / "k-eval" / f"{name}.json"
            if not cache.is_file():
                p = self.profile
                line = "" if model == self.sft else f"k-{name}"
                metrics = sample_and_grade(
                    services.target("sampler"), model, p.k_problems, p.k_max, p.k_temperature, line=line
                )
                cache.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(cache, json.dumps(metrics, indent=1))
            found[name] = json.loads(cache.read_text())
        return found
