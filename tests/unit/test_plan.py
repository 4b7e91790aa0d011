"""Plan validation (runner/plan.py): every flag parsed and checked before anything starts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from runner.errors import PlanError
from runner.plan import EngineConfig, ModelRef, Plan, Run, parse_engine_args, parse_env
from runner.scenarios.accuracy import AccuracyParams
from runner.scenarios.latency import LatencyParams
from runner.scenarios.serve import ServeParams
from runner.scenarios.throughput import ThroughputParams
from tests.unit.job_runs import with_params


def make_model_dir(root: Path, config: dict[str, object] | None = None) -> Path:
    model = root / "tiny"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(config or {}))
    return model


def make_run(model: ModelRef, **overrides: object) -> Run:
    fields: dict[str, object] = {
        "run_id": "r1",
        "vendor": "cpu",
        "model": model,
        "engine": EngineConfig(),
        "input_len": 64,
        "output_len": 32,
    }
    fields.update(overrides)
    return Run(**with_params(fields))  # type: ignore[arg-type]


REPO = ModelRef(source="meta-llama/Llama-3.1-8B")


# -- parse_engine_args / parse_env ---------------------------------------------------------------


def test_engine_args_switch_and_values() -> None:
    assert parse_engine_args(["enforce-eager"]) == (("enforce-eager", None),)
    assert parse_engine_args(["block_size=16"]) == (("block-size", "16"),)
    assert parse_engine_args(["--foo=bar"]) == (("foo", "bar"),)
    assert parse_engine_args(["swap-space=4", "enforce_eager"]) == (
        ("swap-space", "4"),
        ("enforce-eager", None),
    )
    assert parse_engine_args(['override-generation-config={"a": 1}']) == (
        ("override-generation-config", '{"a": 1}'),
    )
    assert parse_engine_args([]) == ()


@pytest.mark.parametrize("item", ["bad key", "=16", "Block-Size=16", "--", "", "a.b=1", "-=1"])
def test_engine_args_reject_bad_keys(item: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_engine_args([item])
    assert str(info.value).startswith(f"--engine-arg {item!r}")


def test_env_parses_pairs() -> None:
    assert parse_env(["A=1", "VLLM_CPU_KVCACHE_SPACE=4", "EMPTY=", "X=a=b"]) == (
        ("A", "1"),
        ("VLLM_CPU_KVCACHE_SPACE", "4"),
        ("EMPTY", ""),
        ("X", "a=b"),
    )


@pytest.mark.parametrize("item", ["NOVALUE", "1A=2", "A-B=1", "=1", "A B=1"])
def test_env_rejects(item: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_env([item])
    assert str(info.value).startswith(f"--env {item!r}")


# -- ModelRef ------------------------------------------------------------------------------------


def test_model_local_dir_resolves_absolute(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path)
    ref = ModelRef.resolve("./tiny", cwd=tmp_path)
    assert ref.source == "./tiny"
    assert ref.local_path == str(model.resolve())
    assert Path(ref.local_path).is_absolute()
    assert ref.path_or_id == str(model.resolve())
    assert ref.short_name == "tiny"


def test_model_absolute_dir(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path)
    ref = ModelRef.resolve(str(model))
    assert ref.local_path == str(model.resolve())


def test_model_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="does not exist") as info:
        ModelRef.resolve("./nope", cwd=tmp_path)
    assert str(tmp_path / "nope") in str(info.value)


def test_model_dir_without_config(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError, match=r"has no config\.json"):
        ModelRef.resolve("./empty", cwd=tmp_path)


def test_model_repo_id(tmp_path: Path) -> None:
    ref = ModelRef.resolve("meta-llama/Llama-3.1-8B", cwd=tmp_path)
    assert ref == ModelRef(source="meta-llama/Llama-3.1-8B", local_path=None)
    assert ref.path_or_id == "meta-llama/Llama-3.1-8B"
    assert ref.short_name == "Llama-3.1-8B"
    assert ref.max_position_embeddings() is None


@pytest.mark.parametrize("text", ["", "   ", "a/b/c", "bad name/x", "/"])
def test_model_rejects_nonsense(tmp_path: Path, text: str) -> None:
    with pytest.raises(PlanError):
        ModelRef.resolve(text, cwd=tmp_path)


def test_model_max_position_embeddings(tmp_path: Path) -> None:
    make_model_dir(tmp_path, {"max_position_embeddings": 2048})
    assert ModelRef.resolve("./tiny", cwd=tmp_path).max_position_embeddings() == 2048


def test_model_bad_config_json(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path)
    (model / "config.json").write_text("{not json")
    ref = ModelRef.resolve(str(model))
    with pytest.raises(PlanError, match="cannot read"):
        ref.max_position_embeddings()


# -- EngineConfig --------------------------------------------------------------------------------


def test_engine_default_args_random_turns_prefix_caching_off() -> None:
    engine = EngineConfig()
    assert engine.args(random_data=True) == [
        "--tensor-parallel-size",
        "1",
        "--no-enable-prefix-caching",
    ]
    assert engine.args(random_data=False) == ["--tensor-parallel-size", "1"]


@pytest.mark.parametrize("random_data", [True, False])
def test_engine_explicit_prefix_caching_is_honoured(random_data: bool) -> None:
    on = EngineConfig(prefix_caching=True).args(random_data=random_data)
    off = EngineConfig(prefix_caching=False).args(random_data=random_data)
    assert on == ["--tensor-parallel-size", "1", "--enable-prefix-caching"]
    assert off == ["--tensor-parallel-size", "1", "--no-enable-prefix-caching"]


def test_engine_chunked_prefill() -> None:
    assert EngineConfig(chunked_prefill=True).args(random_data=False) == [
        "--tensor-parallel-size",
        "1",
        "--enable-chunked-prefill",
    ]
    assert EngineConfig(chunked_prefill=False).args(random_data=False) == [
        "--tensor-parallel-size",
        "1",
        "--no-enable-chunked-prefill",
    ]


def test_engine_full_args_in_order() -> None:
    engine = EngineConfig(
        tp=4,
        dtype="bfloat16",
        quantization="fp8",
        kv_cache_dtype="fp8",
        max_model_len=4096,
        max_num_seqs=128,
        max_num_batched_tokens=8192,
        gpu_memory_utilization=0.9,
        chunked_prefill=True,
        extra_args=(("enforce-eager", None), ("block-size", "16")),
    )
    assert engine.args(random_data=True) == [
        "--tensor-parallel-size", "4",
        "--dtype", "bfloat16",
        "--quantization", "fp8",
        "--kv-cache-dtype", "fp8",
        "--max-model-len", "4096",
        "--max-num-seqs", "128",
        "--max-num-batched-tokens", "8192",
        "--gpu-memory-utilization", "0.9",
        "--enable-chunked-prefill",
        "--no-enable-prefix-caching",
        "--enforce-eager",
        "--block-size", "16",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "key",
    [
        "tensor-parallel-size",
        "tp",
        "max-model-len",
        "enable-prefix-caching",
        "no-enable-chunked-prefill",
        "port",
        "host",
        "model",
        "gpu-memory-utilization",
    ],
)
def test_engine_reserved_extra_args_raise(key: str) -> None:
    with pytest.raises(PlanError, match=f"--engine-arg {key}: this setting has its own"):
        EngineConfig(extra_args=((key, "1"),))


def test_engine_reserved_via_parse_engine_args() -> None:
    with pytest.raises(PlanError, match="--engine-arg max-model-len"):
        EngineConfig(extra_args=parse_engine_args(["max_model_len=4096"]))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"tp": 0}, "--tp 0"),
        ({"max_model_len": 0}, "--max-model-len 0"),
        ({"max_num_seqs": -1}, "--max-num-seqs -1"),
        ({"gpu_memory_utilization": 0.0}, "--gpu-memory-utilization 0.0"),
        ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization 1.5"),
    ],
)
def test_engine_bad_values(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(PlanError) as info:
        EngineConfig(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


# -- Run -----------------------------------------------------------------------------------------


def test_run_unknown_vendor() -> None:
    with pytest.raises(PlanError, match="unknown vendor 'foo': choose one of nvidia, amd, cpu"):
        make_run(REPO, vendor="foo")


def test_run_unknown_scenario() -> None:
    with pytest.raises(PlanError, match="unknown scenario 'bogus'"):
        make_run(REPO, scenarios=("serve", "bogus"))
    with pytest.raises(PlanError, match="at least one --scenario"):
        make_run(REPO, scenarios=())


def test_run_lengths_must_be_positive() -> None:
    with pytest.raises(PlanError, match="at least 1 token"):
        make_run(REPO, input_len=0)


def test_run_too_long_for_max_model_len() -> None:
    with pytest.raises(PlanError) as info:
        make_run(REPO, engine=EngineConfig(max_model_len=2048), input_len=2000, output_len=100)
    message = str(info.value)
    assert "2100" in message
    assert "2048" in message
    assert "--max-model-len" in message
    # exactly at the limit is fine
    run = make_run(REPO, engine=EngineConfig(max_model_len=2048), input_len=2000, output_len=48)
    assert run.input_len + run.output_len == 2048


def test_run_too_long_for_model_config(tmp_path: Path) -> None:
    model = ModelRef.resolve(str(make_model_dir(tmp_path, {"max_position_embeddings": 2048})))
    with pytest.raises(PlanError) as info:
        make_run(model, input_len=2000, output_len=100)
    assert "2100" in str(info.value)
    assert "max_position_embeddings (2048)" in str(info.value)
    # --max-model-len takes precedence over the config
    run = make_run(model, engine=EngineConfig(max_model_len=4096), input_len=2000, output_len=100)
    assert run.engine.max_model_len == 4096


def test_run_points_order_and_ids() -> None:
    run = make_run(
        REPO,
        scenarios=("throughput", "latency", "serve"),
        serve=ServeParams(qps=(1.0, math.inf), num_prompts=20),
        latency=LatencyParams(batch_size=4),
        throughput=ThroughputParams(num_prompts=50),
    )
    points = run.points()
    assert [p.id for p in points] == ["serve-qps1", "serve-qpsinf", "latency", "throughput"]
    assert [p.scenario for p in points] == ["serve", "serve", "latency", "throughput"]
    assert [p.qps for p in points] == [1.0, math.inf, None, None]
    assert [p.num_prompts for p in points] == [20, 20, 4, 50]


def test_run_points_fractional_rate_and_seconds() -> None:
    run = make_run(REPO, serve=ServeParams(qps=(0.5, 2.5), seconds_per_point=30.0))
    assert [(p.id, p.num_prompts) for p in run.points()] == [
        ("serve-qps0.5", 15),
        ("serve-qps2.5", 75),
    ]


def test_run_to_dict_is_strict_json() -> None:
    run = make_run(
        REPO,
        scenarios=("serve", "latency"),
        serve=ServeParams(qps=(1.0, math.inf), num_prompts=20),
        engine=EngineConfig(extra_args=(("enforce-eager", None),)),
        env=(("VLLM_CPU_KVCACHE_SPACE", "4"),),
    )
    data = run.to_dict()
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["schema"] == 1
    assert back["run_id"] == "r1"
    assert back["serve"]["qps"] == [1.0, "inf"]
    assert back["env"] == {"VLLM_CPU_KVCACHE_SPACE": "4"}
    assert back["engine"]["extra_args"] == [["enforce-eager", None]]
    assert back["model"] == {"source": "meta-llama/Llama-3.1-8B", "local_path": None}
    assert back["points"] == [
        {"id": "serve-qps1", "scenario": "serve", "qps": 1.0, "num_prompts": 20},
        {"id": "serve-qpsinf", "scenario": "serve", "qps": "inf", "num_prompts": 20},
        {"id": "latency", "scenario": "latency", "qps": None, "num_prompts": 8},
    ]


def test_plan_rejects_empty_and_duplicate_ids() -> None:
    with pytest.raises(PlanError, match="empty"):
        Plan(runs=())
    run = make_run(REPO)
    with pytest.raises(PlanError, match="share a run id"):
        Plan(runs=(run, run))


def test_run_holds_every_scenarios_params_defaults_for_the_others() -> None:
    serve = ServeParams(qps=(2.0,), num_prompts=4)
    run = make_run(REPO, scenarios=("latency",), serve=serve)
    assert run.params == {
        "serve": serve,
        "accuracy": AccuracyParams(),  # --scenario accuracy (lm-eval), registered after serve
        "latency": LatencyParams(),
        "throughput": ThroughputParams(),
    }
    assert (run.serve, run.latency, run.throughput) == (serve, LatencyParams(), ThroughputParams())
    assert list(run.to_dict()) == [
        "run_id", "vendor", "model", "engine", "scenarios", "serve", "accuracy", "latency",
        "throughput", "input_len", "output_len", "env", "image", "schema", "points",
    ]  # fmt: skip


def test_run_refuses_another_scenarios_params_and_unknown_ones() -> None:
    with pytest.raises(PlanError, match="scenario serve: parameters must be ServeParams"):
        make_run(REPO, serve=LatencyParams())
    with pytest.raises(PlanError, match=r"parameters for unknown scenario\(s\): bogus"):
        make_run(REPO, params={"bogus": LatencyParams()})
