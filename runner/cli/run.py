"""`bench-run run`: the flags of a benchmark, handed to runner.entry; then the run and its table."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import click

from results.cli.common import fail
from results.errors import ResultsError
from results.model.records import records_from_run
from results.model.rundir import load_run
from results.render.formats import render_table
from runner.cli import sweep as sweeps
from runner.cli.k8s import k8s_run_options
from runner.cli.k8s_options import k8s_options
from runner.entry import HostSettings, prepare
from runner.errors import RunFailed
from runner.executors.base import Executor, RunOutcome
from runner.models import DEFAULT_EXCLUDE
from runner.plan import Plan
from runner.progress import ConsoleReporter
from runner.request import RunRequest
from runner.rundir import EXIT_INTERRUPTED, OK, REJECTED
from runner.scenarios import choices as scenario_choices
from runner.vendors import vendor_help


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def show_results(outcomes: list[RunOutcome]) -> None:
    records = []
    for outcome in outcomes:
        if outcome.status == REJECTED:
            continue  # refused before it ran: no run directory, its one line comes last
        try:
            records += records_from_run(load_run(outcome.run_dir))
        except ResultsError as exc:
            click.echo(f"warning: {exc}", err=True)
    if records:
        click.echo(render_table(records))


def _execute(executor: Executor, plan: Plan, reporter: ConsoleReporter) -> list[RunOutcome]:
    """Run the plan; Ctrl-C and SIGTERM reach the executor as KeyboardInterrupt."""
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
    return outcomes


@click.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--vendor",
    help=vendor_help(),
)
@click.option("--model", help="Hugging Face repo id, or a local model directory (required)")
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
    "--scenario",
    multiple=True,
    help=f"{scenario_choices()}; repeatable (default: serve)",
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
@click.option(
    "--dataset-path",
    help="the ShareGPT JSON file, or a sonnet text (default: Shakespeare's sonnets, bundled)",
)
@click.option(
    "--endpoint",
    default="completions",
    show_default=True,
    help="serving and accuracy: completions (/v1/completions) or chat (/v1/chat/completions)",
)
@click.option(
    "--prefix-len",
    type=int,
    help="sonnet: prompt tokens every prompt shares (default: 200, at most half --input-len)",
)
@click.option(
    "--skip-chat-template",
    is_flag=True,
    help="sonnet, completions: send the text without the model's chat template (a base model)",
)
@click.option("--input-len", type=int, default=1024, show_default=True, help="prompt tokens")
@click.option(
    "--output-len",
    type=int,
    help="output tokens (default: 128; sharegpt: each conversation's own answer length)",
)
@click.option(
    "--percentiles", default="50,90,99", show_default=True, help="latency percentiles to report"
)
@click.option(
    "--slo",
    help="serving: limits every point is judged against, METRIC=MS comma-separated "
    "(ttft|tpot|itl|e2el _ mean|median|pNN _ms, e.g. ttft_p99_ms=500,tpot_p99_ms=50); "
    "also vLLM's --goodput",
)
@click.option(
    "--find-max-qps",
    is_flag=True,
    help="serving: bisect between the lowest and highest --qps rate for the highest rate whose "
    "point meets --slo (each probe a recorded point on the same server)",
)
@click.option(
    "--qps-tolerance",
    default="5%",
    show_default=True,
    help="--find-max-qps: stop when the bracket is this close, a percentage of the rate or req/s",
)
@click.option(
    "--client-mode",
    default="persistent",
    show_default=True,
    help="persistent: one load generator runs the sweep (vLLM's serving benchmark imported "
    "once, beside the server's start); process: one `vllm bench serve` process per point",
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
@click.option(
    "--tasks",
    metavar="TASK,...",
    help="accuracy: lm-eval tasks by name (mmlu_pro,gsm8k), or from --task-dir",
)
@click.option("--limit", type=int, help="accuracy: at most N documents per task (default: all)")
@click.option(
    "--num-fewshot", type=int, help="accuracy: few-shot examples per prompt (default: the task's)"
)
@click.option(
    "--task-dir",
    type=click.Path(path_type=Path),
    help="accuracy: a folder of lm-eval task YAMLs (lm-eval's --include_path), for machines "
    "with no hub access",
)
@click.option("--tp", type=int, default=1, show_default=True, help="tensor parallel size")
@click.option(
    "--replicas",
    default="1",
    show_default=True,
    metavar="N|auto",
    help="N servers on disjoint sets of --tp GPUs (--gpus, or all; auto: GPUs / tp), each "
    "pinned to its GPUs' NUMA node's CPUs; serve only; --executor local",
)
@click.option(
    "--spread",
    type=click.Choice(["router", "dp", "clients"]),
    help="how one load reaches the replicas: router (vllm-router in front, the default), dp "
    "(one server, --data-parallel-size N), clients (one client per replica at rate/N, merged)",
)
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
    help="where vLLM runs: docker, local (this host's vllm), k8s (Indexed Jobs in a cluster), "
    "or auto: docker when --image is given or a Docker engine answers, else local  "
    "[env: BENCH_EXECUTOR]",
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
    "--strict-host",
    is_flag=True,
    help="refuse to run on a host setting the vendor advises against (AMD: NUMA auto-balancing "
    "on) instead of warning and recording it",
)
@click.option(
    "--partition",
    metavar="MODE[/NPS]",
    help="AMD: the compute and memory partition modes the GPUs must be in (cpx, cpx/nps4, "
    "spx/nps1): checked before anything starts, never changed (amd-smi set needs root)",
)
@k8s_options
@k8s_run_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="print every command and variable the agent would use; run nothing",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="a YAML plan file: these options as keys (kv_cache_dtype), a matrix of them, "
    "exclusions; flags given here win over it; runs a sweep directory under --out",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    help="a sweep directory: run its configurations and points not yet ok",
)
@click.option("-v", "--verbose", is_flag=True, help="show every agent event")
def run(verbose: bool, plan_file: Path | None, resume_dir: Path | None, **options: Any) -> None:
    """Benchmark vLLM: a serving sweep over request rates, and offline latency and throughput.

    \b
    Example:
      bench-run --vendor cpu --model ./tiny --qps 1,3 --num-prompts 20 \\
        --scenario serve --scenario latency
    """
    sweeps.check_modes(plan_file, resume_dir, options["model"])
    reporter = ConsoleReporter(verbose=verbose)
    if plan_file is not None:
        ends = (_execute, show_results)
        sweeps.run_plan_file(click.get_current_context(), plan_file, options, reporter, ends)
        return
    if resume_dir is not None:
        sweeps.check_resume_flags(click.get_current_context(), options)
        sweeps.resume(resume_dir, reporter, (_execute, show_results))
        return
    request = RunRequest.from_options(options)
    prepared = prepare(
        request,
        HostSettings.from_environ(dict(os.environ)),
        on_image_event=reporter,
        note=lambda text: click.echo(text, err=True),
    )
    if prepared.why:
        click.echo(f"executor: {prepared.executor_name} ({prepared.why})", err=True)
    executor, plan = prepared.executor, prepared.plan
    if request.dry_run:
        click.echo(executor.describe(plan))
        return
    try:
        warnings = executor.preflight(plan, lambda text: reporter.note(text, "dim"))
    finally:
        reporter.close()  # a pull or build bar ends here, even when preflight fails
    for warning in warnings:
        reporter.note(f"warning: {warning}", "yellow")
    outcomes = _execute(executor, plan, reporter)
    show_results(outcomes)
    interrupted = [o for o in outcomes if o.exit_code == EXIT_INTERRUPTED]
    if interrupted:
        fail(f"interrupted; what ran is saved in {interrupted[0].run_dir}", EXIT_INTERRUPTED)
    rejected = [o for o in outcomes if o.status == REJECTED]
    if rejected:  # one line, vLLM's own words: nothing ran and nothing was written
        raise RunFailed(rejected[0].reason or "the configuration was refused")
    failed = [o for o in outcomes if o.status != OK]
    if failed:
        first = failed[0]
        raise RunFailed(f"run {first.run_id} {first.status}: {first.reason} (see {first.run_dir})")
