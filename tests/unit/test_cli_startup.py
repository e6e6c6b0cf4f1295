"""`mathforge` builds every command's parser on each run: building them must not import torch or
transformers (seconds of start-up for `grade`, `status`, `--help`), only running a command that
needs them does; nor must `mathforge up`'s check of which services are installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import contextlib, io, json, sys
from mathforge.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    for argv in (["--version"], ["--help"], ["checkpoint", "export", "--help"], ["submit", "grpo", "--help"]):
        try:
            main(argv)
        except SystemExit:
            pass
from mathforge.runtime.supervisor import available_services
assert len(available_services()) == 5  # what `mathforge up` asks before starting the services
print(json.dumps(sorted(m for m in ("torch", "transformers", "deepspeed") if m in sys.modules)))
"""


def test_building_the_command_line_imports_no_deep_learning_library():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "services"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []
