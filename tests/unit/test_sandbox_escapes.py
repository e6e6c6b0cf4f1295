"""Every escape class in sandbox_escape_cases.py, run by an evaluator-like driver process as root
and as an unprivileged user, checked from outside: the secret is not in the output, the victim
file is unchanged, the decoy process lives, no process of the run is left, the memory, CPU, disk
and output stayed bounded. Each case also shows the mark of the layer that stopped it (SIGSYS and
no hook message: the seccomp filter; EACCES: Landlock; ...), so a layer that silently stops
holding fails here even when another one still catches the case."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mathforge
import pytest
from mathforge.evaluator.confine.syscalls import TABLES, machine
from mathforge.evaluator.sandbox import SandboxLimits, SandboxSettings, _world_readable, run_program

from tests.unit.sandbox_escape_cases import BY_NAME, CASES

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).with_name("sandbox_escape_cases.py")
SERVICES = Path(mathforge.__file__).resolve().parents[1]
NOBODY = 65534
# What no case may ever print: /etc/passwd's first line and the lane's planted secrets.
PASSWD_LINE = "root:x:0:0"
POT_PROGRAMS = {
    "pot_fractions": "from fractions import Fraction\nprint(Fraction(3, 4) + Fraction(1, 8))",
    "pot_math": "import math\nprint(math.comb(10, 3), math.isqrt(99))",
    "pot_sympy": "import sympy\nx = sympy.symbols('x')\nprint(sympy.solve(x**2 - 4, x))",
}


class Lane:
    """One run of every case: its targets, the driver's results, and the processes to clean up."""

    def __init__(self, name: str, uid: int, python: str) -> None:
        self.name, self.uid, self.python = name, uid, python
        self.base = Path(tempfile.mkdtemp(prefix=f"mathforge-escapes-{name}-"))
        self.base.chmod(0o755)
        self.secrets = {"project": uuid.uuid4().hex, "token": uuid.uuid4().hex, "env": uuid.uuid4().hex}
        self.secrets["other_run"] = uuid.uuid4().hex
        self.decoys: dict[str, subprocess.Popen[bytes]] = {}
        self.listeners: dict[str, socket.socket] = {}
        self.targets: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.victims: dict[str, tuple[str, int, int]] = {}
        self.died = ""

    def _dir(self, name: str, mode: int) -> Path:
        path = self.base / name
        path.mkdir()
        os.chown(path, self.uid, self.uid) if os.getuid() == 0 else None
        path.chmod(mode)
        return path

    def prepare(self) -> None:
        project = self._dir("project", 0o755)
        (project / "secret.txt").write_text(self.secrets["project"])
        (project / "secret.txt").chmod(0o644)
        token = self._dir("token", 0o700) / "token"
        token.write_text(self.secrets["token"])
        token.chmod(0o600)
        if os.getuid() == 0:
            os.chown(token, self.uid, self.uid)
        victims, markers, work_root = (
            self._dir("victims", 0o777),
            self._dir("markers", 0o777),
            self._dir("runs", 0o777),
        )
        nrs = {f"nr_{name}": nr for name, nr in TABLES[machine()].items()}
        for case in CASES:
            if case.x86_64_only and machine() != "x86_64":
                continue
            victim_dir = victims / case.name
            victim_dir.mkdir()
            victim = victim_dir / "victim.txt"
            victim.write_text("original")
            victim.chmod(0o666)
            victim_dir.chmod(0o777)
            if os.getuid() == 0:
                os.chown(victim, self.uid, self.uid)
                os.chown(victim_dir, self.uid, self.uid)
            info = victim.stat()
            self.victims[case.name] = ("original", info.st_mode, info.st_mtime_ns)
            targets: dict[str, Any] = dict(
                nrs,
                secret_path=str(project / "secret.txt"),
                secret_dir=str(project),
                token_path=str(token),
                victim=str(victim),
                victim_dir=str(victim_dir),
                victim_name=victim.name,
                marker=str(markers / case.name),
                work_root=str(work_root),
                shm_name=f"mathforge-escape-{uuid.uuid4().hex[:12]}",
                other_run_file="/nonexistent",
                other_run_main="/nonexistent",
            )
            if case.effect == "decoy":
                user = {"user": self.uid, "group": self.uid, "extra_groups": []} if os.getuid() == 0 else {}
                self.decoys[case.name] = subprocess.Popen(["sleep", "120"], **user)  # type: ignore[call-overload]
                targets["decoy"] = self.decoys[case.name].pid
            if case.effect == "tcp":
                listener = socket.create_server(("127.0.0.1", 0))
                listener.setblocking(False)
                self.listeners[case.name] = listener
                targets["tcp_port"] = listener.getsockname()[1]
            if case.effect == "unix":
                path = str(self.base / f"{case.name}.sock")
                listener = socket.socket(socket.AF_UNIX)
                listener.bind(path)
                os.chmod(path, 0o777)
                listener.listen()
                listener.setblocking(False)
                self.listeners[case.name] = listener
                targets["unix_path"] = path
            self.targets[case.name] = targets
        if os.getuid() == 0:
            os.chown(work_root, self.uid, self.uid)

    def run(self) -> None:
        services = SERVICES
        driver = DRIVER
        if self.uid != os.getuid() and not (
            _world_readable(SERVICES / "mathforge") and _world_readable(DRIVER)
        ):
            services = self.base / "services"  # a readable copy for the unprivileged user
            shutil.copytree(SERVICES / "mathforge", services / "mathforge")
            driver = Path(shutil.copy(DRIVER, self.base / DRIVER.name))
            os.system(f"chmod -R a+rX {self.base / 'services'} {driver}")
        library_paths = [p for p in sys.path if p.endswith("site-packages") and _world_readable(Path(p))]
        spec = {
            "cases": self.targets,
            "work_root": self.targets[CASES[0].name]["work_root"],
            "library_paths": library_paths,
            "other_secret": self.secrets["other_run"],
            "programs": POT_PROGRAMS,
        }
        spec_path = self.base / "spec.json"
        spec_path.write_text(json.dumps(spec))
        spec_path.chmod(0o644)
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(services),
            "MATHFORGE_ESCAPE_SECRET": self.secrets["env"],
        }
        user = {"user": self.uid, "group": self.uid, "extra_groups": []} if self.uid != os.getuid() else {}
        done = subprocess.run(  # type: ignore[call-overload]
            [self.python, str(driver), str(spec_path)],
            env=env,
            capture_output=True,
            timeout=300,
            cwd=self.base,
            **user,
        )
        for line in done.stdout.decode().splitlines():
            self.results.update(json.loads(line))
        if done.returncode != 0:  # the evaluator stand-in died: the case after the last result did it
            self.died = (
                f"the evaluator-like driver ended with {done.returncode}: {done.stderr.decode()[-2000:]}"
            )

    def close(self) -> None:
        for decoy in self.decoys.values():
            decoy.kill()
            decoy.wait()
        for listener in self.listeners.values():
            listener.close()
        shutil.rmtree(self.base, ignore_errors=True)


