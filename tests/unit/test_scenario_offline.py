"""The offline scenarios (runner/scenarios/latency.py, throughput.py): parameters, argv, judges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.agent.judge import Verdict, judge_point, judge_result
from runner.errors import PlanError
from runner.plan import EngineConfig, ModelRef, Point
from runner.rundir import FAILED, OK
from runner.scenarios.latency import LATENCY, LatencyParams, latency_argv
from runner.scenarios.throughput import THROUGHPUT, ThroughputParams, throughput_argv
from tests.unit.job_runs import VLLM, engine_tail, local_model, make_run

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "vllm-0.32.0-cpu"


@pytest.fixture
def model(tmp_path: Path) -> ModelRef:
    return local_model(tmp_path)


def judge_latency(path: Path, expected: int) -> Verdict:
    return judge_result("latency", path, expected)


def judge_throughput(path: Path, expected: int) -> Verdict:
    return judge_result("throughput", path, expected)


# -- parameters -----------------------------------------------------------------------------------


def test_params_from_flags() -> None:
    flags = {"batch_size": 4, "iters": 3, "warmup_iters": 0, "num_prompts": None}
    assert LATENCY.params_from(flags) == LatencyParams(batch_size=4, iters=3, warmup_iters=0)
    assert THROUGHPUT.params_from(flags) == ThroughputParams()  # 1000 prompts by default
    assert THROUGHPUT.params_from({**flags, "num_prompts": 50}) == ThroughputParams(50)


def test_points(model: ModelRef) -> None:
    run = make_run(model)
    assert LATENCY.points(run) == [Point("latency", "latency", num_prompts=4)]
    assert THROUGHPUT.points(run) == [Point("throughput", "throughput", num_prompts=50)]


def test_latency_and_throughput_bounds() -> None:
    with pytest.raises(PlanError, match="--batch-size"):
        LatencyParams(batch_size=0)
    with pytest.raises(PlanError, match="--warmup-iters"):
        LatencyParams(warmup_iters=-1)
    assert LatencyParams(warmup_iters=0).warmup_iters == 0
    with pytest.raises(PlanError, match="--num-prompts 0"):
        ThroughputParams(num_prompts=0)


# -- argv ----------------------------------------------------------------------------------------


def test_latency_argv(model: ModelRef) -> None:
    run = make_run(model)
    assert latency_argv(run, VLLM) == [
        VLLM, "bench", "latency",
        "--model", model.local_path,
        "--input-len", "64",
        "--output-len", "32",
        "--batch-size", "4",
        "--num-iters-warmup", "1",
        "--num-iters", "3",
        "--seed", "0",
        "--output-json", "raw/latency.json",
        *engine_tail(),
    ]  # fmt: skip


def test_throughput_argv(model: ModelRef) -> None:
    run = make_run(model)
    assert throughput_argv(run, VLLM) == [
        VLLM, "bench", "throughput",
        "--backend", "vllm",
        "--model", model.local_path,
        "--dataset-name", "random",
        "--random-input-len", "64",
        "--random-output-len", "32",
        "--num-prompts", "50",
        "--seed", "0",
        "--output-json", "raw/throughput.json",
        *engine_tail(),
    ]  # fmt: skip


def test_offline_argv_use_repo_id_as_is() -> None:
    repo = ModelRef(source="org/model")
    run = make_run(repo, engine=EngineConfig(prefix_caching=True))
    argv = latency_argv(run, "vllm")
    assert argv[3:5] == ["--model", "org/model"]
    assert argv[-3:] == ["--tensor-parallel-size", "1", "--enable-prefix-caching"]


# -- judges --------------------------------------------------------------------------------------


def test_judge_latency() -> None:
    assert judge_latency(FIXTURES / "latency.json", 4).verdict == OK
    assert judge_point("latency", FIXTURES / "latency.json", 4, 0, False, None).ok


def test_judge_latency_without_positive_value(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    path.write_text(json.dumps({"avg_latency": 0}))
    verdict = judge_latency(path, 4)
    assert verdict.verdict == FAILED
    assert verdict.reasons == ["the result has no positive avg_latency"]
    assert judge_latency(tmp_path / "nope.json", 4).reasons == ["nope.json was not written"]


def test_judge_throughput() -> None:
    assert judge_throughput(FIXTURES / "throughput.json", 20).verdict == OK
    mismatch = judge_throughput(FIXTURES / "throughput.json", 25)
    assert mismatch.verdict == FAILED
    assert mismatch.reasons == ["ran 20 of 25 prompts"]


def test_judge_throughput_without_rate(tmp_path: Path) -> None:
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps({"requests_per_second": 0.0, "num_requests": 3}))
    assert judge_throughput(path, 5).reasons == [
        "the result has no positive requests_per_second",
        "ran 3 of 5 prompts",
    ]
