"""The shared `mathforge data` and `mathforge eval` command groups, created once and filled by the
subsystems that register commands under them (classifier, dedup, evaluator)."""

from __future__ import annotations

import argparse

_HELP = {
    "data": "corpus jobs: recall, score, dedup, decontaminate",
    "eval": "evaluation: metrics over sample files, benchmark runs against a sampler",
    "submit": "build and submit training jobs to a cluster (PyTorchJob)",
}


def group(sub: argparse._SubParsersAction, name: str) -> argparse._SubParsersAction:
    """Returns the subparsers of command group `name` (data, eval, submit), creating it once.

    The group is looked up on the parser itself, so every fresh parser gets fresh groups."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=_HELP[name])
        return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise ValueError(f"command {name!r} exists but is not a command group")


def data_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    return group(sub, "data")
