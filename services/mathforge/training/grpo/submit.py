"""`mathforge submit grpo --config FILE [key=value ...] [--dry-run]`: the GRPO trainer as a PyTorchJob.

The objects come from the training stages' job builder (training/jobs.py) with the GRPO entrypoint;
the pods are labelled `app.kubernetes.io/component: grpo-trainer`, the label the Helm chart's
NetworkPolicy admits to the sampler and reward services. k8s/training/grpo.yaml is the --dry-run
output for configs/paper-7b/grpo.yaml (a test keeps them equal).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mathforge.data_cli import group
from mathforge.training.config import ConfigError, load_config
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.jobs import job_manifests, manifests_yaml
from mathforge.training.submit import create_in_cluster, dry_run_header

STAGE = "grpo"
MODULE = "mathforge.training.grpo"
COMPONENT = "grpo-trainer"


def _label_component(node: Any) -> None:
    """Sets every `app.kubernetes.io/component` label in the objects to the trainer's component."""
    if isinstance(node, dict):
        labels = node.get("labels")
        if isinstance(labels, dict) and "app.kubernetes.io/component" in labels:
            labels["app.kubernetes.io/component"] = COMPONENT
        for value in node.values():
            _label_component(value)
    elif isinstance(node, list):
        for value in node:
            _label_component(value)


def render(config_path: str, overrides: list[str]) -> tuple[list[dict[str, Any]], str]:
    """The ConfigMap and PyTorchJob for a GRPO config, and their YAML as --dry-run prints it."""
    config = load_config(GrpoConfig, ["--config", config_path, *overrides])
    objects = job_manifests(STAGE, config, module=MODULE)
    _label_component(objects)
    return objects, manifests_yaml(objects, dry_run_header(STAGE, config_path, overrides))


def _submit(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        objects, text = render(args.config, args.overrides)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"mathforge submit grpo: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        sys.stdout.write(text)
        return 0
    try:
        name = create_in_cluster(objects, args.kubeconfig, args.context)
    except Exception as exc:  # the clients raise many types: config, HTTP, timeouts
        print(f"mathforge submit grpo: could not create the job: {exc}", file=sys.stderr)
        return 1
    namespace = objects[1]["metadata"]["namespace"]
    print(f"created PyTorchJob {namespace}/{name}; watch: kubectl -n {namespace} get pytorchjob {name}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = group(sub, "submit").add_parser(STAGE, help="run the GRPO trainer as a Kubeflow PyTorchJob")
    parser.add_argument("--config", required=True, help="GRPO config YAML (configs/*/grpo.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. rollout.group_size=16")
    parser.add_argument("--dry-run", action="store_true", help="print the manifests instead of submitting")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster or ~/.kube)")
    parser.add_argument("--context", default=None, help="kubeconfig context")
    parser.set_defaults(handler=_submit)
