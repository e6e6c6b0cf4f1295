"""The `mathforge checkpoint export` parser (training/export.py does the work). It imports nothing
heavy: every `mathforge` command builds all parsers, and torch alone takes seconds to import.
"""

from __future__ import annotations

import argparse


def _export(args: argparse.Namespace) -> int:
    from mathforge.training.export import export_checkpoint

    out = export_checkpoint(args.source, args.output, args.dtype, int(args.max_shard_gb * (1 << 30)))
    print(f"exported {args.source} to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    checkpoint = sub.add_parser("checkpoint", help="training checkpoints: export for serving")
    commands = checkpoint.add_subparsers(dest="checkpoint_command", metavar="COMMAND", required=True)
    export = commands.add_parser(
        "export", help="write a Hugging Face directory (safetensors shards, config, tokenizer)"
    )
    export.add_argument(
        "source", help="a run directory (newest intact step), a step-<n> or a model directory"
    )
    export.add_argument("--output", required=True, help="the directory to write (replaced atomically)")
    export.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the model's)")
    export.add_argument("--max-shard-gb", type=float, default=5.0, help="largest safetensors file, in GiB")
    export.set_defaults(handler=lambda args, rest: _export(args))
