"""The shared `mathforge data` and `mathforge eval` command groups, created once and filled by the
subsystems that register commands under them (classifier, dedup, evaluator)."""

from __future__ import annotations

import argparse

_GROUPS: dict[int, dict[str, argparse._SubParsersAction]] = {}

_HELP = {
    "data": "corpus jobs: recall, score, dedup, decontaminate",
    "eval": "evaluation: metrics over sample files, benchmark runs against a sampler",
    "submit": "build and submit training jobs to a cluster (PyTorchJob)",
}


def group(sub: argparse._SubParsersAction, name: str) -> argparse._SubParsersAction:
    """Returns the subparsers of command group `name` (data, eval, submit), creating it once."""
    groups = _GROUPS.setdefault(id(sub), {})
    if name not in groups:
        parser = sub.add_parser(name, help=_HELP[name])
        groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    return groups[name]


def data_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    return group(sub, "data")
