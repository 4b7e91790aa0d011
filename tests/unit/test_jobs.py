"""The agent's job (runner/jobs.py): the exact command lines and environment of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner import __version__
from runner.jobs import TOOL_NAME, Deadlines, build_job, server_argv, vendor_env
from runner.plan import ModelRef
from runner.rundir import Job
from runner.scenarios.latency import latency_argv
from runner.scenarios.serve import ServeParams
from runner.scenarios.throughput import throughput_argv
from tests.unit.job_runs import HOST, PORT, VLLM, engine_tail, local_model, make_run


@pytest.fixture
def model(tmp_path: Path) -> ModelRef:
    return local_model(tmp_path)


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
        serve=ServeParams(
            qps=(2.0,), num_prompts=6, dataset="sonnet", dataset_path="/s.txt", prefix_len=16
        ),
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
        "prefix_len": 16,
    }


def test_vendor_env_local_model_is_offline(model: ModelRef) -> None:
    assert vendor_env(make_run(model)) == {"HF_HUB_OFFLINE": "1"}


def test_vendor_env_repo_id_stays_online() -> None:
    assert vendor_env(make_run(ModelRef(source="org/model"))) == {}


def test_vendor_env_user_wins(model: ModelRef) -> None:
    run = make_run(model, env=(("HF_HUB_OFFLINE", "0"), ("VLLM_CPU_KVCACHE_SPACE", "4")))
    assert vendor_env(run) == {"HF_HUB_OFFLINE": "0", "VLLM_CPU_KVCACHE_SPACE": "4"}
