"""`mathforge data dedup` on an embedded store another process holds (typically the dedup service of
`mathforge up`, on the same default directory): one line naming the directory, the process holding
it and the flag that gives this run its own index; exit 1, nothing written. With that flag it runs."""

from __future__ import annotations

import json
import subprocess
import sys

from mathforge.cli import main as cli_main

HOLDER = """
import sys
from mathforge.dedup.config import Config
store = Config.from_mapping({"store_path": sys.argv[1]}).open_store()
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


def test_store_in_use_names_path_holder_and_fix(tmp_path, capsys):
    shard = tmp_path / "docs.jsonl"
    shard.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": f"document number {i} " * 20}) + "\n" for i in range(3))
    )
    busy = tmp_path / "shared-index"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(busy), "--holder-marker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        out = tmp_path / "out"
        argv = ["data", "dedup", "--input", str(shard), "--output-dir", str(out)]
        assert cli_main([*argv, "--store-path", str(busy)]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert str(busy) in err and f"process {holder.pid} (" in err and "--holder-marker" in err
        assert "--store-path DIR" in err
        assert not out.exists() or not any(out.iterdir())

        assert cli_main([*argv, "--store-path", str(tmp_path / "own-index")]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["kept"] == 3
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
