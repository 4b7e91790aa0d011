"""The agent's job (runner/jobs.py): the exact command lines and environment of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from runner import __version__
from runner.jobs import (
    TOOL_NAME,
    Deadlines,
    build_job,
    latency_argv,
    serve_point_argv,
    server_argv,
    throughput_argv,
    vendor_env,
)
from runner.plan import (
    EngineConfig,
    LatencyParams,
    ModelRef,
    Point,
    Run,
    ServeParams,
    ThroughputParams,
)
from runner.rundir import Job

VLLM = "/opt/venv/bin/vllm"
HOST = "127.0.0.1"
PORT = 8123


@pytest.fixture
def model(tmp_path: Path) -> ModelRef:
    directory = tmp_path / "tiny-llama"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    return ModelRef.resolve(str(directory))


def make_run(model: ModelRef, **overrides: object) -> Run:
    fields: dict[str, object] = {
        "run_id": "r1",
        "vendor": "cpu",
        "model": model,
        "engine": EngineConfig(max_model_len=1024),
        "scenarios": ("serve", "latency", "throughput"),
        "serve": ServeParams(qps=(1.0, math.inf), num_prompts=20),
        "latency": LatencyParams(batch_size=4, iters=3, warmup_iters=1),
        "throughput": ThroughputParams(num_prompts=50),
        "input_len": 64,
        "output_len": 32,
    }
    fields.update(overrides)
    return Run(**fields)  # type: ignore[arg-type]


def engine_tail() -> list[str]:
    return ["--tensor-parallel-size", "1", "--max-model-len", "1024", "--no-enable-prefix-caching"]


def test_model_is_absolute_local_path(model: ModelRef) -> None:
    assert model.local_path is not None
    assert Path(model.local_path).is_absolute()
    assert model.local_path.endswith("/tiny-llama")


def test_server_argv(model: ModelRef) -> None:
    run = make_run(model)
    path = model.local_path
    assert server_argv(run, VLLM, HOST, PORT) == [
        VLLM, "serve", path, "--host", "127.0.0.1", "--port", "8123", *engine_tail(),
    ]  # fmt: skip


def test_server_argv_sharegpt_leaves_prefix_caching_alone(model: ModelRef, tmp_path: Path) -> None:
    run = make_run(
        model,
        serve=ServeParams(qps=(1.0,), num_prompts=5, dataset="sharegpt", dataset_path="/d.json"),
    )
    assert server_argv(run, VLLM, HOST, PORT) == [
        VLLM, "serve", model.local_path, "--host", "127.0.0.1", "--port", "8123",
        "--tensor-parallel-size", "1", "--max-model-len", "1024",
    ]  # fmt: skip


def serve_common_head(path: str | None) -> list[str]:
    assert path is not None
    return [
        VLLM, "bench", "serve",
        "--backend", "openai",
        "--base-url", "http://127.0.0.1:8123",
        "--endpoint", "/v1/completions",
        "--model", path,
        "--tokenizer", path,
    ]  # fmt: skip


def serve_common_tail(point_id: str) -> list[str]:
    return [
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,90,99",
        "--seed", "0",
        "--disable-tqdm",
        "--save-result", "--save-detailed",
        "--result-dir", "raw",
        "--result-filename", f"{point_id}.json",
        "--metadata", "run_id=r1", f"point={point_id}",
    ]  # fmt: skip


def test_serve_point_argv_random(model: ModelRef) -> None:
    run = make_run(model)
    point = run.points()[0]
    assert point == Point("serve-qps1", "serve", 1.0, 20)
    assert serve_point_argv(run, point, VLLM, HOST, PORT) == [
        *serve_common_head(model.local_path),
        "--dataset-name", "random",
        "--random-input-len", "64",
        "--random-output-len", "32",
        "--ignore-eos",
        "--num-prompts", "20",
        "--request-rate", "1",
        *serve_common_tail("serve-qps1"),
    ]  # fmt: skip


def test_serve_point_argv_inf_with_concurrency_and_percentiles(model: ModelRef) -> None:
    run = make_run(
        model,
        serve=ServeParams(
            qps=(2.5, math.inf), num_prompts=8, max_concurrency=4, percentiles=(50.0, 99.9)
        ),
    )
    points = run.points()
    argv = serve_point_argv(run, points[1], VLLM, HOST, PORT)
    tail = serve_common_tail("serve-qpsinf")
    tail[3] = "50,99.9"
    assert argv == [
        *serve_common_head(model.local_path),
        "--dataset-name", "random",
        "--random-input-len", "64",
        "--random-output-len", "32",
        "--ignore-eos",
        "--num-prompts", "8",
        "--request-rate", "inf",
        "--max-concurrency", "4",
        *tail,
    ]  # fmt: skip
    first = serve_point_argv(run, points[0], VLLM, HOST, PORT)
    assert first[first.index("--request-rate") + 1] == "2.5"
    assert first[first.index("--result-filename") + 1] == "serve-qps2.5.json"


def test_serve_point_argv_sharegpt(model: ModelRef) -> None:
    run = make_run(
        model,
        serve=ServeParams(
            qps=(3.0,), num_prompts=12, dataset="sharegpt", dataset_path="/data/sharegpt.json"
        ),
    )
    point = run.points()[0]
    assert serve_point_argv(run, point, VLLM, HOST, PORT) == [
        *serve_common_head(model.local_path),
        "--dataset-name", "sharegpt",
        "--dataset-path", "/data/sharegpt.json",
        "--sharegpt-output-len", "32",
        "--num-prompts", "12",
        "--request-rate", "3",
        *serve_common_tail("serve-qps3"),
    ]  # fmt: skip


def test_serve_point_argv_sonnet(model: ModelRef) -> None:
    run = make_run(
        model,
        serve=ServeParams(qps=(1.0,), num_prompts=6, dataset="sonnet", dataset_path="/s.txt"),
    )
    point = run.points()[0]
    assert serve_point_argv(run, point, VLLM, HOST, PORT) == [
        *serve_common_head(model.local_path),
        "--dataset-name", "custom",
        "--dataset-path", "data/serve-qps1.sonnet.jsonl",
        "--custom-output-len", "32",
        "--skip-chat-template",
        "--num-prompts", "6",
        "--request-rate", "1",
        *serve_common_tail("serve-qps1"),
    ]  # fmt: skip


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


def test_build_job(model: ModelRef) -> None:
    run = make_run(model)
    deadlines = Deadlines(server_ready_s=60.0, server_stop_s=5.0, point_s=300.0)
    job = build_job(
        run,
        vllm=VLLM,
        host=HOST,
        port=PORT,
        deadlines=deadlines,
        executor={"name": "local"},
        commit="abc123",
    ).to_dict()
    assert Job.from_dict(job).to_dict() == job  # the agent reads back exactly what was built
    assert job["job_schema"] == 1
    assert job["tool"] == {"name": TOOL_NAME, "version": __version__, "git_commit": "abc123"}
    assert job["executor"] == {"name": "local"}
    assert job["vllm"] == VLLM
    assert job["env"] == {"HF_HUB_OFFLINE": "1"}
    assert job["server"] == {
        "argv": server_argv(run, VLLM, HOST, PORT),
        "health_url": "http://127.0.0.1:8123/health",
        "ready_timeout_s": 60.0,
        "stop_timeout_s": 5.0,
    }
    points = job["points"]
    assert [p["id"] for p in points] == ["serve-qps1", "serve-qpsinf", "latency", "throughput"]
    assert [p["result"] for p in points] == [
        "raw/serve-qps1.json",
        "raw/serve-qpsinf.json",
        "raw/latency.json",
        "raw/throughput.json",
    ]
    assert [p["expected"] for p in points] == [20, 20, 4, 50]
    assert [p["needs_server"] for p in points] == [True, True, False, False]
    assert [p["scenario"] for p in points] == ["serve", "serve", "latency", "throughput"]
    assert all(p["timeout_s"] == 300.0 for p in points)
    assert all("sonnet" not in p for p in points)
    assert points[2]["argv"] == latency_argv(run, VLLM)
    assert points[3]["argv"] == throughput_argv(run, VLLM)
    # the result file each benchmark writes is the one the job points at
    for p in points:
        argv = p["argv"]
        if p["scenario"] == "serve":
            written = f"raw/{argv[argv.index('--result-filename') + 1]}"
        else:
            written = argv[argv.index("--output-json") + 1]
        assert written == p["result"]
    # plain JSON all through: the agent reads it with json.loads
    assert json.loads(json.dumps(job, allow_nan=False))["run"]["serve"]["qps"] == [1.0, "inf"]


def test_build_job_without_serve_has_no_server(model: ModelRef) -> None:
    run = make_run(model, scenarios=("latency",))
    job = build_job(
        run,
        vllm=VLLM,
        host=HOST,
        port=PORT,
        deadlines=Deadlines(),
        executor={},
        commit=None,
    ).to_dict()
    assert job["server"] is None
    assert [p["id"] for p in job["points"]] == ["latency"]
    assert job["points"][0]["needs_server"] is False
    assert job["points"][0]["timeout_s"] == 3600.0
    assert job["tool"]["git_commit"] is None


def test_build_job_sonnet_entry(model: ModelRef) -> None:
    run = make_run(
        model,
        scenarios=("serve",),
        serve=ServeParams(qps=(2.0,), num_prompts=6, dataset="sonnet", dataset_path="/s.txt"),
    )
    job = build_job(
        run, vllm=VLLM, host=HOST, port=PORT, deadlines=Deadlines(), executor={}, commit=None
    ).to_dict()
    assert Job.from_dict(job).to_dict() == job
    assert job["points"][0]["sonnet"] == {
        "source": "/s.txt",
        "file": "data/serve-qps2.sonnet.jsonl",
        "num_prompts": 6,
        "input_len": 64,
    }


def test_vendor_env_local_model_is_offline(model: ModelRef) -> None:
    assert vendor_env(make_run(model)) == {"HF_HUB_OFFLINE": "1"}


def test_vendor_env_repo_id_stays_online() -> None:
    assert vendor_env(make_run(ModelRef(source="org/model"))) == {}


def test_vendor_env_user_wins(model: ModelRef) -> None:
    run = make_run(model, env=(("HF_HUB_OFFLINE", "0"), ("VLLM_CPU_KVCACHE_SPACE", "4")))
    assert vendor_env(run) == {"HF_HUB_OFFLINE": "0", "VLLM_CPU_KVCACHE_SPACE": "4"}
