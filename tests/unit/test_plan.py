"""Plan validation (runner/plan.py): every flag parsed and checked before anything starts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from runner.errors import PlanError
from runner.plan import (
    EngineConfig,
    LatencyParams,
    ModelRef,
    Plan,
    Run,
    ServeParams,
    ThroughputParams,
    parse_engine_args,
    parse_env,
    parse_percentiles,
    parse_qps_list,
)


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
    return Run(**fields)  # type: ignore[arg-type]


REPO = ModelRef(source="meta-llama/Llama-3.1-8B")


# -- parse_qps_list ------------------------------------------------------------------------------


def test_qps_list_parses_rates_in_order() -> None:
    assert parse_qps_list("1,3,5") == (1.0, 3.0, 5.0)
    assert parse_qps_list(" 0.5 , 2 ") == (0.5, 2.0)


def test_qps_inf_in_any_case() -> None:
    assert parse_qps_list("inf") == (math.inf,)
    assert parse_qps_list("1,INF") == (1.0, math.inf)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("0", "'0'"),
        ("-1", "'-1'"),
        ("abc", "'abc'"),
        ("1,abc,3", "'abc'"),
        ("", "''"),
        ("1,1", "'1,1'"),
        ("1,1.0", "'1,1.0'"),
        ("nan", "'nan'"),
        ("inf,inf", "'inf,inf'"),
    ],
)
def test_qps_rejects_bad_items_naming_them(text: str, named: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_qps_list(text)
    message = str(info.value)
    assert message.startswith("--qps: ")
    assert named in message


def test_qps_duplicate_message_says_twice() -> None:
    with pytest.raises(PlanError, match="names a rate twice"):
        parse_qps_list("2,3,2")


def test_qps_rates_that_collapse_to_one_point_id_are_rejected_or_kept_apart() -> None:
    try:
        rates = parse_qps_list("1,1.0000001")
    except PlanError:
        return  # rejecting them is a fine answer
    run = make_run(REPO, serve=ServeParams(qps=rates, num_prompts=5))
    ids = [p.id for p in run.points()]
    assert len(set(ids)) == len(ids), ids


# -- parse_percentiles ---------------------------------------------------------------------------


def test_percentiles_parse() -> None:
    assert parse_percentiles("50,90,99") == (50.0, 90.0, 99.0)
    assert parse_percentiles("99.9") == (99.9,)
    assert parse_percentiles("50,,90") == (50.0, 90.0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0", "0"),
        ("100", "100"),
        ("-5", "-5"),
        ("abc", "'abc'"),
        ("", "at least one"),
        ("50,nan", "nan"),
    ],
)
def test_percentiles_reject(text: str, fragment: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_percentiles(text)
    assert str(info.value).startswith("--percentiles: ")
    assert fragment in str(info.value)


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


# -- ServeParams / Latency / Throughput ----------------------------------------------------------


def test_serve_inf_needs_num_prompts() -> None:
    with pytest.raises(PlanError, match="--qps inf"):
        ServeParams(qps=(1.0, math.inf))
    assert ServeParams(qps=(math.inf,), num_prompts=10).prompts_for(math.inf) == 10


def test_serve_prompts_for() -> None:
    serve = ServeParams(qps=(1.0, 2.5), seconds_per_point=10.0)
    assert serve.prompts_for(1.0) == 10
    assert serve.prompts_for(2.5) == 25
    assert serve.prompts_for(0.33) == 3  # round(3.3)
    assert serve.prompts_for(0.36) == 4  # round(3.6)
    assert ServeParams(seconds_per_point=1.0).prompts_for(0.1) == 1  # never 0
    assert ServeParams(seconds_per_point=10.0, num_prompts=7).prompts_for(9.0) == 7


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"dataset": "bogus"}, "--dataset 'bogus'"),
        ({"dataset": "sharegpt"}, "needs --dataset-path"),
        ({"dataset": "sonnet"}, "needs --dataset-path"),
        ({"num_prompts": 0}, "--num-prompts 0"),
        ({"seconds_per_point": 0.0}, "--seconds-per-point 0.0"),
        ({"seconds_per_point": None}, "give --seconds-per-point or --num-prompts"),
        ({"max_concurrency": 0}, "--max-concurrency 0"),
    ],
)
def test_serve_bad_values(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(PlanError) as info:
        ServeParams(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


@pytest.mark.parametrize("seconds", [math.inf, math.nan])
def test_serve_non_finite_seconds_rejected(seconds: float) -> None:
    with pytest.raises(PlanError, match="--seconds-per-point"):
        ServeParams(qps=(1.0,), seconds_per_point=seconds)


def test_latency_and_throughput_bounds() -> None:
    with pytest.raises(PlanError, match="--batch-size"):
        LatencyParams(batch_size=0)
    with pytest.raises(PlanError, match="--warmup-iters"):
        LatencyParams(warmup_iters=-1)
    assert LatencyParams(warmup_iters=0).warmup_iters == 0
    with pytest.raises(PlanError, match="--num-prompts 0"):
        ThroughputParams(num_prompts=0)


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
