"""The `mathforge` command.

    mathforge serve classifier --port 50051        # one service in the foreground
    mathforge up                                   # every available service, until Ctrl-C
    mathforge status                               # readiness of each service on its default port
    mathforge demo [--quick]                       # the recipe in miniature (what `make demo` runs)
    mathforge --version

Subsystems add their own command groups (grade, eval, data, submit, ...) through a `register(sub)`
function in the modules of COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import mathforge
from mathforge.runtime.logs import configure_logging
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.supervisor import PortInUse, ServiceGroup, available_services, probe

# Modules with a `register(subparsers)` that adds their command groups.
COMMAND_MODULES: list[str] = [
    "mathforge.evaluator.cli",
    "mathforge.dedup.cli",
    "mathforge.classifier.cli",
    "mathforge.training.submit",
    "mathforge.training.grpo.submit",
    "mathforge.reward.cli",
    "mathforge.training.export_cli",
    "mathforge.experiments.cli",
]


def _serve(args: argparse.Namespace, rest: list[str]) -> int:
    import yaml

    from mathforge.runtime.config import ConfigError
    from mathforge.runtime.server import serve_forever

    if args.service is None:
        print(SERVE_HELP)
        return 0 if {"-h", "--help"} & set(rest) else 2
    prog = f"mathforge serve {args.service}"
    module = SERVICES[args.service].load()
    try:
        config = module.Config.from_args(rest, prog=prog)
    except (ConfigError, OSError, yaml.YAMLError) as exc:
        # A bad flag, file or MATHFORGE_* value is the user's to fix: one line, no traceback.
        detail = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else exc
        print(f"{prog}: {' '.join(str(detail).split())}", file=sys.stderr)
        return 2
    return serve_forever(module.create_service(config))


SERVE_HELP = (
    "usage: mathforge serve SERVICE [service flags]\n\n"
    "Runs one service in the foreground until SIGTERM or Ctrl-C.\n"
    f"SERVICE is one of: {', '.join(sorted(SERVICES))}.\n"
    "`mathforge serve SERVICE --help` lists that service's flags, their defaults and the\n"
    "MATHFORGE_* environment variables that set them."
)


def _demo(args: argparse.Namespace, rest: list[str]) -> int:
    from mathforge.demo.__main__ import main as demo_main

    return demo_main(rest)


def _up(args: argparse.Namespace, rest: list[str]) -> int:
    names = args.services.split(",") if args.services else available_services()
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        print(f"unknown services: {', '.join(unknown)}; known: {', '.join(SERVICES)}", file=sys.stderr)
        return 2
    group = ServiceGroup(
        names, log_dir=Path(args.log_dir), grace_s=args.grace_s, port_offset=args.port_offset
    )
    stop = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"starting {', '.join(names)} (logs in {args.log_dir}/)", flush=True)
    try:
        group.start(ready_timeout_s=args.ready_timeout_s)
        print(f"{'service':<11} {'gRPC':<17} {'metrics':<29} status")
        for name, child in group.children.items():
            metrics = f"http://127.0.0.1:{child.metrics_port}/metrics"
            print(f"{name:<11} {child.target:<17} {metrics:<29} {child.status()}")
        print("all ready; Ctrl-C stops them", flush=True)
        while not stop:
            for name, child in group.children.items():
                if child.process.poll() is not None:
                    print(
                        f"{name} exited with status {child.process.returncode}; stopping the rest",
                        file=sys.stderr,
                    )
                    stop = True
            time.sleep(0.5)
    except PortInUse as exc:
        print(f"mathforge up: {exc}", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError) as exc:
        print(f"mathforge up: start failed: {exc}", file=sys.stderr)
        group.stop()
        return 1
    died = [name for name, child in group.children.items() if child.process.poll() is not None]
    codes = group.stop()
    print("stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()), flush=True)
    return 1 if died else 0


def _status(args: argparse.Namespace, rest: list[str]) -> int:
    worst = 0
    for name, spec in SERVICES.items():
        target = f"{args.host}:{spec.port + args.port_offset}"
        state = probe(target, spec.proto_name, timeout_s=args.timeout_s)
        print(f"{name:<11} {target:<21} {state}")
        worst = max(worst, 0 if state == "SERVING" else 1)
    return worst


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mathforge", description="The DeepSeekMath recipe as services and jobs."
    )
    parser.add_argument("--version", action="version", version=f"mathforge {mathforge.__version__}")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run one service in the foreground (service flags follow)", add_help=False
    )
    serve.add_argument("service", nargs="?", choices=sorted(SERVICES))
    serve.set_defaults(handler=_serve, passthrough=True)

    demo = sub.add_parser(
        "demo",
        help="the recipe in miniature against the five services (`mathforge demo --help`)",
        add_help=False,
    )
    demo.set_defaults(handler=_demo, passthrough=True)

    up = sub.add_parser("up", help="start every available service locally, until Ctrl-C")
    up.add_argument("--services", default="", help="comma-separated subset (default: all available)")
    up.add_argument("--log-dir", default=".cache/logs", help="where each service's log goes")
    up.add_argument("--grace-s", type=float, default=10.0, help="shutdown grace period per service")
    up.add_argument("--ready-timeout-s", type=float, default=180.0)
    up.add_argument("--port-offset", type=int, default=0, help="add this to every default port")
    up.set_defaults(handler=_up)

    status = sub.add_parser("status", help="readiness of each service on its default port")
    status.add_argument("--host", default="127.0.0.1")
    status.add_argument("--timeout-s", type=float, default=1.0)
    status.add_argument("--port-offset", type=int, default=0, help="as given to `mathforge up`")
    status.set_defaults(handler=_status)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command not in ("serve", "demo"):
        configure_logging(args.log_level, "text")
        logging.getLogger("mathforge").setLevel(args.log_level)
    return int(args.handler(args, rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
