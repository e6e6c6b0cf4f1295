"""Checks a mathforge service from inside the cluster: its gRPC health, or health plus one real call.

    python grpc_check.py health --target 127.0.0.1:50051 --service mathforge.v1.Classifier
    python grpc_check.py call --target dns:///mathforge-evaluator:50055 --name evaluator

`health` is what the pods' probes run when TLS is on (kubelet's own gRPC probe speaks only
plaintext); `call` is what the `helm test` pods run. Exit status 0 means healthy / the call gave the
expected answer; anything else prints why and exits 1. Shipped in the chart (files/) and mounted from
a ConfigMap, so it needs only the services image.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """A channel to --target, with TLS (and a client pair for mTLS) when --ca is given."""
    if not args.ca:
        return grpc.insecure_channel(args.target)
    return _secure_channel(args)


def _secure_channel(args: argparse.Namespace) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(args.ca).read_bytes(),
        private_key=Path(args.key).read_bytes() if args.key else None,
        certificate_chain=Path(args.cert).read_bytes() if args.cert else None,
    )
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.target, credentials, options=options)


def health_status(channel: grpc.Channel, service: str, timeout_s: float) -> str:
    """SERVING, NOT_SERVING, SERVICE_UNKNOWN, or the gRPC status code name when there is no answer."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
        )
    except grpc.RpcError as exc:
        return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def _classifier(channel: grpc.Channel, timeout_s: float) -> str:
    from mathforge.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

    text = "Solve x^2 - 5x + 6 = 0. Factoring gives (x - 2)(x - 3) = 0, so x = 2 or x = 3."
    reply = classifier_pb2_grpc.ClassifierStub(channel).Score(
        classifier_pb2.ScoreRequest(documents=[common_pb2.Document(id="probe", text=text)]), timeout=timeout_s
    )
    _expect(
        len(reply.scores) == 1 and 0.0 <= reply.scores[0] <= 1.0,
        f"expected one score in [0, 1], got {list(reply.scores)}",
    )
    return f"score {reply.scores[0]:.3f} (model version {reply.model_version})"


def _dedup(channel: grpc.Channel, timeout_s: float) -> str:
    from mathforge.v1 import common_pb2, dedup_pb2, dedup_pb2_grpc

    # Check never changes the index, so the test leaves no trace in a shared Redis index.
    document = common_pb2.Document(id="helm-test-probe", text="The sum of the first n odd numbers is n^2.")
    reply = dedup_pb2_grpc.DedupStub(channel).Check(
        dedup_pb2.DedupRequest(documents=[document]), timeout=timeout_s
    )
    _expect(
        len(reply.verdicts) == 1 and reply.verdicts[0].id == document.id,
        f"expected one verdict for {document.id!r}, got {len(reply.verdicts)}",
    )
    verdict = reply.verdicts[0]
    return (
        f"exact_duplicate_of={verdict.exact_duplicate_of!r} near_duplicate_of={verdict.near_duplicate_of!r}"
    )


def _reward(channel: grpc.Channel, timeout_s: float) -> str:
    from mathforge.v1 import reward_pb2, reward_pb2_grpc

    item = reward_pb2.RewardItem(
        question="What is 6 * 7?", response="6 * 7 = 42, so the answer is \\boxed{42}.", reference="42"
    )
    reply = reward_pb2_grpc.RewardStub(channel).Score(
        reward_pb2.RewardRequest(items=[item], kind=reward_pb2.REWARD_RULE), timeout=timeout_s
    )
    _expect(len(reply.results) == 1, f"expected one result, got {len(reply.results)}")
    result = reply.results[0]
    _expect(
        result.correct, f"rule reward judged a correct answer wrong (extracted {result.extracted_answer!r})"
    )
    return f"rule reward {result.reward:g} for the correct answer {result.extracted_answer!r}"


def _sampler(channel: grpc.Channel, timeout_s: float) -> str:
    from mathforge.v1 import sampler_pb2, sampler_pb2_grpc

    request = sampler_pb2.GenerateRequest(
        prompts=[sampler_pb2.Prompt(text="1 + 1 =")],
        params=sampler_pb2.SamplingParams(n=1, temperature=0.0, max_tokens=4),
    )
    reply = sampler_pb2_grpc.SamplerStub(channel).Generate(request, timeout=timeout_s)
    _expect(
        len(reply.results) == 1 and len(reply.results[0].completions) == 1,
        "expected one prompt result with one completion",
    )
    completion = reply.results[0].completions[0]
    _expect(
        0 < len(completion.token_ids) == len(completion.logprobs) <= 4,
        f"expected 1..4 tokens with one logprob each, got {len(completion.token_ids)} tokens "
        f"and {len(completion.logprobs)} logprobs",
    )
    return f"{len(completion.token_ids)} tokens from weights version {completion.weights_version}"


