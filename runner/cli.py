"""`bench-run`: plan a benchmark from flags, check it, run it with an executor, show the table."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click

from results.errors import ResultsError
from results.formats import render_table
from results.records import records_from_run
from results.rundir import load_run
from runner import __version__
from runner.agent.gpus import detect_vendor
from runner.errors import BenchError, PlanError, RunFailed
from runner.executors.base import Executor, RunOutcome
from runner.executors.docker import DockerExecutor, DockerSettings, reap_containers
from runner.executors.docker import connect as docker_connect
from runner.executors.local import LocalExecutor, LocalSettings
from runner.images import docker_ops
from runner.images.catalog import load_catalog, resolve_image_choice
from runner.jobs import Deadlines
from runner.models import DEFAULT_ENDPOINT, DEFAULT_EXCLUDE, HubSettings, ModelFetch, resolve_plan
from runner.plan import (
    EngineConfig,
    LatencyParams,
    ModelRef,
    Plan,
    Run,
    ServeParams,
    ThroughputParams,
    make_run_id,
    parse_engine_args,
    parse_env,
    parse_percentiles,
    parse_qps_list,
)
from runner.progress import ConsoleReporter
from runner.rundir import EXIT_INTERRUPTED
from runner.vendors import parse_gpus, profile_for

EXECUTORS = ("auto", "local", "docker")
# flags that only mean something for a container; with --executor auto they choose docker
_CONTAINER_FLAGS = (
    "image", "gpus", "cpus", "shm_size", "privileged", "keep",
    "base_image", "wheelhouse", "pip_extra_index_url",
)  # fmt: skip


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class OneLineErrors(click.Command):
    """Usage errors and BenchErrors end as one line on stderr, never a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(2)
        except click.UsageError as exc:
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
            _fail(f"{exc.format_message()}{hint}", 2)
        except click.exceptions.Abort:
            _fail("aborted", EXIT_INTERRUPTED)
        except BenchError as exc:
            _fail(str(exc), exc.exit_code)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def build_plan(opts: dict[str, Any]) -> Plan:
    """Validate every flag and assemble the plan; raises PlanError naming the bad one."""
    vendor = opts["vendor"] or detect_vendor()
    model = ModelRef.resolve(opts["model"])
    engine = EngineConfig(
        tp=opts["tp"],
        dtype=opts["dtype"],
        quantization=opts["quantization"],
        kv_cache_dtype=opts["kv_cache_dtype"],
        max_model_len=opts["max_model_len"],
        max_num_seqs=opts["max_num_seqs"],
        max_num_batched_tokens=opts["max_num_batched_tokens"],
        gpu_memory_utilization=opts["gpu_memory_utilization"],
        chunked_prefill=opts["chunked_prefill"],
        prefix_caching=opts["prefix_caching"],
        extra_args=parse_engine_args(opts["engine_arg"]),
    )
    dataset_path = opts["dataset_path"]
    if dataset_path is not None:
        resolved = Path(dataset_path).expanduser().resolve()
        if not resolved.is_file():
            raise PlanError(f"--dataset-path {dataset_path}: no such file")
        dataset_path = str(resolved)
    num_prompts = opts["num_prompts"]
    serve = ServeParams(
        qps=parse_qps_list(opts["qps"]),
        seconds_per_point=None if num_prompts is not None else opts["seconds_per_point"],
        num_prompts=num_prompts,
        max_concurrency=opts["max_concurrency"],
        dataset=opts["dataset"],
        dataset_path=dataset_path,
        percentiles=parse_percentiles(opts["percentiles"]),
    )
    scenarios = tuple(dict.fromkeys(opts["scenario"] or ("serve",)))
    run = Run(
        run_id=make_run_id(model, vendor, engine),
        vendor=vendor,
        model=model,
        engine=engine,
        scenarios=scenarios,
        serve=serve,
        latency=LatencyParams(
            batch_size=opts["batch_size"], iters=opts["iters"], warmup_iters=opts["warmup_iters"]
        ),
        throughput=ThroughputParams(num_prompts=num_prompts or 1000),
        input_len=opts["input_len"],
        output_len=opts["output_len"],
        env=parse_env(opts["env"]),
        image=resolve_image_choice(opts["image"], load_catalog()) if opts["image"] else None,
    )
    return Plan(runs=(run,))


