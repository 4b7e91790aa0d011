"""Turn a planned Run into the agent's job: exact argv lists and environment (pure)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import __version__
from runner.plan import Point, Run, format_rate
from runner.rundir import Job, PointJob, ServerJob, SonnetJob, raw_result

TOOL_NAME = "vllm-bench-images"


@dataclass(frozen=True)
class Deadlines:
    """How long the agent waits for each thing before it gives up."""

    server_ready_s: float = 1200.0
    server_stop_s: float = 30.0
    point_s: float = 3600.0


@dataclass(frozen=True)
class PathMap:
    """The run's files as the agent sees them: this host's paths, or where a container mounts them.

    Computed once per run by the executor; the same map gives the container's mounts and the
    job's command lines, so the two cannot disagree.
    """

    model: str  # what vLLM is given as the model and tokenizer
    dataset: str | None = None  # the --dataset-path file

    @classmethod
    def host(cls, run: Run) -> PathMap:
        return cls(model=run.model.path_or_id, dataset=run.serve.dataset_path)


def _percentiles(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def vendor_env(run: Run) -> dict[str, str]:
    """Environment every command of the run gets: the user's --env over the tool's defaults."""
    env: dict[str, str] = {}
    if run.model.local_path is not None:
        env["HF_HUB_OFFLINE"] = "1"  # a local directory needs nothing from the hub
    env.update(dict(run.env))
    return env


def server_argv(
    run: Run, vllm: str, host: str, port: int, paths: PathMap | None = None
) -> list[str]:
    random_data = run.serve.dataset == "random"
    model = (paths or PathMap.host(run)).model
    return [
        vllm, "serve", model, "--host", host, "--port", str(port),
        *run.engine.args(random_data=random_data),
    ]  # fmt: skip


def serve_point_argv(
    run: Run, point: Point, vllm: str, host: str, port: int, paths: PathMap | None = None
) -> list[str]:
    assert point.qps is not None and point.num_prompts is not None
    serve = run.serve
    paths = paths or PathMap.host(run)
    if serve.dataset == "random":
        dataset = [
            "--dataset-name", "random",
            "--random-input-len", str(run.input_len),
            "--random-output-len", str(run.output_len),
            "--ignore-eos",
        ]  # fmt: skip
    elif serve.dataset == "sharegpt":
        assert paths.dataset is not None
        dataset = [
            "--dataset-name", "sharegpt",
            "--dataset-path", paths.dataset,
            "--sharegpt-output-len", str(run.output_len),
        ]  # fmt: skip
    else:  # sonnet: vLLM dropped its sonnet loader; the agent feeds the prompts as a custom set
        dataset = [
            "--dataset-name", "custom",
            "--dataset-path", sonnet_prompts_file(point),
            "--custom-output-len", str(run.output_len),
            "--skip-chat-template",
        ]  # fmt: skip
    concurrency = (
        [] if serve.max_concurrency is None else ["--max-concurrency", str(serve.max_concurrency)]
    )
    return [
        vllm, "bench", "serve",
        "--backend", "openai",
        "--base-url", f"http://{host}:{port}",
        "--endpoint", "/v1/completions",
        "--model", paths.model,
        "--tokenizer", paths.model,
        *dataset,
        "--num-prompts", str(point.num_prompts),
        "--request-rate", format_rate(point.qps),
        *concurrency,
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", _percentiles(serve.percentiles),
        "--seed", "0",
        "--disable-tqdm",
        "--save-result", "--save-detailed",
        "--result-dir", "raw",
        "--result-filename", f"{point.id}.json",
        "--metadata", f"run_id={run.run_id}", f"point={point.id}",
    ]  # fmt: skip


def sonnet_prompts_file(point: Point) -> str:
    """Where the agent writes the sonnet prompts of a point, relative to the run directory."""
    return f"data/{point.id}.sonnet.jsonl"


def latency_argv(run: Run, vllm: str, paths: PathMap | None = None) -> list[str]:
    lat = run.latency
    return [
        vllm, "bench", "latency",
        "--model", (paths or PathMap.host(run)).model,
        "--input-len", str(run.input_len),
        "--output-len", str(run.output_len),
        "--batch-size", str(lat.batch_size),
        "--num-iters-warmup", str(lat.warmup_iters),
        "--num-iters", str(lat.iters),
        "--seed", "0",
        "--output-json", "raw/latency.json",
        *run.engine.args(random_data=True),
    ]  # fmt: skip


def throughput_argv(run: Run, vllm: str, paths: PathMap | None = None) -> list[str]:
    return [
        vllm, "bench", "throughput",
        "--backend", "vllm",
        "--model", (paths or PathMap.host(run)).model,
        "--dataset-name", "random",
        "--random-input-len", str(run.input_len),
        "--random-output-len", str(run.output_len),
        "--num-prompts", str(run.throughput.num_prompts),
        "--seed", "0",
        "--output-json", "raw/throughput.json",
        *run.engine.args(random_data=True),
    ]  # fmt: skip


def git_commit(directory: Path | None = None) -> str | None:
    """The tool's git commit, when it runs from a checkout."""
    where = directory or Path(__file__).resolve().parent
    try:
        proc = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def _point_job(run: Run, point: Point, argv: list[str], deadlines: Deadlines,
               paths: PathMap) -> PointJob:  # fmt: skip
    sonnet = None
    if point.scenario == "serve" and run.serve.dataset == "sonnet":
        assert paths.dataset is not None and point.num_prompts is not None
        sonnet = SonnetJob(paths.dataset, sonnet_prompts_file(point), point.num_prompts,
                           run.input_len)  # fmt: skip
    return PointJob(
        id=point.id,
        scenario=point.scenario,
        argv=tuple(argv),
        result=raw_result(point.id),
        expected=point.num_prompts,
        needs_server=point.scenario == "serve",
        timeout_s=deadlines.point_s,
        sonnet=sonnet,
    )


