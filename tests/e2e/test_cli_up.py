"""`mathforge up` starts every service as a child process, `status` sees them ready, and one
Ctrl-C (SIGINT) stops them all cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mathforge.runtime.registry import SERVICES

OFFSET = 1700  # away from the default ports, so a running local stack does not interfere


def _mathforge(*args: str, **kwargs) -> subprocess.Popen[str]:
    env = {**os.environ, "MATHFORGE_LOG_FORMAT": "json"}
    return subprocess.Popen([sys.executable, "-m", "mathforge", *args], text=True, env=env, **kwargs)


@pytest.mark.slow
def test_up_starts_all_five_status_sees_them_and_sigint_stops_them(tmp_path):
    up = _mathforge(
        "up",
        "--port-offset",
        str(OFFSET),
        "--log-dir",
        str(tmp_path),
        "--grace-s",
        "3",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert up.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("all ready"):
            break
    else:
        up.kill()
        pytest.fail("mathforge up did not report ready:\n" + "".join(lines))
    assert lines[-1].startswith("all ready"), "".join(lines)
    for name, spec in SERVICES.items():
        row = next(line for line in lines if line.startswith(name))
        assert f"127.0.0.1:{spec.port + OFFSET}" in row and row.rstrip().endswith("SERVING")

    status = _mathforge("status", "--port-offset", str(OFFSET), stdout=subprocess.PIPE)
    out, _ = status.communicate(timeout=60)
    assert status.returncode == 0, out
    assert out.count("SERVING") == len(SERVICES)

    up.send_signal(signal.SIGINT)
    rest, _ = up.communicate(timeout=60)
    assert up.returncode == 0, rest
    assert "stopped: " + ", ".join(f"{name}=0" for name in SERVICES) in rest

    after = _mathforge("status", "--port-offset", str(OFFSET), stdout=subprocess.PIPE)
    out, _ = after.communicate(timeout=60)
    assert after.returncode == 1 and "SERVING" not in out.replace("NOT_SERVING", "")