def _evaluator(channel: grpc.Channel, timeout_s: float) -> str:
    from mathforge.v1 import evaluator_pb2, evaluator_pb2_grpc

    stub = evaluator_pb2_grpc.EvaluatorStub(channel)
    same = stub.Grade(
        evaluator_pb2.GradeRequest(prediction="so the answer is \\boxed{\\frac{1}{2}}", gold="0.5"),
        timeout=timeout_s,
    )
    _expect(same.equivalent, f"1/2 and 0.5 judged different (reason {same.reason!r})")
    differ = stub.Grade(evaluator_pb2.GradeRequest(prediction="\\boxed{3}", gold="4"), timeout=timeout_s)
    _expect(not differ.equivalent, f"3 and 4 judged equivalent (reason {differ.reason!r})")
    return f"1/2 == 0.5 by {same.reason!r}; 3 != 4"


CALLS: dict[str, tuple[str, Callable[[grpc.Channel, float], str]]] = {
    "classifier": ("mathforge.v1.Classifier", _classifier),
    "dedup": ("mathforge.v1.Dedup", _dedup),
    "reward": ("mathforge.v1.Reward", _reward),
    "sampler": ("mathforge.v1.Sampler", _sampler),
    "evaluator": ("mathforge.v1.Evaluator", _evaluator),
}


class CheckFailed(Exception):
    """The service answered, but not what a healthy service answers."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _info(channel: grpc.Channel, proto_name: str, timeout_s: float) -> Any:
    from mathforge.v1 import common_pb2

    method = f"/{proto_name}/Info"
    call = channel.unary_unary(
        method,
        request_serializer=common_pb2.InfoRequest.SerializeToString,
        response_deserializer=common_pb2.ServiceInfo.FromString,
    )
    return call(common_pb2.InfoRequest(), timeout=timeout_s)


def run_health(args: argparse.Namespace) -> int:
    with open_channel(args) as channel:
        status = health_status(channel, args.service, args.timeout_s)
    if status != "SERVING":
        print(f"{args.target} health {args.service or '(liveness)'!r}: {status}", file=sys.stderr)
        return 1
    return 0


def run_call(args: argparse.Namespace) -> int:
    from mathforge.runtime.auth import client_token, with_token

    proto_name, call = CALLS[args.name]
    deadline = time.monotonic() + args.ready_timeout_s
    # The caller token (MATHFORGE_TOKEN_FILE, mounted from the chart's auth Secret), when auth is on.
    with open_channel(args) as raw:
        channel = with_token(raw, client_token())
        status = health_status(channel, proto_name, args.timeout_s)
        while status != "SERVING" and time.monotonic() < deadline:
            time.sleep(2.0)
            status = health_status(channel, proto_name, args.timeout_s)
        if status != "SERVING":
            print(
                f"{args.name} at {args.target} not ready after {args.ready_timeout_s:g}s (last: {status})",
                file=sys.stderr,
            )
            return 1
        try:
            info = _info(channel, proto_name, args.timeout_s)
            outcome = call(channel, args.timeout_s)
        except grpc.RpcError as exc:
            print(f"{args.name} call failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        except CheckFailed as exc:
            print(f"{args.name} answered wrongly: {exc}", file=sys.stderr)
            return 1
    weights = " (random weights)" if info.random_weights else ""
    print(
        f"{args.name} ok: {outcome}; model {info.model or '-'}{weights}, backend {info.backend or '-'}, "
        f"software {info.software_version}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    health = sub.add_parser("health", help="exit 0 when the health service reports SERVING")
    health.add_argument("--service", default="", help="health key: '' (liveness) or mathforge.v1.<Name>")
    call = sub.add_parser("call", help="wait until ready, then call Info and one real method")
    call.add_argument("--name", required=True, choices=sorted(CALLS))
    call.add_argument("--ready-timeout-s", type=float, default=300.0, help="how long to wait for SERVING")
    for mode in (health, call):
        mode.add_argument("--target", required=True, help="host:port or dns:///name:port")
        mode.add_argument("--timeout-s", type=float, default=30.0, help="deadline of each call")
        mode.add_argument("--ca", default="", help="PEM CA bundle: enables TLS")
        mode.add_argument("--cert", default="", help="PEM client certificate (mTLS)")
        mode.add_argument("--key", default="", help="PEM client key (mTLS)")
        mode.add_argument("--server-name", default="", help="name checked against the server certificate")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_health(args) if args.mode == "health" else run_call(args)


if __name__ == "__main__":
    sys.exit(main())
