"""Reward service on a real loopback server: rule/ORM/PRM/mix results equal the in-process
computation, concurrent requests batched together each get their own results, limits and bad input,
no model = FAILED_PRECONDITION, LoadModel swaps atomically and a failed load keeps the old model."""

from __future__ import annotations

import re
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from mathforge.reward.encoding import encode, score_encoded
from mathforge.reward.model import init_reward_model, load_reward_model, save_reward_model
from mathforge.reward.rule import rule_reward
from mathforge.reward.service import Config, create_service
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.reward import RewardClient
from mathforge.runtime.config import ConfigError
from mathforge.runtime.server import ServerThread
from mathforge.v1 import reward_pb2

ITEMS = [
    ("Ada has 5 apples and buys 3. How many?", "5 + 3 = 8 apples.\nThe answer is \\boxed{8}.", "8"),
    ("Ben has 9 cards and gives 4 away. How many?", "9 + 4 = 13 cards.\nThe answer is \\boxed{13}.", "5"),
    ("What is 6 * 7?", "6 * 7 = 42\n\nso the result is 42", "42"),
]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rms")
    dirs = {}
    for name, kind, seed in (("orm", "orm", 1), ("prm", "prm", 2), ("orm_v2", "orm", 5)):
        dirs[name] = save_reward_model(init_reward_model(kind, "tiny", seed=seed), root / name)
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((dirs["orm"] / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    dirs["broken"] = broken
    return dirs


def _expected(path: Path, items=ITEMS) -> list[list[float]]:
    model = load_reward_model(path)
    return score_encoded(model, [encode(model, q, r) for q, r, _ in items])


@pytest.fixture(scope="module")
def server(model_dirs):
    config = Config(
        port=0,
        metrics_port=0,
        orm_path=str(model_dirs["orm"]),
        prm_path=str(model_dirs["prm"]),
        max_items=16,
        max_text_bytes=2048,
        max_tokens=200,
        max_batch=32,
        max_wait_ms=20,
    )
    with ServerThread(create_service(config)) as running:
        yield running


@pytest.fixture()
def client(server):
    with RewardClient(server.target, timeout_s=60, retry=NO_RETRY) as c:
        yield c


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_rule_orm_prm_and_mix_equal_the_in_process_computation(client, model_dirs) -> None:
    rule = client.score(ITEMS, "rule")
    assert (
        [r.reward for r in rule.items]
        == [rule_reward(r, ref).reward for _, r, ref in ITEMS]
        == [1.0, 0.0, 1.0]
    )
    assert [r.extracted_answer for r in rule.items] == ["8", "13", "42"]
    orm = client.score(ITEMS, "orm")
    assert orm.rewards == pytest.approx([s[0] for s in _expected(model_dirs["orm"])], abs=1e-5)
    assert orm.model_versions == {"orm": 0}
    prm = client.score(ITEMS, "prm")
    expected_steps = _expected(model_dirs["prm"])
    for item, steps, (_, response, _) in zip(prm.items, expected_steps, ITEMS, strict=True):
        assert [s.reward for s in item.steps] == pytest.approx(steps, abs=1e-5)
        assert item.reward == pytest.approx(sum(steps) / len(steps), abs=1e-5)
        assert [response[s.char_start : s.char_end] for s in item.steps] == [
            line.strip() for line in response.split("\n") if line.strip()
        ]
    mix = client.score(ITEMS, "mix", weights={"rule": 1.0, "orm": 0.5, "prm": 2.0})
    for m, r, o, p in zip(mix.items, rule.items, orm.items, prm.items, strict=True):
        assert m.reward == pytest.approx(r.reward + 0.5 * o.reward + 2.0 * p.reward, abs=1e-5)
        assert m.correct == r.correct and len(m.steps) == len(p.steps)
    assert mix.model_versions == {"orm": 0, "prm": 0}


def test_concurrent_requests_are_batched_and_each_gets_exactly_its_own_results(server, client, model_dirs):
    questions = [
        (f"What is {i} + {i}?", f"{i} + {i} = {2 * i}\nThe answer is \\boxed{{{2 * i}}}.", str(2 * i))
        for i in range(48)
    ]
    expected = [s[0] for s in _expected(model_dirs["orm"], questions)]
    before = _batches(server)
    with ThreadPoolExecutor(24) as pool:
        got = list(pool.map(lambda item: client.score([item], "orm").rewards[0], questions))
    assert got == pytest.approx(expected, abs=1e-5)
    count, total = (a - b for a, b in zip(_batches(server), before, strict=True))
    assert total == 48
    assert count < 48, "every request ran its own forward pass: nothing was batched"


def _batches(server) -> tuple[float, float]:
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    )
    count = re.search(r'mathforge_reward_batch_items_count\{model="orm"\} (\S+)', text)
    total = re.search(r'mathforge_reward_batch_items_sum\{model="orm"\} (\S+)', text)
    return (float(count[1]), float(total[1])) if count and total else (0.0, 0.0)


@pytest.mark.parametrize(
    ("request_kwargs", "code", "message"),
    [
        (
            {"items": [reward_pb2.RewardItem(response="x", reference="1")] * 17},
            "RESOURCE_EXHAUSTED",
            "17 items, over the 16 limit (--max-items)",
        ),
        (
            {"items": [reward_pb2.RewardItem(response="x" * 3000, reference="1")]},
            "RESOURCE_EXHAUSTED",
            "response of item 0 is 2.9 KB, over the 2 KB limit (--max-text-bytes)",
        ),
        (
            {"items": [reward_pb2.RewardItem(response="x " * 400)], "kind": reward_pb2.REWARD_ORM},
            "RESOURCE_EXHAUSTED",
            "over the 200 limit (--max-tokens)",
        ),
        ({"items": [reward_pb2.RewardItem(response="x")]}, "INVALID_ARGUMENT", "item 0 has no reference"),
        ({"items": []}, "INVALID_ARGUMENT", "no items"),
        (
            {"items": [reward_pb2.RewardItem(response="x")], "kind": 9},
            "INVALID_ARGUMENT",
            "unknown reward kind 9",
        ),
        (
            {
                "items": [reward_pb2.RewardItem(response="x")],
                "kind": reward_pb2.REWARD_MIX,
                "weights": {"value": 1},
            },
            "INVALID_ARGUMENT",
            "unknown mix weights ['value']",
        ),
        (
            {"items": [reward_pb2.RewardItem(response="x")], "kind": reward_pb2.REWARD_MIX},
            "INVALID_ARGUMENT",
            "at least one non-zero weight",
        ),
        (
            {"items": [reward_pb2.RewardItem(response="x", reference="1")], "weights": {"rule": 1}},
            "INVALID_ARGUMENT",
            "only for REWARD_MIX",
        ),
        (
            {"items": [reward_pb2.RewardItem(response="x", reference="1")], "format_penalty": -1},
            "INVALID_ARGUMENT",
            "format_penalty",
        ),
    ],
)
def test_bad_requests_name_the_problem_and_limit(client, request_kwargs, code, message) -> None:
    got_code, details = _code(
        lambda: client.stub.Score(reward_pb2.RewardRequest(**request_kwargs), timeout=30)
    )
    assert got_code.name == code
    assert message in details


def test_load_model_swaps_atomically_and_a_failed_load_keeps_the_old_model(client, model_dirs) -> None:
    old = [s[0] for s in _expected(model_dirs["orm"])]
    new = [s[0] for s in _expected(model_dirs["orm_v2"])]
    assert old != pytest.approx(new, abs=1e-4)
    failures: list[BaseException] = []
    seen = {version: threading.Event() for version in (0, 1, 2)}
    stop = threading.Event()

    def keep_scoring() -> None:
        with RewardClient(client.target, timeout_s=60, retry=NO_RETRY) as own:
            while not stop.is_set():
                try:
                    result = own.score(ITEMS, "orm")
                    version = result.model_versions["orm"]
                    seen[version].set()
                    assert result.rewards == pytest.approx(old if version in (0, 2) else new, abs=1e-5)
                except BaseException as exc:  # collected and asserted on below
                    failures.append(exc)

    workers = [threading.Thread(target=keep_scoring) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        assert seen[0].wait(60), "no call finished on version 0"
        assert client.load_model("orm", 1, str(model_dirs["orm_v2"])) >= 0
        assert seen[1].wait(60), "no concurrent call saw version 1"
        code, details = _code(lambda: client.load_model("orm", 2, str(model_dirs["broken"])))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "still serving version 1" in details
        code, details = _code(lambda: client.load_model("orm", 2, str(model_dirs["prm"])))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "kind prm, expected orm" in details
        code, details = _code(lambda: client.load_model("orm", 1, str(model_dirs["orm"])))
        assert (
            code == grpc.StatusCode.INVALID_ARGUMENT
            and "not greater than the serving orm version 1" in details
        )
        assert client.score(ITEMS, "orm").rewards == pytest.approx(new, abs=1e-5)
        client.load_model("orm", 2, str(model_dirs["orm"]))
        assert client.score(ITEMS, "orm").model_versions == {"orm": 2}
        assert seen[2].wait(60), "no concurrent call saw version 2"
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not failures, failures[0]
    assert client.info().details["orm_version"] == "2"


def test_without_models_rule_works_and_orm_prm_are_failed_precondition() -> None:
    with (
        ServerThread(create_service(Config(port=0, metrics_port=-1))) as running,
        RewardClient(running.target, timeout_s=30, retry=NO_RETRY) as client,
    ):
        assert client.rule(["\\boxed{8}", "\\boxed{9}"], ["8", "8"]) == [1.0, 0.0]
        for kind in ("orm", "prm"):
            code, details = _code(lambda k=kind: client.score(ITEMS, k))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert f"no {kind} reward model is loaded" in details and f"--{kind}-path" in details
        code, _ = _code(lambda: client.score(ITEMS, "mix", weights={"rule": 1, "prm": 1}))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert client.score(ITEMS, "mix", weights={"rule": 2}).rewards == [2.0, 0.0, 2.0]
        info = client.info()
        assert (info.backend, info.random_weights, info.limits["max_items"]) == ("rule", False, 1024)


def test_metrics_report_batch_sizes_latency_and_a_reward_histogram(server, client) -> None:
    client.score(ITEMS, "rule")
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    )
    assert re.search(r'mathforge_reward_value_bucket\{kind="rule",le="1.0"\} [1-9]', text)
    assert re.search(r'mathforge_reward_score_seconds_count\{kind="rule"\} [1-9]', text)
    assert re.search(r'mathforge_reward_forward_seconds_count\{model="prm"\} [1-9]', text)
    assert re.search(r'mathforge_reward_items_total\{kind="rule"\} [1-9]', text)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "max_batch 0 must be >= 1"),
        (["--orm-path", "/nonexistent/rm"], "orm_path /nonexistent/rm is not a directory (--orm-path)"),
        (["--grading-policy", '{"percent": "half"}'], "grading_policy: grading policy percent='half'"),
        (["--grading-policy", "[1, 2]"], "expected a JSON object"),
        (["--device", "tpu"], "device 'tpu' is not auto, cpu or cuda"),
    ],
)
def test_bad_config_values_are_refused_naming_the_field(flags, message) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_args(flags, env={})
    assert message in str(info.value)
