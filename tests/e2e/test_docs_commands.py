"""Every command block of README.md and docs/*.md marked runnable works from a fresh clone.

A block is marked by an HTML comment on the line before its fence:

    <!-- runnable -->                         run here: cheap (seconds), fixtures, --dry-run
    <!-- not-runnable: needs a GPU cluster -->  reported as skipped with that reason

The repository's committed HEAD is cloned into a temporary directory and each runnable block runs
there with bash (-e -u -o pipefail), the venv's bin directory first on PATH and the clone's own
package on PYTHONPATH; any non-zero exit fails with the block and its output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's bin, where `mathforge` is
MARKED = re.compile(
    r"^<!-- (?:(?P<run>runnable)|not-runnable: (?P<reason>[^>]+?)) -->\n"
    r"```(?P<lang>[a-z]*)\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)
MARKER = re.compile(r"^<!-- (runnable|not-runnable\b.*?) -->$", re.MULTILINE)
BLOCK_TIMEOUT_S = 120

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    ordinal: int  # n-th marked block of its file
    reason: str  # empty for a runnable block
    body: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def marked_blocks(root: Path) -> list[Block]:
    blocks = []
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        for ordinal, match in enumerate(MARKED.finditer(text)):
            blocks.append(
                Block(
                    str(path.relative_to(root)),
                    text.count("\n", 0, match.start()) + 1,
                    ordinal,
                    "" if match["run"] else match["reason"].strip(),
                    match["body"],
                )
            )
    return blocks


def run_block(body: str, cwd: Path, timeout_s: float = BLOCK_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATHFORGE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(cwd / "services")
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", body],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("clone") / "mathforge"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True, timeout=120)
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "-C", str(target), "checkout", "--quiet", head], check=True, timeout=60)
    # The clone's own code runs, not the package the venv was installed from.
    where = run_block("python -c 'import mathforge; print(mathforge.__file__)'", target)
    assert where.returncode == 0 and where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    return target


BLOCKS = marked_blocks(REPO)


def test_every_marker_sits_on_a_fenced_block():
    for path in documents(REPO):
        text = path.read_text(encoding="utf-8")
        markers = len(MARKER.findall(text))
        assert markers == len(MARKED.findall(text)), (
            f"{path.relative_to(REPO)}: a runnable/not-runnable marker is not on the line before a fence"
        )
    assert sum(1 for b in BLOCKS if not b.reason) >= 4
    assert any(b.file == "README.md" and not b.reason for b in BLOCKS)


def test_the_runner_fails_on_a_failing_command(tmp_path):
    (tmp_path / "services").mkdir()
    assert run_block("true\nfalse\necho never", tmp_path).returncode != 0
    assert run_block("false | cat", tmp_path).returncode != 0
    assert run_block("echo $UNSET_VARIABLE_IN_DOCS", tmp_path).returncode != 0
    assert run_block("command -v mathforge", tmp_path).stdout.startswith(str(VENV_BIN))


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_documented_block_runs_from_a_clone(block: Block, clone: Path):
    if block.reason:
        pytest.skip(f"not runnable here: {block.reason}")
    committed = [b for b in marked_blocks(clone) if b.file == block.file and b.ordinal == block.ordinal]
    if not committed or committed[0].body != block.body:
        pytest.fail(f"{block.id}: the block differs from the committed HEAD; commit it first")
    result = run_block(block.body, clone)
    assert result.returncode == 0, (
        f"{block.id} exited {result.returncode}\n--- block\n{block.body}--- stdout\n{result.stdout[-3000:]}"
        f"--- stderr\n{result.stderr[-3000:]}"
    )
