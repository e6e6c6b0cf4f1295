"""Each sandbox escape gets a clear verdict and leaves the caller unharmed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from mathforge.evaluator.sandbox import SandboxLimits, run_program

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


def test_fork_bomb_is_forbidden() -> None:
    result = run_program("import os\nwhile True:\n    os.fork()", LIMITS)
    assert result.verdict == "forbidden" and "os.fork" in result.detail


def test_memory_bomb_hits_the_memory_limit() -> None:
    result = run_program(
        "blocks = []\nwhile True:\n    blocks.append(bytearray(20 << 20))",
        SandboxLimits(memory_bytes=128 << 20),
    )
    assert result.verdict == "memory" and "memory limit" in result.detail


def test_os_system_is_forbidden() -> None:
    result = run_program("import os\nos.system('touch /tmp/pwned-by-sandbox')", LIMITS)
    assert result.verdict == "forbidden" and "os.system" in result.detail
    assert not Path("/tmp/pwned-by-sandbox").exists()


def test_subprocess_is_forbidden() -> None:
    result = run_program("import subprocess\nsubprocess.run(['true'])", LIMITS)
    assert result.verdict == "forbidden" and "subprocess.Popen" in result.detail


def test_socket_connect_is_forbidden() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\nprint('connected')"
        result = run_program(code, LIMITS)
    assert result.verdict == "forbidden" and "socket" in result.detail
    assert "connected" not in result.stdout


def test_native_code_is_forbidden() -> None:
    result = run_program("import ctypes\nctypes.CDLL(None).getpid()", LIMITS)
    assert result.verdict == "forbidden" and "ctypes" in result.detail


def test_write_outside_the_working_directory_is_forbidden(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = run_program(f"open({str(target)!r}, 'w').write('x')", LIMITS)
    assert result.verdict == "forbidden" and "outside the working directory" in result.detail
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


def test_caught_violation_is_still_reported() -> None:
    result = run_program("import os\ntry:\n    os.fork()\nexcept OSError:\n    pass\nprint('done')", LIMITS)
    assert result.verdict == "forbidden" and result.stdout == "done\n"


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
    assert run_program("print(1)", LIMITS).network == "namespace"
