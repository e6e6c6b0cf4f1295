"""The Evaluator service on loopback: grading (64 concurrent batches), limits, the sandbox behind
RunProgram, and Evaluate / `mathforge eval run` against a stand-in Sampler that returns fixed
completions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from mathforge.cli import main as cli_main
from mathforge.evaluator.service import Config, create_service
from mathforge.runtime.clients.evaluator import EvaluatorClient
from mathforge.runtime.server import ServerThread
from mathforge.v1 import evaluator_pb2, sampler_pb2, sampler_pb2_grpc
from prometheus_client import generate_latest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
Verdict = evaluator_pb2.RunProgramResponse.Verdict

# The stand-in sampler's answers, keyed by a word of the question: (greedy, then samples 1..).
ANSWERS = {
    "pencils": ["The answer is \\boxed{32}.", "#### 32", "#### 31", "so 32"],
    "cups": ["#### 3,750", "The answer is 3750", "#### 3000", "#### 3000"],
    "pages": ["\\boxed{8}", "\\boxed{7}", "\\boxed{7}", "\\boxed{9}"],
}


class FixedSampler(sampler_pb2_grpc.SamplerServicer):
    """Answers each prompt from ANSWERS: sample 0 at temperature 0, samples 1.. otherwise."""

    def __init__(self) -> None:
        self.requests: list[sampler_pb2.GenerateRequest] = []

    def Generate(
        self, request: sampler_pb2.GenerateRequest, context: grpc.ServicerContext
    ) -> sampler_pb2.GenerateResponse:
        self.requests.append(request)
        results = []
        for prompt in request.prompts:
            key = next(k for k in ANSWERS if k in prompt.text)
            pool = ANSWERS[key][:1] if request.params.temperature == 0 else ANSWERS[key][1:]
            completions = [
                sampler_pb2.Completion(sample_index=j, text=pool[j % len(pool)], finish_reason="stop")
                for j in range(request.params.n or 1)
            ]
            results.append(sampler_pb2.PromptResult(completions=completions))
        return sampler_pb2.GenerateResponse(results=results, weights_version=0)


@pytest.fixture(scope="module")
def sampler() -> Iterator[tuple[str, FixedSampler]]:
    servicer = FixedSampler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    sampler_pb2_grpc.add_SamplerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


@pytest.fixture(scope="module")
def evaluator_server() -> Iterator[ServerThread]:
    config = Config(
        port=0,
        metrics_port=-1,
        benchmark_dir=str(FIXTURES),
        max_items=64,
        max_text_bytes=4096,
        program_wall_time_s=5.0,
        program_cpu_time_s=1.0,
        program_memory_bytes=512 << 20,
        max_program_wall_time_s=20.0,
        sampler_retry_budget_s=0.5,
    )
    with ServerThread(create_service(config)) as server:
        yield server


@pytest.fixture(scope="module")
def evaluator(evaluator_server: ServerThread) -> Iterator[EvaluatorClient]:
    client = EvaluatorClient(evaluator_server.target, timeout_s=60)
    client.wait_ready(60)
    yield client
    client.close()


def test_grade_extract_and_info(evaluator: EvaluatorClient) -> None:
    reply = evaluator.grade("So the answer is $\\boxed{\\dfrac{1}{2}}$.", "0.5")
    assert (reply.equivalent, reply.pred_answer, reply.gold_answer, reply.reason) == (
        True,
        "\\dfrac{1}{2}",
        "0.5",
        "numeric",
    )
    assert not evaluator.grade("#### 7", "8").equivalent
    assert evaluator.grade("50\\%", "0.5", policy={"percent": "fraction"}).equivalent
    assert evaluator.extract("Final answer: 12") == ("12", "the_answer_is")
    info = evaluator.info()
    assert info.service == "mathforge.v1.Evaluator" and info.limits["max_items"] == 64


PAIRS = [
    ("\\boxed{\\frac{3}{4}}", "0.75", True),
    ("1,000", "1000", True),
    ("(1, 2)", "(2, 1)", False),
    ("\\sin^2 x + \\cos^2 x", "1", True),
    ("x=5", "5", True),
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("#### 12", "13", False),
    ("答案是18个", "18", True),
]


def test_64_concurrent_grade_batches_are_all_answered_correctly(evaluator: EvaluatorClient) -> None:
    def one_batch(shift: int) -> list[bool]:
        rotated = PAIRS[shift % len(PAIRS) :] + PAIRS[: shift % len(PAIRS)]
        replies = evaluator.grade_batch([(p, g) for p, g, _ in rotated])
        return [r.equivalent == expected for r, (_, _, expected) in zip(replies, rotated, strict=True)]

    with futures.ThreadPoolExecutor(max_workers=64) as pool:
        outcomes = list(pool.map(one_batch, range(64)))
    assert len(outcomes) == 64
    assert all(all(batch) and len(batch) == len(PAIRS) for batch in outcomes)


def test_request_limits_name_the_flag(evaluator: EvaluatorClient) -> None:
    with pytest.raises(grpc.RpcError) as too_many:
        evaluator.grade_batch([("1", "1")] * 65)
    assert (
        too_many.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and "--max-items" in too_many.value.details()
    )
    with pytest.raises(grpc.RpcError) as too_big:
        evaluator.grade("1" * 5000, "1")
    assert (
        too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and "--max-text-bytes" in too_big.value.details()
    )
    with pytest.raises(grpc.RpcError) as bad_policy:
        evaluator.grade("1", "1", policy={"percent": "half"})
    assert (
        bad_policy.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "percent" in bad_policy.value.details()
    )
    with pytest.raises(grpc.RpcError) as long_run:
        evaluator.run_program("print(1)", wall_time_s=100)
    assert long_run.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-program-wall-time-s" in long_run.value.details()


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("print(6 * 7)", Verdict.OK),
        ("while True:\n    pass", Verdict.TIMEOUT),
        ("import os\nwhile True:\n    os.fork()", Verdict.FORBIDDEN),
        ("blocks = [bytearray(1 << 30) for _ in range(64)]", Verdict.MEMORY),
        ("import os\nos.system('ls /')", Verdict.FORBIDDEN),
        ("import socket\nsocket.create_connection(('127.0.0.1', 9))", Verdict.FORBIDDEN),
        ("open('/tmp/mathforge-escape', 'w').write('x')", Verdict.FORBIDDEN),
        ("while True:\n    print('y' * 4096)", Verdict.OUTPUT_LIMIT),
    ],
)
def test_run_program_contains_each_escape_and_the_server_survives(
    evaluator: EvaluatorClient, code: str, verdict: int
) -> None:
    reply = evaluator.run_program(code)
    assert reply.verdict == verdict, (reply.detail, reply.stderr[-300:])
    if verdict == Verdict.OK:
        assert reply.stdout == "42\n"
    else:
        assert reply.detail
    assert evaluator.health() == "SERVING"
    assert evaluator.grade("2", "2").equivalent


def test_evaluate_streams_progress_then_metrics(
    evaluator: EvaluatorClient, sampler: tuple[str, FixedSampler]
) -> None:
    target, servicer = sampler
    events = list(evaluator.evaluate("gsm8k", sampler=target, k=4, temperature=0.8, max_tokens=64))
    progress = [e.progress for e in events if e.HasField("progress")]
    assert progress and progress[-1].done == progress[-1].total == 3
    result = events[-1].result
    # greedy: pencils right, cups right (3,750), pages wrong (8 vs 7)
    assert result.metrics["acc"] == pytest.approx(2 / 3)
    # maj@k and pass@k are over the k = 4 samples only (the stand-in cycles its three sampled
    # answers): pencils [T, F, T, T], cups [T, F, F, T], pages [T, T, F, T]
    assert result.metrics["pass@1"] == pytest.approx((3 / 4 + 2 / 4 + 3 / 4) / 3)
    assert result.metrics["pass@4"] == 1.0
    # maj@k is the vote over the first k samples: every first sample is right
    assert result.metrics["maj@1"] == 1.0
    # pencils and pages: the right answer has three votes; cups: right and wrong tie 2-2, and the
    # right one came first
    assert result.metrics["maj@4"] == 1.0
    assert [item.id for item in result.items] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    assert list(result.items[2].answers) == ["8", "7", "7", "9", "7"]  # greedy first, then the samples
    assert "Please reason step by step" in servicer.requests[-1].prompts[0].text
    assert servicer.requests[-1].params.n == 4 and servicer.requests[-2].params.temperature == 0


def test_evaluate_rejects_unknown_benchmarks_and_reports_a_dead_sampler(evaluator: EvaluatorClient) -> None:
    with pytest.raises(grpc.RpcError) as unknown:
        list(evaluator.evaluate("nope", sampler="127.0.0.1:1"))
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in unknown.value.details()
    with pytest.raises(grpc.RpcError) as dead:
        list(evaluator.evaluate("gsm8k", sampler="127.0.0.1:1", limit=1))
    assert dead.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "127.0.0.1:1" in dead.value.details()


def test_cli_eval_run_writes_both_reports(
    sampler: tuple[str, FixedSampler], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, _ = sampler
    out = tmp_path / "report"
    code = cli_main(
        [
            "eval",
            "run",
            "--benchmark",
            str(FIXTURES / "gsm8k_test.jsonl"),
            "--sampler",
            target,
            "-k",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["benchmark"] == "gsm8k" and report["metrics"]["acc"] == pytest.approx(2 / 3)
    assert set(report["metrics"]) >= {"acc", "pass@1", "pass@2", "maj@1", "maj@2"}
    assert len(report["items"]) == 3
    markdown = (out / "report.md").read_text()
    assert "| acc | 0.6667 |" in markdown and "gsm8k-2" in markdown
    assert report["model"]["weights_versions"] == [0] and report["code"]["mathforge"]
    assert re.search(r'"acc": 0\.66', capsys.readouterr().out)


def test_work_counters_are_exported(evaluator_server: ServerThread, evaluator: EvaluatorClient) -> None:
    evaluator.grade_batch([("\\frac{1}{2}", "0.5"), ("7", "7")])
    evaluator.run_program("print(1)")
    exposition = generate_latest(evaluator_server.service.registry).decode()
    graded = re.search(r'mathforge_evaluator_graded_total\{reason="numeric"\} (\d+)', exposition)
    assert graded and float(graded.group(1)) >= 1
    assert 'mathforge_evaluator_programs_total{verdict="ok"}' in exposition
    assert 'mathforge_rpc_requests_total{code="OK",method="/mathforge.v1.Evaluator/GradeBatch"}' in exposition