def run_record(run: Run, paths: PathMap) -> dict[str, Any]:
    """run.json as the agent sees the run: the model and dataset at the paths it reads them from.

    No host path reaches a container's job; the host's paths are in provenance's mounts.
    """
    data = run.to_dict()
    local = run.model.local_path
    if local is not None and paths.model != local:
        data["model"]["local_path"] = paths.model
        if data["model"]["source"] == local:
            data["model"]["source"] = paths.model
    if paths.dataset != run.serve.dataset_path:
        data["serve"]["dataset_path"] = paths.dataset
    return data


def build_job(
    run: Run,
    *,
    vllm: str,
    host: str,
    port: int,
    deadlines: Deadlines,
    executor: dict[str, Any],
    commit: str | None,
    paths: PathMap | None = None,
) -> Job:
    """The agent's job: every command line it runs, its environment and its deadlines."""
    paths = paths or PathMap.host(run)
    points: list[PointJob] = []
    for point in run.points():
        if point.scenario == "serve":
            argv = serve_point_argv(run, point, vllm, host, port, paths)
        elif point.scenario == "latency":
            argv = latency_argv(run, vllm, paths)
        else:
            argv = throughput_argv(run, vllm, paths)
        points.append(_point_job(run, point, argv, deadlines, paths))
    server = None
    if any(p.needs_server for p in points):
        server = ServerJob(
            argv=tuple(server_argv(run, vllm, host, port, paths)),
            health_url=f"http://{host}:{port}/health",
            ready_timeout_s=deadlines.server_ready_s,
            stop_timeout_s=deadlines.server_stop_s,
        )
    return Job(
        run=run_record(run, paths),
        vllm=vllm,
        points=tuple(points),
        server=server,
        env=vendor_env(run),
        tool={"name": TOOL_NAME, "version": __version__, "git_commit": commit},
        executor=executor,
    )