def engine_answers(environ: dict[str, str]) -> bool:
    """True if a Docker engine answers at DOCKER_HOST (or the default socket)."""
    try:
        docker_ops.connect(environ)
    except docker_ops.DockerError:
        return False
    return True


def choose_executor(opts: dict[str, Any], environ: dict[str, str]) -> tuple[str, str]:
    """The executor `--executor auto` means here, and why (empty when it was named)."""
    if opts["executor"] != "auto":
        return opts["executor"], ""
    container_flags = [f"--{f.replace('_', '-')}" for f in _CONTAINER_FLAGS if opts[f]]
    if container_flags:
        return "docker", f"auto: {', '.join(container_flags)} given"
    if opts["vllm_path"] or opts["port"] is not None:
        return "local", "auto: --vllm/--port name this host's vLLM"
    if engine_answers(environ):
        return "docker", "auto: a Docker engine answers; --executor local uses this host's vllm"
    return "local", "auto: no Docker engine answers; running this host's vllm"


def hf_home(environ: dict[str, str]) -> Path:
    """The Hugging Face home: where models are downloaded and what containers mount."""
    return Path(environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()


def hub_settings(environ: dict[str, str]) -> HubSettings:
    """The hub and its cache, from HF_HOME, HF_TOKEN, HF_ENDPOINT and HF_HUB_OFFLINE."""
    offline = environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return HubSettings(
        cache_dir=hf_home(environ) / "hub",  # inside the HF home the docker executor mounts
        token=environ.get("HF_TOKEN") or None,
        endpoint=environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT,
        offline=offline,
    )


def model_fetch(opts: dict[str, Any]) -> ModelFetch:
    return ModelFetch(
        revision=opts["revision"],
        include=tuple(opts["hf_include"]),
        exclude=tuple(p for p in opts["hf_exclude"] if p),  # --hf-exclude '' excludes nothing
        download=not opts["no_download"],
    )


def make_executor(opts: dict[str, Any], reporter: ConsoleReporter | None = None) -> Executor:
    """The executor the flags ask for; environment variables are read here, at the edge."""
    deadlines = Deadlines(server_ready_s=opts["server_timeout"], point_s=opts["point_timeout"])
    if opts["executor"] == "docker":
        return DockerExecutor(
            DockerSettings(
                out_root=opts["out_dir"],
                image=opts["image"],
                pull=opts["pull"],
                gpus=parse_gpus(opts["gpus"]) if opts["gpus"] else (),
                cpus=opts["cpus"],
                shm_size=opts["shm_size"],
                privileged=opts["privileged"],
                keep=opts["keep"],
                hf_cache=hf_home(dict(os.environ)),  # mounted if it exists at container start
                hf_token=os.environ.get("HF_TOKEN") or None,
                deadlines=deadlines,
                base_image=opts["base_image"],
                wheelhouse=opts["wheelhouse"],
                pip_extra_index_url=opts["pip_extra_index_url"],
            ),
            on_image_event=reporter,
        )
    for flag in ("gpus", "cpus", "shm_size", "base_image", "wheelhouse", "pip_extra_index_url"):
        if opts[flag]:
            raise PlanError(f"--{flag.replace('_', '-')} is for --executor docker")
    return LocalExecutor(
        LocalSettings(
            out_root=opts["out_dir"],
            vllm=opts["vllm_path"],
            host=opts["host"],
            port=opts["port"],
            deadlines=deadlines,
            check_flags=not opts["skip_flag_check"],
        )
    )


def show_results(outcomes: list[RunOutcome]) -> None:
    records = []
    for outcome in outcomes:
        try:
            records += records_from_run(load_run(outcome.run_dir))
        except ResultsError as exc:
            click.echo(f"warning: {exc}", err=True)
    if records:
        click.echo(render_table(records))


class RunGroup(OneLineErrors, click.Group):
    """`bench-run FLAGS` is `bench-run run FLAGS`; other commands are named first."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (
            args[0] not in self.commands and args[0] not in ("-h", "--help", "--version")
        ):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=RunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench-run")
def main() -> None:
    """Benchmark vLLM on NVIDIA, AMD or CPU: `bench-run [run] FLAGS`; `bench-run cleanup`."""


@main.command("cleanup")
@click.option("--dry-run", is_flag=True, help="list the containers, remove nothing")
def cleanup(dry_run: bool) -> None:
    """Remove the containers earlier runs left behind (found by their vllm-bench label).

    Every container the docker executor made is removed, running or not: a run still in
    progress elsewhere on this engine is stopped too.
    """
    client = docker_connect(dict(os.environ))
    found = reap_containers(client, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for line in found:
        click.echo(f"{verb} {line}")
    click.echo(f"{verb} {len(found)} container(s)", err=True)


@main.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--vendor",
    help="nvidia, amd or cpu (default: detect with nvidia-smi, then amd-smi / rocm-smi, else cpu)",
)
@click.option("--model", required=True, help="Hugging Face repo id, or a local model directory")
@click.option("--revision", help="hub model: a branch, tag or commit (default: main)")
@click.option(
    "--hf-include",
    multiple=True,
    metavar="PATTERN",
    help="hub model: download only the files matching; repeatable (default: all)",
)
@click.option(
    "--hf-exclude",
    multiple=True,
    default=DEFAULT_EXCLUDE,
    show_default=True,
    metavar="PATTERN",
    help="hub model: skip the files matching; repeatable; '' skips nothing",
)
@click.option(
    "--no-download",
    is_flag=True,
    help="hub model: take it from the HF cache only; fail if it is not there",
)
@click.option(
    "--scenario", multiple=True, help="serve, latency or throughput; repeatable (default: serve)"
)
@click.option(
    "--qps",
    default="1,3,5,7,9",
    show_default=True,
    help="serving request rates, comma-separated; `inf` sends all at once",
)
@click.option(
    "--seconds-per-point",
    type=float,
    default=120.0,
    show_default=True,
    help="prompts per serving point = this x QPS",
)
@click.option(
    "--num-prompts",
    type=int,
    help="prompts per serving point (overrides --seconds-per-point); throughput: 1000",
)
@click.option("--max-concurrency", type=int, help="cap on requests in flight while serving")
@click.option("--dataset", default="random", show_default=True, help="random, sonnet or sharegpt")
@click.option("--dataset-path", help="the sonnet text or ShareGPT JSON file")
@click.option("--input-len", type=int, default=1024, show_default=True, help="prompt tokens")
@click.option("--output-len", type=int, default=128, show_default=True, help="output tokens")
@click.option(
    "--percentiles", default="50,90,99", show_default=True, help="latency percentiles to report"
)
@click.option(
    "--batch-size", type=int, default=8, show_default=True, help="latency: prompts per batch"
)
@click.option(
    "--iters", type=int, default=10, show_default=True, help="latency: measured iterations"
)
@click.option(
    "--warmup-iters", type=int, default=3, show_default=True, help="latency: warm-up iterations"
)
@click.option("--tp", type=int, default=1, show_default=True, help="tensor parallel size")
@click.option("--dtype", help="model dtype (auto, float16, bfloat16, ...)")
@click.option("--quantization", help="quantization method (fp8, gptq, awq, ...)")
@click.option("--kv-cache-dtype", help="KV cache dtype (auto, fp8, ...)")
@click.option("--max-model-len", type=int, help="context length")
@click.option("--max-num-seqs", type=int, help="sequences per engine step")
@click.option("--max-num-batched-tokens", type=int, help="tokens per engine step")
@click.option("--gpu-memory-utilization", type=float, help="fraction of GPU memory for vLLM")
@click.option(
    "--chunked-prefill/--no-chunked-prefill",
    default=None,
    help="chunked prefill on/off (default: vLLM's)",
)
@click.option(
    "--prefix-caching/--no-prefix-caching",
    default=None,
    help="prefix caching on/off (default: off for random prompts, else vLLM's)",
)
@click.option(
    "--engine-arg",
    multiple=True,
    metavar="KEY=VALUE",
    help="any other vLLM engine flag; KEY alone for a switch; repeatable",
)
@click.option(
    "--env", multiple=True, metavar="NAME=VALUE", help="environment variable for vLLM; repeatable"
)
@click.option(
    "--executor",
    default="auto",
    show_default=True,
    envvar="BENCH_EXECUTOR",
    help="where vLLM runs: docker, local (this host's vllm), or auto: docker when --image is "
    "given or a Docker engine answers, else local  [env: BENCH_EXECUTOR]",
)
@click.option(
    "--pull", default="missing", show_default=True, help="docker: always, missing or never"
)
@click.option("--gpus", help="docker: GPU ids such as 0,1 (default: all)")
@click.option("--cpus", help="docker: a cpuset such as 0-7 for the container")
@click.option("--shm-size", help="docker: the container's /dev/shm (default 16g, CPU 4g)")
@click.option("--privileged", is_flag=True, help="docker: run the container privileged")
@click.option("--keep", is_flag=True, help="docker: keep the container afterwards, for debugging")
@click.option(
    "--base-image",
    help="docker, building a catalog variant: the image to build FROM instead of the catalog's",
)
@click.option(
    "--wheelhouse",
    type=click.Path(file_okay=False, path_type=Path),
    help="docker, building a wheelhouse variant: the wheels to install offline",
)
@click.option(
    "--pip-extra-index-url",
    help="docker, building a pip variant: a wheel index beside PyPI",
)
@click.option(
    "--image", help="catalog variant (bench-images list) or image for container executors"
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="where run directories are written",
)
@click.option("--vllm", "vllm_path", help="the vllm executable (default: the one on PATH)")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="address the server listens on"
)
@click.option("--port", type=int, help="server port (default: a free one)")
@click.option(
    "--server-timeout",
    type=float,
    default=1200.0,
    show_default=True,
    help="seconds to wait for the server's /health",
)
@click.option(
    "--point-timeout",
    type=float,
    default=3600.0,
    show_default=True,
    help="seconds one benchmark point may take",
)
@click.option(
    "--skip-flag-check", is_flag=True, help="do not let vLLM's parser check the engine flags first"
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="print every command and variable the agent would use; run nothing",
)
@click.option("-v", "--verbose", is_flag=True, help="show every agent event")
def run(**opts: Any) -> None:
    """Benchmark vLLM: a serving sweep over request rates, and offline latency and throughput.

    \b
    Example:
      bench-run --vendor cpu --model ./tiny --qps 1,3 --num-prompts 20 \\
        --scenario serve --scenario latency
    """
    if opts["executor"] not in EXECUTORS:
        raise PlanError(
            f"unknown executor {opts['executor']!r}: choose one of {', '.join(EXECUTORS)}"
        )
    if opts["port"] is not None and not 0 < opts["port"] < 65536:
        raise PlanError(f"--port {opts['port']}: must be between 1 and 65535")
    if opts["image"] and opts["executor"] == "local":
        raise PlanError(
            f"--image {opts['image']} is for container executors; --executor local runs the vllm "
            "of this host: drop --image"
        )
    plan = build_plan(opts)
    opts["executor"], why = choose_executor(opts, dict(os.environ))
    if opts["executor"] == "docker" and not opts["image"]:
        opts["image"] = profile_for(plan.runs[0].vendor).default_image
        why += f", image {opts['image']} (the {plan.runs[0].vendor} default; see --image)"
        plan = build_plan(opts)
    if why:
        click.echo(f"executor: {opts['executor']} ({why})", err=True)
    reporter = ConsoleReporter(verbose=opts["verbose"])
    executor = make_executor(opts, reporter)
    # Before any server or container starts: a gated or missing model fails here, in one line.
    plan = resolve_plan(
        plan,
        model_fetch(opts),
        hub_settings(dict(os.environ)),
        dry_run=opts["dry_run"],
        note=lambda text: click.echo(text, err=True),
    )
    if opts["dry_run"]:
        click.echo(executor.describe(plan))
        return
    try:
        warnings = executor.preflight(plan, lambda text: reporter.note(text, "dim"))
    finally:
        reporter.close()  # a pull or build bar ends here, even when preflight fails
    for warning in warnings:
        reporter.note(f"warning: {warning}", "yellow")
    # Explicit handlers: a bench-run started in the background (SIGINT ignored) still stops
    # cleanly on `kill -INT`, and SIGTERM (CI, a scheduler) is treated like Ctrl-C.
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        outcomes = executor.execute(plan, reporter)
    finally:
        reporter.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    show_results(outcomes)
    interrupted = [o for o in outcomes if o.exit_code == EXIT_INTERRUPTED]
    if interrupted:
        _fail(f"interrupted; what ran is saved in {interrupted[0].run_dir}", EXIT_INTERRUPTED)
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        first = failed[0]
        raise RunFailed(f"run {first.run_id} {first.status}: {first.reason} (see {first.run_dir})")
