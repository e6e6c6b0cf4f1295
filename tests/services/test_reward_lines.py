"""Reward-model lines of one reward service over real gRPC on loopback: a line's own PRM scores its
calls only, with versions of its own, other lines and the default line keep the start-up model,
and the least recently used line is evicted at --max-lines (its calls fall back to the default
line's model, and the versions say so)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from mathforge.reward.encoding import encode, score_encoded
from mathforge.reward.model import init_reward_model, load_reward_model, save_reward_model
from mathforge.reward.service import Config, create_service
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.reward import RewardClient
from mathforge.runtime.server import ServerThread

ITEMS = [
    ("Ada has 5 apples and buys 3. How many?", "5 + 3 = 8 apples.\nThe answer is \\boxed{8}.", "8"),
    ("What is 6 * 7?", "6 * 7 = 42\n\nso the result is 42", "42"),
]


@pytest.fixture(scope="module")
def prms(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prms")
    return {
        name: save_reward_model(init_reward_model("prm", "tiny", seed=seed), root / name)
        for name, seed in (("start", 2), ("retrained", 7), ("other", 9))
    }


def _expected(path: Path) -> list[float]:
    model = load_reward_model(path)
    scores = score_encoded(model, [encode(model, q, r) for q, r, _ in ITEMS])
    return [sum(s) / len(s) for s in scores]


def _client(server: ServerThread, line: str = "") -> RewardClient:
    return RewardClient(server.target, timeout_s=60, retry=NO_RETRY, line=line)


def test_a_lines_prm_scores_only_its_calls_and_versions_are_per_line(prms):
    config = Config(port=0, metrics_port=-1, prm_path=str(prms["start"]), symbolic_workers=1)
    with (
        ServerThread(create_service(config)) as server,
        _client(server) as default,
        _client(server, "iter-0") as run,
        _client(server, "grpo-0") as other,
    ):
        start, retrained = _expected(prms["start"]), _expected(prms["retrained"])
        assert start != pytest.approx(retrained, abs=1e-4)
        assert run.score(ITEMS, "prm").rewards == pytest.approx(start, abs=1e-5)  # no own model yet

        run.load_model("prm", 1, str(prms["retrained"]))
        scored = run.score(ITEMS, "prm")
        assert scored.rewards == pytest.approx(retrained, abs=1e-5)
        assert scored.model_versions == {"prm": 1}
        for client in (default, other):
            result = client.score(ITEMS, "prm")
            assert result.rewards == pytest.approx(start, abs=1e-5)
            assert result.model_versions == {"prm": 0}
        mixed = run.score(ITEMS, "mix", weights={"rule": 1.0, "prm": 1.0})
        assert [r - p for r, p in zip(mixed.rewards, retrained, strict=True)] == pytest.approx([1.0, 1.0])

        with pytest.raises(grpc.RpcError) as info:
            run.load_model("prm", 1, str(prms["other"]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        other.load_model("prm", 1, str(prms["other"]))  # another line's version 1 is its own
        run.load_model("prm", 2, str(prms["start"]))
        assert run.score(ITEMS, "prm").rewards == pytest.approx(start, abs=1e-5)
        assert (run.model_versions(), other.model_versions(), default.model_versions()) == (
            {"prm": 2},
            {"prm": 1},
            {"prm": 0},
        )
        models = [(m.line, m.kind, m.version) for m in default.info().models]
        assert models == [("", "prm", 0), ("grpo-0", "prm", 1), ("iter-0", "prm", 2)]
        assert all(m.bytes > 0 for m in default.info().models)


def test_the_least_recently_used_line_is_evicted_and_falls_back_to_the_default(prms):
    config = Config(port=0, metrics_port=-1, prm_path=str(prms["start"]), symbolic_workers=1, max_lines=1)
    with ServerThread(create_service(config)) as server, _client(server, "a") as a, _client(server, "b") as b:
        a.load_model("prm", 3, str(prms["retrained"]))
        b.load_model("prm", 1, str(prms["other"]))  # evicts "a"
        fallback = a.score(ITEMS, "prm")
        assert fallback.model_versions == {"prm": 0}  # a caller checking versions sees the loss
        assert fallback.rewards == pytest.approx(_expected(prms["start"]), abs=1e-5)
        assert a.model_versions() == {"prm": 0}
        assert [m.line for m in b.info().models] == ["", "b"]
        with _client(server, "bad line") as bad, pytest.raises(grpc.RpcError) as info:
            bad.score(ITEMS, "prm")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
