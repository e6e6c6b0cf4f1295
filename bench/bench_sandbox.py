"""Sandbox benchmark: latency of one RunProgram run (start, confine, run, verdict, clean up) with the
kernel-confined sandbox against the previous design on the same programs in the same run.

    .venv/bin/python bench/bench_sandbox.py                  # 20 runs of each program, each design
    .venv/bin/python bench/bench_sandbox.py --runs 5

The previous design is rebuilt here as it was: `python -I` on a launcher that set rlimits,
entered a network namespace as root, installed an audit hook and executed the program, with a
parent reading stdout, stderr and a report pipe. Runs alternate between the designs so that load
changes hit both alike; the per-program medians are compared. Target: new <= 1.5x previous.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mathforge.evaluator.sandbox import CHILD_ENV, SandboxLimits, run_program

PROGRAMS = {
    "print": "print(6 * 7)",
    "math": "import math\nprint(math.comb(30, 12), math.gcd(462, 1071), math.isqrt(10**12))",
    "fractions": "from fractions import Fraction\nprint(sum(Fraction(1, k) for k in range(1, 40)))",
    "sympy": "import sympy\nx = sympy.symbols('x')\nprint(sympy.solve(x**2 - 5*x + 6, x))",
}

# The previous launcher, as it ran before the kernel layers: limits, a network namespace when
# root, an audit hook refusing process creation, sockets, ctypes and writes outside the directory.
PREVIOUS_LAUNCHER = r"""
import json, os, resource, sys, traceback
config = json.loads(sys.argv[1])
report = os.fdopen(config["report_fd"], "w", buffering=1)
network = "audit-hook"
try:
    import ctypes
    if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0:
        network = "namespace"
except OSError:
    pass
for which, value in ((resource.RLIMIT_CPU, (5, 6)), (resource.RLIMIT_AS, (1 << 30,) * 2),
                     (resource.RLIMIT_FSIZE, (1 << 20,) * 2), (resource.RLIMIT_NOFILE, (64, 64)),
                     (resource.RLIMIT_NPROC, (16, 16)), (resource.RLIMIT_CORE, (0, 0))):
    resource.setrlimit(which, value)
workdir = os.path.realpath(os.getcwd())
code = open("main.py", encoding="utf-8").read()
report.write(f"network\t{network}\t\n")
busy = [False]
EVENTS = {"os.system", "os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn", "subprocess.Popen",
          "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit"}
def hook(event, args):
    if busy[0]:
        return
    busy[0] = True
    try:
        if event in EVENTS or event.startswith("socket.") or event.startswith("ctypes."):
            report.write(f"forbidden\t{event}\t\n")
            raise PermissionError(event)
        mode = args[1] if event == "open" and len(args) >= 3 else None
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            real = os.path.realpath(os.fsdecode(args[0]))
            if not real.startswith(workdir + os.sep):
                raise PermissionError(event)
    finally:
        busy[0] = False
sys.addaudithook(hook)
sys.argv = ["main.py"]
sys.path[0] = workdir
try:
    exec(compile(code, "main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
except BaseException:
    traceback.print_exc()
    os._exit(1)
sys.stdout.flush()
"""


def run_previous(code: str, launcher: Path) -> tuple[str, float]:
    """One run the previous way: throwaway directory, launcher, output read under the wall limit."""
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="mathforge-sandbox-previous-"))
    (workdir / "main.py").write_text(code)
    report_read, report_write = os.pipe()
    config = {"report_fd": report_write}
    child = subprocess.Popen(
        [sys.executable, "-I", str(launcher), json.dumps(config)],
        cwd=workdir,
        env=dict(CHILD_ENV),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(report_write,),
        start_new_session=True,
    )
    os.close(report_write)
    stdout, _ = child.communicate(timeout=30)
    os.read(report_read, 65536)
    os.close(report_read)
    shutil.rmtree(workdir, ignore_errors=True)
    return stdout.decode(), time.perf_counter() - started


def run_new(code: str) -> tuple[str, float]:
    started = time.perf_counter()
    result = run_program(code, SandboxLimits(wall_time_s=30))
    assert result.verdict == "ok", (result.detail, result.stderr[-500:])
    return result.stdout, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each program in each design")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        launcher = Path(scratch) / "previous_launcher.py"
        launcher.write_text(PREVIOUS_LAUNCHER)
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(f"load average: {load}; {args.runs} runs per program and design")
        layers = run_program("pass").layers
        print(f"new design's layers here: {', '.join(layers)}")
        ratios = []
        print(f"{'program':<10} {'previous ms':>12} {'new ms':>10} {'new/previous':>13}")
        for name, code in PROGRAMS.items():
            previous, new = [], []
            for _ in range(args.runs):  # alternate, so load changes hit both designs
                out_previous, seconds = run_previous(code, launcher)
                previous.append(seconds)
                out_new, seconds = run_new(code)
                new.append(seconds)
                assert out_previous == out_new, (out_previous, out_new)
            ratio = statistics.median(new) / statistics.median(previous)
            ratios.append(ratio)
            before, after = statistics.median(previous) * 1e3, statistics.median(new) * 1e3
            print(f"{name:<10} {before:>12.1f} {after:>10.1f} {ratio:>12.2f}x")
    overall = statistics.geometric_mean(ratios)
    print(
        f"sandbox latency, new / previous (geometric mean of per-program medians): {overall:.2f}x "
        "(target <= 1.5x)"
    )


if __name__ == "__main__":
    main()
