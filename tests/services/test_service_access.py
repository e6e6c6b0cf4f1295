"""Real services in token mode: who may load what from where. Dedup's LoadBenchmarks needs the
administrator token and a file under the benchmark roots (the same message for /etc/passwd, a
missing file and a symlink out); the evaluator calls only allowed samplers, reads only benchmark
files under its roots, and refuses a NaN time limit."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import grpc
import pytest
from mathforge.dedup.service import Config as DedupConfig
from mathforge.dedup.service import create_service as create_dedup
from mathforge.evaluator.service import Config as EvaluatorConfig
from mathforge.evaluator.service import create_service as create_evaluator
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.dedup import DedupClient
from mathforge.runtime.clients.evaluator import EvaluatorClient
from mathforge.runtime.server import ServerThread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
CALLER, ADMIN = "caller-token-for-access-tests", "admin-token-for-access-tests"


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    base = tmp_path_factory.mktemp("access")
    (base / "caller").write_text(CALLER)
    (base / "admin").write_text(ADMIN)
    root = base / "benchmarks"
    root.mkdir()
    shutil.copy(FIXTURES / "gsm8k_test.jsonl", root / "gsm8k_test.jsonl")
    (base / "private.jsonl").write_text('{"question": "secret?", "answer": "#### 42"}\n')
    (root / "link.jsonl").symlink_to(base / "private.jsonl")
    auth = {
        "auth": "token",
        "caller_token_file": str(base / "caller"),
        "admin_token_file": str(base / "admin"),
    }
    return base, root, auth


def _error(fn) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value


def test_dedup_load_benchmarks_needs_admin_and_a_file_under_the_roots(setting):
    base, root, auth = setting
    config = DedupConfig(
        port=0, metrics_port=-1, store_path=str(base / "index"), path_roots={"benchmark": [str(root)]}, **auth
    )
    with ServerThread(create_dedup(config)) as server:
        caller = DedupClient(server.target, token=CALLER, retry=NO_RETRY)
        admin = DedupClient(server.target, token=ADMIN, retry=NO_RETRY)
        inside = str(root / "gsm8k_test.jsonl")
        assert _error(lambda: caller.load_benchmarks([inside])).code() == grpc.StatusCode.PERMISSION_DENIED
        assert admin.load_benchmarks([inside]).items["gsm8k"] > 0
        assert caller.check([("d", "some text to check")])[0].id == "d"
        outside = [
            "/etc/passwd",
            str(base / "private.jsonl"),
            str(base / "missing.jsonl"),
            str(root / "link.jsonl"),
        ]
        details = []
        for path in outside:
            error = _error(lambda p=path: admin.load_benchmarks([p]))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            details.append(error.details().replace(repr(path), "<path>"))
        assert set(details) == {
            "file 0 <path> is not a benchmark path this server may read (the benchmark roots are "
            "--path-roots benchmark)"
        }
        assert all("secret" not in d and "question" not in d for d in details)


def test_evaluator_calls_only_allowed_samplers_reads_only_its_roots_and_refuses_nan(setting):
    base, root, auth = setting
    config = EvaluatorConfig(
        port=0,
        metrics_port=-1,
        benchmark_dir=str(root),
        symbolic_workers=1,
        sampler_retry_budget_s=0.5,
        path_roots={"benchmark": [str(root)]},
        allowed_targets={"sampler": ["127.0.0.1:1"]},
        **auth,
    )
    with ServerThread(create_evaluator(config)) as server:
        evaluator = EvaluatorClient(server.target, token=CALLER, retry=NO_RETRY)
        # A sampler not on the list: refused before any connection is made.
        error = _error(lambda: list(evaluator.evaluate("gsm8k", sampler="10.1.2.3:6379", limit=1)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "allow-list" in error.details()
        # A benchmark file outside the roots: the same message as for one that does not exist.
        for path in (str(base / "private.jsonl"), str(base / "missing.jsonl")):
            error = _error(lambda p=path: list(evaluator.evaluate(p, sampler="127.0.0.1:1", limit=1)))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "is not a benchmark path this server may read" in error.details()
        # The allowed sampler is down: the call gets as far as dialing it.
        error = _error(lambda: list(evaluator.evaluate("gsm8k", sampler="127.0.0.1:1", limit=1)))
        assert (
            error.code() == grpc.StatusCode.FAILED_PRECONDITION and "sampler 127.0.0.1:1" in error.details()
        )
        for bad in (math.nan, math.inf):
            error = _error(lambda b=bad: evaluator.run_program("print(1)", wall_time_s=b))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "wall_time_s" in error.details()
