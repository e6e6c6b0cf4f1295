"""Where requests may point a service and how much they may ask for, without a server: paths under
configured roots (one message for everything outside, symlinks followed), target allow-lists,
bounded monotonic versions, the bounded program queue, byte limits before tokenizing, and NaN."""

from __future__ import annotations

import asyncio
import math
import os

import grpc
import pytest
from mathforge.runtime.admission import Admission
from mathforge.runtime.config import redact_url
from mathforge.runtime.errors import MAX_VERSION_STEP, RequestError, check_range, check_version
from mathforge.runtime.handlers import non_finite_field
from mathforge.runtime.paths import AccessRoots
from mathforge.sampler.limits import SamplerLimits, check_request
from mathforge.v1 import classifier_pb2, evaluator_pb2, reward_pb2, sampler_pb2


@pytest.fixture
def tree(tmp_path):
    models = tmp_path / "models"
    (models / "v1").mkdir(parents=True)
    (models / "v1" / "model.bin").write_bytes(b"weights")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not show")
    (models / "escape").symlink_to(secret)
    (models / "escape-dir").symlink_to(tmp_path)
    return tmp_path


def _message(fn) -> str:
    with pytest.raises(RequestError) as err:
        fn()
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return err.value.message


def test_paths_under_the_root_resolve_and_everything_outside_gets_one_message(tree):
    access = AccessRoots({"model": [str(tree / "models")]}, {}, open_when_unset=False)
    assert access.require_path("model", str(tree / "models" / "v1")) == (tree / "models" / "v1").resolve()
    assert access.require_path("model", "v1/model.bin") == (tree / "models" / "v1" / "model.bin").resolve()
    outside = {
        "existing file": str(tree / "secret.txt"),
        "missing file": str(tree / "nothing-here.bin"),
        "system file": "/etc/passwd",
        "dot-dot": str(tree / "models" / ".." / "secret.txt"),
        "symlink to a file outside": str(tree / "models" / "escape"),
        "through a symlinked dir": str(tree / "models" / "escape-dir" / "secret.txt"),
        "relative escape": "../secret.txt",
    }
    messages = {
        name: _message(lambda p=path: access.require_path("model", p)) for name, path in outside.items()
    }
    # The text differs only by the caller's own input: nothing about what lies at the path.
    normalized = {
        m.replace(repr(path), "<path>") for m, path in zip(messages.values(), outside.values(), strict=True)
    }
    assert normalized == {
        "path <path> is not a model path this server may read (the model roots are --path-roots model)"
    }
    assert not any("do not show" in m or "No such file" in m for m in messages.values())


def test_a_kind_without_roots_refuses_every_path_unless_the_service_runs_locally(tree):
    strict = AccessRoots({}, {}, open_when_unset=False)
    assert "not a benchmark path" in _message(
        lambda: strict.require_path("benchmark", str(tree / "secret.txt"))
    )
    local = AccessRoots({}, {}, open_when_unset=True)
    assert local.require_path("benchmark", str(tree / "secret.txt")) == (tree / "secret.txt").resolve()
    assert _message(lambda: strict.require_path("model", "")) == "path is empty"


def test_targets_must_be_on_the_allow_list():
    access = AccessRoots({}, {"sampler": ["mathforge-sampler:50054"]}, open_when_unset=False)
    assert access.require_target("sampler", "mathforge-sampler:50054") == "mathforge-sampler:50054"
    message = _message(lambda: access.require_target("sampler", "10.0.0.7:6379"))
    assert "'10.0.0.7:6379' is not a sampler this server may call" in message
    assert "not a sampler" in _message(lambda: AccessRoots({}, {}, False).require_target("sampler", "x:1"))
    assert AccessRoots({}, {}, True).require_target("sampler", "x:1") == "x:1"


def test_versions_only_grow_by_bounded_steps():
    check_version(1, 0)
    check_version(MAX_VERSION_STEP, 0)
    assert "not greater than the serving version 5" in _message(lambda: check_version(5, 5))
    pinned = _message(lambda: check_version(2**63 - 1, 3, "orm"))
    assert f"more than {MAX_VERSION_STEP} above the serving orm version 3" in pinned


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_check_range_refuses_non_finite_numbers(value):
    assert "not a finite number" in _message(lambda: check_range(value, 0, 60, "wall_time_s"))


def test_non_finite_numbers_are_found_in_nested_and_repeated_fields():
    assert non_finite_field(evaluator_pb2.RunProgramRequest(code="x", wall_time_s=1.0)) is None
    request = evaluator_pb2.EvaluateRequest(policy=evaluator_pb2.GradingPolicy(rel_tol=math.nan))
    assert non_finite_field(request) == "policy.rel_tol"
    response = reward_pb2.RewardResponse(
        results=[reward_pb2.RewardResult(reward=1.0), reward_pb2.RewardResult()]
    )
    response.results[1].steps.add(reward=math.inf)
    assert non_finite_field(response) == "results[1].steps.reward"
    scores = classifier_pb2.ScoreResponse(scores=[0.5, math.nan])
    assert non_finite_field(scores) == "scores"
    metrics = evaluator_pb2.EvaluateResult(metrics={"acc": 0.5, "maj@4": -math.inf})
    assert non_finite_field(metrics) == "metrics"


def test_the_program_queue_is_bounded_and_names_the_limit():
    async def scenario() -> tuple[list[str], int]:
        gate = Admission(slots=1, max_waiting=2, what="programs", flag="max-waiting-programs")
        release = asyncio.Event()
        outcomes: list[str] = []

        async def program(i: int) -> None:
            try:
                async with gate:
                    await release.wait()
                outcomes.append(f"ran {i}")
            except RequestError as exc:
                outcomes.append(exc.message)

        tasks = [asyncio.create_task(program(i)) for i in range(5)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*tasks)
        return outcomes, gate.waiting

    outcomes, waiting = asyncio.run(scenario())
    refused = [o for o in outcomes if not o.startswith("ran")]
    assert sorted(o for o in outcomes if o.startswith("ran")) == ["ran 0", "ran 1", "ran 2"]
    assert (
        refused
        == [
            "1 programs are running and 2 are waiting, the queue limit (--max-waiting-programs 2); "
            "retry later"
        ]
        * 2
    )
    assert waiting == 0


def test_a_prompt_far_over_the_token_limit_is_refused_by_its_bytes_before_tokenizing():
    limits = SamplerLimits(4, 8, 64, 32, 16, 2, 8, 128, 512)
    huge = sampler_pb2.GenerateRequest(prompts=[sampler_pb2.Prompt(text="x" * (10 << 20))])
    with pytest.raises(RequestError) as err:
        check_request(huge, limits, tokenizer=None)  # type: ignore[arg-type]  # never reached
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "prompt 0 is 10485760 bytes, over the 2048-byte limit" in err.value.message


def test_symlinked_roots_are_compared_resolved(tree):
    link = tree / "models-link"
    os.symlink(tree / "models", link)
    access = AccessRoots({"model": [str(link)]}, {}, open_when_unset=False)
    assert access.require_path("model", str(link / "v1")) == (tree / "models" / "v1").resolve()


def test_a_password_in_a_url_never_reaches_logs_or_info():
    assert redact_url("redis://:s3cret@mathforge-redis:6379/0") == "redis://:***@mathforge-redis:6379/0"
    assert redact_url("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("redis://mathforge-redis:6379/0") == "redis://mathforge-redis:6379/0"
