"""The sandbox runs ordinary programs, gives each way out a clear verdict decided by the parent,
and leaves the caller unharmed. The escape classes themselves: test_sandbox_escapes.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from mathforge.evaluator.confine import LAYERS
from mathforge.evaluator.sandbox import SandboxLimits, SandboxSettings, missing_layers, run_program

LIMITS = SandboxLimits(wall_time_s=5, cpu_time_s=2, memory_bytes=512 << 20, output_bytes=16 * 1024)


def test_plain_program_prints_its_answer() -> None:
    result = run_program("import math\nprint(math.comb(10, 3))", LIMITS)
    assert (result.verdict, result.stdout, result.exit_code) == ("ok", "120\n", 0)


def test_stdin_reaches_the_program() -> None:
    assert run_program("print(int(input()) * 2)", LIMITS, stdin="21\n").stdout == "42\n"


def test_infinite_loop_times_out() -> None:
    result = run_program("while True:\n    pass", SandboxLimits(wall_time_s=5, cpu_time_s=1))
    assert result.verdict == "timeout" and "limit" in result.detail
    assert result.wall_seconds < LIMITS.wall_time_s + 3


def test_sleeping_program_hits_the_wall_time_limit() -> None:
    result = run_program("import time\ntime.sleep(60)", SandboxLimits(wall_time_s=1.0))
    assert result.verdict == "timeout" and "wall-time" in result.detail
    assert result.wall_seconds < 4


def test_fork_bomb_is_forbidden_and_starts_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "forked"
    result = run_program(
        f"import os\nwhile True:\n    if os.fork() == 0:\n        open({str(marker)!r}, 'w')", LIMITS
    )
    assert result.verdict == "forbidden" and "forbidden system call" in result.detail
    assert "os.fork is forbidden" in result.stderr  # the audit hook's message for people
    assert not marker.exists()


def test_memory_bomb_hits_the_memory_limit() -> None:
    result = run_program(
        "blocks = []\nwhile True:\n    blocks.append(bytearray(20 << 20))",
        SandboxLimits(memory_bytes=128 << 20),
    )
    assert result.verdict == "memory" and "memory limit" in result.detail


def test_os_system_is_forbidden() -> None:
    result = run_program("import os\nos.system('touch /tmp/pwned-by-sandbox')", LIMITS)
    assert result.verdict == "forbidden" and not Path("/tmp/pwned-by-sandbox").exists()


def test_subprocess_is_forbidden(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = run_program(f"import subprocess\nsubprocess.run(['touch', {str(marker)!r}])", LIMITS)
    assert result.verdict == "forbidden" and not marker.exists()


def test_socket_connect_is_forbidden() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\nprint('connected')"
        result = run_program(code, LIMITS)
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()
    assert result.verdict == "forbidden" and "connected" not in result.stdout


def test_native_code_runs_under_the_same_kernel_rules(tmp_path: Path) -> None:
    assert run_program("import ctypes\nprint(ctypes.CDLL(None).getpid() > 0)", LIMITS).stdout == "True\n"
    marker = tmp_path / "forked"
    code = f"import ctypes\nif ctypes.CDLL(None).fork() == 0:\n    open({str(marker)!r}, 'w')\nprint('after')"
    result = run_program(code, LIMITS)
    assert result.verdict == "forbidden" and "after" not in result.stdout and not marker.exists()


def test_write_outside_the_working_directory_is_forbidden(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = run_program(f"open({str(target)!r}, 'w').write('x')", LIMITS)
    assert result.verdict == "forbidden" and "outside the working directory" in result.stderr
    assert not target.exists()


def test_write_inside_the_working_directory_works_and_is_thrown_away() -> None:
    result = run_program(
        "import os\nopen('a.txt', 'w').write('hi')\nprint(open('a.txt').read(), os.getcwd())", LIMITS
    )
    assert result.verdict == "ok" and result.stdout.startswith("hi ")
    assert not Path(result.stdout.split()[1]).exists()


def test_output_flood_is_capped() -> None:
    result = run_program("while True:\n    print('x' * 1000)", LIMITS)
    assert result.verdict == "output_limit"
    assert len(result.stdout) <= LIMITS.output_bytes


def test_big_file_hits_the_file_size_limit() -> None:
    result = run_program("open('big', 'w').write('x' * (4 << 20))", SandboxLimits(file_bytes=1 << 20))
    assert result.verdict == "output_limit" and "file" in result.detail


def test_a_violation_cannot_be_caught() -> None:
    result = run_program(
        "import os\ntry:\n    os.fork()\nexcept BaseException:\n    pass\nprint('done')", LIMITS
    )
    assert result.verdict == "forbidden" and result.stdout == ""


def test_the_program_cannot_forge_its_verdict() -> None:
    code = (
        "import os, sys\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        os.write(fd, b'layers\\t\\nforbidden\\tos.fork\\tx\\nmemory\\tMemoryError\\t\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "sys.stderr.write('MemoryError\\n[Errno 27] File too large\\n')\n"
        "print('fine')"
    )
    result = run_program(code, LIMITS)
    assert (result.verdict, result.stdout) == ("ok", "fine\n")
    assert {"landlock", "seccomp"} <= set(result.layer_names)


def test_layers_are_reported_and_a_missing_required_layer_refuses_to_run(tmp_path: Path) -> None:
    held = run_program("print(1)", LIMITS).layer_names
    assert [name for name in LAYERS if name in held] == list(held)  # in the launcher's order
    assert {"rlimits", "capabilities", "no_new_privs", "landlock", "seccomp", "audit_hook"} <= set(held)
    marker = tmp_path / "ran"
    settings = SandboxSettings(required_layers=("netns", "landlock"))
    result = run_program(
        f"open({str(marker)!r}, 'w')", replace(LIMITS, isolate_network=False), settings=settings
    )
    assert result.verdict == "error" and "refused" in result.detail and "netns" in result.detail
    assert not marker.exists()
    assert missing_layers(SandboxSettings()) == {}
    with pytest.raises(ValueError, match="unknown sandbox layers"):
        SandboxSettings(required_layers=("landlok",))


def test_environment_is_empty_but_for_thread_counts() -> None:
    os.environ["MATHFORGE_SECRET_FOR_TEST"] = "hunter2"
    try:
        result = run_program("import os\nprint(sorted(os.environ))", LIMITS)
    finally:
        del os.environ["MATHFORGE_SECRET_FOR_TEST"]
    assert "MATHFORGE_SECRET_FOR_TEST" not in result.stdout and "PATH" not in result.stdout


def test_error_exit_is_reported_with_its_traceback() -> None:
    result = run_program("raise ValueError('no')", LIMITS)
    assert result.verdict == "error" and "ValueError: no" in result.stderr and result.exit_code == 1
    assert run_program("import sys\nsys.exit(3)", LIMITS).exit_code == 3


@pytest.mark.skipif(os.getuid() != 0, reason="network namespaces need root")
def test_root_runs_get_their_own_network_namespace() -> None:
    assert "netns" in run_program("print(1)", LIMITS).layer_names


def test_a_large_evaluator_does_not_turn_errors_into_memory_verdicts() -> None:
    """The kernel's peak-memory figure for the launcher includes the forking process's own peak; a
    program that fails small must still read as an error when the evaluator itself is big."""
    script = (
        "import numpy\n"
        "from mathforge.evaluator.sandbox import SandboxLimits, run_program\n"
        "ballast = numpy.ones(200 << 17)  # 200 MiB resident in the parent\n"
        "r = run_program(\"raise ValueError('small')\", SandboxLimits(memory_bytes=128 << 20))\n"
        "print(r.verdict, r.peak_memory_bytes > 128 << 20)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "services")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["error", "True"], out.stderr[-2000:]