def _unprivileged_python() -> str | None:
    """An interpreter the unprivileged user can execute: ours when readable, else Debian's of the
    same minor version (the development machine's Python lives under /root, mode 0700)."""
    minor = f"python3.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        path = Path(candidate).resolve()
        if path.is_file() and _world_readable(path) and path.stat().st_mode & 0o001:
            return str(path)
    return None


LANES = ["root", "unprivileged"]


@pytest.fixture(scope="module", params=LANES)
def lane(request: pytest.FixtureRequest) -> Iterator[Lane]:
    if request.param == "root":
        if os.getuid() != 0:
            pytest.skip("the root lane needs root; this run is unprivileged and covers the other lane")
        chosen = Lane("root", 0, sys.executable)
    else:
        uid = NOBODY if os.getuid() == 0 else os.getuid()
        python = _unprivileged_python() if os.getuid() == 0 else sys.executable
        if python is None:
            pytest.skip(
                f"no Python {sys.version_info.major}.{sys.version_info.minor} that uid {NOBODY} can run"
            )
        chosen = Lane("unprivileged", uid, python)
    try:
        chosen.prepare()
        chosen.run()
        yield chosen
    finally:
        chosen.close()


def _processes_of_run(workdir: str) -> list[int]:
    """Processes whose command line names this run's directory (the launcher passes its config as
    marshalled hex, so the path appears hex-encoded) or whose working directory is in it."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                cwd = ""
            if workdir.encode().hex().encode() in cmdline or (cwd and cwd.startswith(workdir)):
                found.append(int(entry))
    return found


def test_the_leftover_check_sees_a_running_program(tmp_path: Path) -> None:
    workdirs: list[str] = []
    runner = threading.Thread(
        target=lambda: workdirs.append(
            run_program(
                "import time\ntime.sleep(30)",
                SandboxLimits(wall_time_s=3),
                settings=SandboxSettings(work_root=str(tmp_path)),
            ).workdir
        )
    )
    runner.start()
    deadline = time.monotonic() + 10
    seen: list[int] = []
    while not seen and time.monotonic() < deadline:
        seen = [pid for d in tmp_path.iterdir() for pid in _processes_of_run(str(d))]
        time.sleep(0.05)
    runner.join()
    assert seen and not _processes_of_run(workdirs[0])


def _check_layer(layer: str, result: dict[str, Any]) -> None:
    out, err = result["stdout"], result["stderr"]
    if layer == "seccomp":
        assert result["exit_code"] == -signal.SIGSYS and result["verdict"] == "forbidden", (out, err[-500:])
        assert "is forbidden" not in err  # the kernel, not the audit hook
    elif layer == "audit_hook":
        assert result["exit_code"] == -signal.SIGSYS and "is forbidden" in err
    elif layer == "seccomp_errno":
        assert "DENIED 1\n" in out or "DENIED 38\n" in out, (out, err[-500:])  # EPERM, ENOSYS
    elif layer == "landlock":
        assert "GOT" not in out and "DENIED" in out, (out, err[-500:])


def _check_effect(lane: Lane, name: str, result: dict[str, Any]) -> None:
    case, targets = BY_NAME[name], lane.targets[name]
    out = result["stdout"]
    effect = case.effect
    if effect == "victim":
        victim = Path(targets["victim"])
        content, mode, mtime = lane.victims[name]
        assert victim.read_text() == content and victim.stat().st_mode == mode
        assert victim.stat().st_mtime_ns == mtime
        assert sorted(os.listdir(targets["victim_dir"])) == ["victim.txt"]
    elif effect == "oom_score":
        assert result["oom_score_adj"] == "0"
    elif effect == "marker":
        assert not Path(targets["marker"]).exists()
    elif effect == "after":
        assert "AFTER" not in out
    elif effect == "decoy":
        decoy = lane.decoys[name]
        assert decoy.poll() is None
        state = Path(f"/proc/{decoy.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state not in ("t", "T")
    elif effect == "tcp" or effect == "unix":
        with pytest.raises(BlockingIOError):
            lane.listeners[name].accept()
    elif effect == "shm":
        assert not Path("/dev/shm", targets["shm_name"]).exists()
    elif effect == "memory":  # threads that hit the limit die; whatever survives stays under it
        limit = case.limits["memory_bytes"]
        assert result["verdict"] in ("ok", "memory") and result["peak_memory_bytes"] <= limit
        assert "MemoryError" in result["stderr"] and int(out or 0) * (32 << 20) <= limit
    elif effect == "cpu":
        assert result["verdict"] == "timeout" and "CPU" in result["detail"]
        assert result["cpu_seconds"] <= case.limits["cpu_time_s"] + 1.5
    elif effect == "bounded":
        assert result["verdict"] == "ok" and out.startswith("threads ")
        assert result["peak_memory_bytes"] <= case.limits["memory_bytes"]
    elif effect == "disk":
        assert result["verdict"] == "output_limit", result["detail"]
        assert not Path(result["workdir"]).exists()
    elif effect == "output":
        assert result["verdict"] == "output_limit"
        assert len(out) + len(result["stderr"]) <= 2 * 64 * 1024
    elif effect == "report":
        assert (result["verdict"], out.splitlines()[-1]) == ("ok", "done")
        assert "forged" not in result["layers"] and "seccomp" in ",".join(result["layers"])
        assert result["evaluator_rss_growth_kib"] < 64 * 1024
    elif effect == "wall":
        assert result["verdict"] == "timeout" and result["wall_seconds"] < case.limits["wall_time_s"] + 3
    else:
        assert effect == "secret", effect


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_escape_is_contained(lane: Lane, name: str) -> None:
    if name not in lane.targets:
        pytest.skip(f"{name} needs an x86_64 machine")
    assert name in lane.results, f"{name} never ran: {lane.died}"
    result = lane.results[name]
    seen = result["stdout"] + result["stderr"]
    for secret in [*lane.secrets.values(), PASSWD_LINE]:
        assert secret not in seen, f"{name} leaked {secret!r} ({lane.name})"
    assert not _processes_of_run(result["workdir"]), f"{name} left a process behind"
    _check_effect(lane, name, result)
    _check_layer(BY_NAME[name].layer, result)


def test_every_layer_holds_in_both_lanes(lane: Lane) -> None:
    assert not lane.died
    layers = {layer.split("=")[0] for layer in lane.results["pot_math"]["layers"]}
    assert {"rlimits", "capabilities", "no_new_privs", "landlock", "seccomp", "audit_hook"} <= layers
    assert ("netns" in layers) == (lane.uid == 0)
    assert len({case.name for case in CASES}) == len(CASES) >= 30


def test_program_of_thought_programs_run_in_both_lanes(lane: Lane) -> None:
    assert lane.results["pot_fractions"]["stdout"] == "7/8\n"
    assert lane.results["pot_math"]["stdout"] == "120 9\n"
    sympy_run = lane.results["pot_sympy"]
    if sympy_run["verdict"] != "ok" and "No module named 'sympy'" in sympy_run["stderr"]:
        pytest.skip(f"sympy's site-packages is not readable by uid {lane.uid}")
    assert sympy_run["stdout"] == "[-2, 2]\n", sympy_run["stderr"][-500:]
