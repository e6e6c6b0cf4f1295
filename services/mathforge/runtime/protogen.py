"""Regenerates the committed Python stubs under services/mathforge/v1/ from protos/.

python -m mathforge.runtime.protogen            # write the stubs (make protos)
python -m mathforge.runtime.protogen --check    # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO / "protos"
STUB_DIR = REPO / "services" / "mathforge" / "v1"


def generate(out_root: Path) -> list[Path]:
    """Runs grpc_tools.protoc over every .proto; returns the generated files under out_root."""
    from grpc_tools import protoc  # test/dev dependency only

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "mathforge" / "v1").glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    return sorted((out_root / "mathforge" / "v1").glob("*_pb2*.py*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        if args.check:
            stale = [
                f.name
                for f in fresh
                if not (STUB_DIR / f.name).exists() or not filecmp.cmp(f, STUB_DIR / f.name, shallow=False)
            ]
            extra = {p.name for p in STUB_DIR.glob("*_pb2*.py*")} - {f.name for f in fresh}
            if stale or extra:
                print(f"stale stubs: {sorted(stale + list(extra))}; run `make protos`", file=sys.stderr)
                return 1
            return 0
        STUB_DIR.mkdir(parents=True, exist_ok=True)
        for old in STUB_DIR.glob("*_pb2*.py*"):
            old.unlink()
        for f in fresh:
            shutil.copy(f, STUB_DIR / f.name)
        print(f"wrote {len(fresh)} files to {STUB_DIR.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
