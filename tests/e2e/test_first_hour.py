"""What a newcomer meets first: commands that fail say what is wrong in one line and exit non-zero,
help works everywhere, and nothing the user can read points outside the repository."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mathforge.runtime.registry import SERVICES

REPO = Path(__file__).resolve().parents[2]


def _mathforge(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mathforge", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=REPO,
    )


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_serve_help_lists_the_services():
    proc = _mathforge("serve", "--help")
    assert proc.returncode == 0, proc.stderr
    for name in SERVICES:
        assert name in proc.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--config", "/no/such/config.yaml"], {}, "/no/such/config.yaml: No such file or directory"),
        ([], {"MATHFORGE_PORT": "fifty"}, "config field 'port': not an integer: 'fifty'"),
        (["--config", "{bad_yaml}"], {}, "unknown config field 'bogus_key'"),
        # a mistyped flag: the message and where the flags are listed, not a 50-line usage block
        (["--prot", "5"], {}, "unrecognized arguments: --prot 5 (`mathforge serve evaluator --help`"),
    ],
)
def test_serve_with_a_bad_config_is_one_line_and_exit_2(tmp_path, args, env, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: 5\nbogus_key: 1\n")
    args = [str(bad) if a == "{bad_yaml}" else a for a in args]
    proc = _mathforge("serve", "evaluator", *args, env=env)
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert line.startswith("mathforge serve evaluator: ") and expected in line


def test_demo_is_a_command():
    proc = _mathforge("demo", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout


@pytest.mark.slow
def test_up_refuses_ports_held_by_another_process(tmp_path):
    offset = 1900
    spec = SERVICES["evaluator"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", spec.port + offset))
        holder.listen()
        proc = _mathforge(
            "up", "--services", "evaluator", "--port-offset", str(offset), "--log-dir", str(tmp_path)
        )
    assert proc.returncode == 1
    line = _one_line_error(proc)
    assert f"port {spec.port + offset} (evaluator gRPC) is in use" in line and "--port-offset" in line
    assert not (tmp_path / "evaluator.log").exists(), "no child may start when a port is taken"


def test_nothing_a_user_reads_points_outside_the_repository():
    """README, docs, the package (code, help, configs) and the chart cite the paper or our own docs,
    never the developers' notes beside the checkout."""
    roots = ["README.md", "docs", "services", "configs", "helm", "k8s", "scripts", "Makefile", "images"]
    pattern = re.compile(r"PAPER\.md|\.\./shared|/work/shared")
    offenders = []
    for root in roots:
        path = REPO / root
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            if file.suffix in {".pyc", ".bin", ".safetensors"}:
                continue
            try:
                text = file.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            offenders += [
                f"{file.relative_to(REPO)}:{n}"
                for n, line in enumerate(text.splitlines(), 1)
                if pattern.search(line)
            ]
    assert not offenders, offenders


def _grpo_without_services(tmp_path: Path, *overrides: str) -> tuple[list[str], int]:
    """The GRPO command line for a tiny policy and a port nothing listens on, and that port."""
    from mathforge.models.checkpoint import save_model
    from mathforge.models.presets import build_model
    from mathforge.models.tokenizer import default_tokenizer

    tokenizer = default_tokenizer()
    ids = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    policy = save_model(build_model("tiny", len(tokenizer), **ids), tokenizer, tmp_path / "policy")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    argv = [
        sys.executable,
        "-m",
        "mathforge.training.grpo",
        "--config",
        "configs/tiny/grpo.yaml",
        f"model.init_from={policy}",
        f"out_dir={tmp_path / 'run'}",
        f"services.sampler=127.0.0.1:{port}",
        f"services.reward=127.0.0.1:{port}",
        "metrics.progress_bar=off",
        *overrides,
    ]
    return argv, port


@pytest.mark.slow
def test_grpo_without_its_services_says_what_it_waits_for_and_how_to_start_them(tmp_path):
    argv, port = _grpo_without_services(
        tmp_path,
        "services.ready_timeout_s=3",  # bounds the wait: the retry budget of work is longer
        "services.retry_budget_s=120",
    )
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "services")},
    )
    assert proc.returncode == 1
    assert f"waiting for the sampler at 127.0.0.1:{port}" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("grpo: ") and "mathforge up" in last and "Traceback" not in proc.stderr
    waited = int(re.search(r"could take work for (\d+)s", last).group(1))
    assert waited <= 10, last  # services.ready_timeout_s (3 s), not services.retry_budget_s
    assert "none answered its health check" in last, last


@pytest.mark.slow
def test_ctrl_c_while_grpo_waits_for_its_services_stops_at_once(tmp_path):
    argv, _ = _grpo_without_services(tmp_path, "services.ready_timeout_s=600")
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "services")},
    )
    try:
        seen = []
        for line in proc.stderr:  # up to the wait (the model loads first)
            seen.append(line)
            if "waiting for the sampler" in line:
                break
        assert seen and "waiting for the sampler" in seen[-1], "".join(seen)
        proc.send_signal(signal.SIGINT)
        stopped_at = time.monotonic()
        code = proc.wait(timeout=60)  # its last lines are short: they fit the pipe's buffer
        took = time.monotonic() - stopped_at
        rest = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    lines = [line for line in rest.splitlines() if line.strip()]
    assert code == 128 + signal.SIGINT, rest
    expected = "grpo: interrupted at step 0; rerun the same command to start again (no checkpoint yet)"
    assert lines[-1] == expected, rest
    assert "Traceback" not in rest
    assert took < 30, f"stopped {took:.1f} s after Ctrl-C, not at once (the wait was 600 s)"
