"""`bench-run --plan FILE` and `--resume SWEEP_DIR`: a matrix of runs kept in a sweep directory."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from results.cli.common import fail
from runner.entry import HostSettings, Prepared, prepare_many
from runner.errors import PlanError, RunFailed
from runner.executors.base import Executor, RunOutcome
from runner.plan import Plan
from runner.planfile import Configuration, expand, read_plan
from runner.progress import ConsoleReporter
from runner.rundir import EXIT_INTERRUPTED, OK
from runner.sweep import (
    FAILED,
    INTERRUPTED,
    RUNNING,
    new_sweep,
    ok_points,
    order,
    requests_for,
    resume_plan,
    run_name,
    sweep_record,
    write_sweep,
)

# run.py's: run a plan under Ctrl-C handling; print the results table of outcomes
Execute = Callable[[Executor, Plan, ConsoleReporter], list[RunOutcome]]
Show = Callable[[list[RunOutcome]], None]


def split_options(
    ctx: click.Context, options: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flags given on the command line (they win over a plan file) and the options an
    environment variable set (the file wins over them); defaults are the request's own."""
    given, under = {}, {}
    for name, value in options.items():
        source = ctx.get_parameter_source(name)
        if source == ParameterSource.COMMANDLINE:
            given[name] = value
        elif source == ParameterSource.ENVIRONMENT:
            under[name] = value
    return given, under


def _prepare(
    configurations: Sequence[tuple[int, Configuration]],
    out_dir: Path | None,
    reporter: ConsoleReporter,
    attempt: int = 1,
) -> Prepared:
    requests = requests_for([c for _, c in configurations], out_dir)
    return prepare_many(
        requests,
        HostSettings.from_environ(dict(os.environ)),
        run_ids=[run_name(i, c, attempt) for i, c in configurations],
        on_image_event=reporter,
        note=lambda text: click.echo(text, err=True),
    )


def describe(prepared: Prepared, configurations: Sequence[tuple[int, Configuration]]) -> str:
    """--dry-run of a plan: each configuration (its matrix values), its points, the servers."""
    lines, points = [], 0
    for run, (index, configuration) in zip(prepared.plan.runs, configurations, strict=True):
        ids = [p.id for p in run.points()]
        points += len(ids)
        lines.append(f"{index:4d}. {configuration.label()}: {len(ids)} points ({', '.join(ids)})")
    # a server per configuration that serves; latency and throughput load their own engine
    servers = sum("serve" in run.scenarios for run in prepared.plan.runs)
    lines.append(
        f"{len(configurations)} configurations, {points} points, {servers} server starts, "
        f"executor {prepared.executor_name}"
    )
    return "\n".join(lines)


def run_plan_file(
    ctx: click.Context,
    path: Path,
    options: Mapping[str, Any],
    reporter: ConsoleReporter,
    ends: tuple[Execute, Show],
) -> None:
    """Expand, validate and run (or --dry-run) a plan file as a new sweep directory."""
    given, under = split_options(ctx, options)
    plan = read_plan(path)
    configurations = list(enumerate(order(expand(plan, given, under)), 1))
    dry_run = bool(configurations[0][1].options.get("dry_run"))
    out_root = Path(configurations[0][1].options.get("out_dir") or "runs")
    sweep_dir = new_sweep(plan, out_root)
    prepared = _prepare(configurations, None if dry_run else sweep_dir, reporter)
    if dry_run:
        click.echo(describe(prepared, configurations))
        return
    points = [[p.id for p in run.points()] for run in prepared.plan.runs]
    record = sweep_record(plan, given, [c for _, c in configurations], points)
    sweep_dir.mkdir(parents=True, exist_ok=False)
    write_sweep(sweep_dir, record)
    click.echo(f"sweep {sweep_dir}: {len(configurations)} configurations", err=True)
    _run_sweep(prepared, sweep_dir, record, [i for i, _ in configurations], reporter, ends)


def resume(sweep_dir: Path, reporter: ConsoleReporter, ends: tuple[Execute, Show]) -> None:
    """Run again what a sweep has not finished: its configurations and points not yet ok."""
    record, todo = resume_plan(sweep_dir)
    if not todo:
        click.echo(f"sweep {sweep_dir}: every configuration is ok; nothing to resume", err=True)
        return
    attempt = 1 + max(len(record["configurations"][i - 1]["runs"]) for i, _ in todo)
    prepared = _prepare(todo, sweep_dir, reporter, attempt)
    write_sweep(sweep_dir, record)  # the states settled: `running` found is interrupted
    left = sum(len(run.points()) for run in prepared.plan.runs)
    click.echo(f"sweep {sweep_dir}: resuming {len(todo)} configurations, {left} points", err=True)
    _run_sweep(prepared, sweep_dir, record, [i for i, _ in todo], reporter, ends)


def _run_sweep(
    prepared: Prepared,
    sweep_dir: Path,
    record: dict[str, Any],
    indexes: Sequence[int],
    reporter: ConsoleReporter,
    ends: tuple[Execute, Show],
) -> None:
    execute_plan, show_results = ends
    executor = prepared.executor
    try:
        warnings = executor.preflight(prepared.plan, lambda text: reporter.note(text, "dim"))
    finally:
        reporter.close()
    for warning in warnings:
        reporter.note(f"warning: {warning}", "yellow")
    if executor.name == "k8s":  # one Indexed Job: every configuration is submitted at once
        _run_sweep_at_once(prepared, sweep_dir, record, indexes, ends, reporter)
        return
    outcomes: list[RunOutcome] = []
    for run, index in zip(prepared.plan.runs, indexes, strict=True):
        entry = record["configurations"][index - 1]
        entry["state"] = RUNNING
        entry["runs"].append({"run_id": run.run_id, "points": [p.id for p in run.points()]})
        write_sweep(sweep_dir, record)  # before: a killed bench-run leaves it `running`
        found = execute_plan(executor, Plan(runs=(run,)), reporter)
        outcome = found[0] if found else None
        entry["state"] = _state(outcome)
        entry["runs"][-1]["ok_points"] = _ok(outcome)
        write_sweep(sweep_dir, record)
        if outcome is not None:
            outcomes.append(outcome)
        if outcome is None or outcome.exit_code == EXIT_INTERRUPTED:
            break
    show_results(outcomes)
    _end(sweep_dir, record)


def _run_sweep_at_once(
    prepared: Prepared,
    sweep_dir: Path,
    record: dict[str, Any],
    indexes: Sequence[int],
    ends: tuple[Execute, Show],
    reporter: ConsoleReporter,
) -> None:
    """A sweep whose executor runs the whole plan in one submission (Kubernetes)."""
    execute_plan, show_results = ends
    entries = {}
    for run, index in zip(prepared.plan.runs, indexes, strict=True):
        entry = record["configurations"][index - 1]
        entry["state"] = RUNNING
        entry["runs"].append({"run_id": run.run_id, "points": [p.id for p in run.points()]})
        entries[run.run_id] = entry
    write_sweep(sweep_dir, record)  # before: a detached or killed bench-run leaves it `running`
    outcomes = execute_plan(prepared.executor, prepared.plan, reporter)
    if not outcomes:  # detached: `bench-run k8s collect` settles the states
        click.echo(f"sweep {sweep_dir} submitted: bench-run k8s status {sweep_dir}", err=True)
        return
    for outcome in outcomes:
        entry = entries[outcome.run_id]
        entry["state"] = _state(outcome)
        entry["runs"][-1]["ok_points"] = _ok(outcome)
    write_sweep(sweep_dir, record)
    show_results(outcomes)
    _end(sweep_dir, record)


def _state(outcome: RunOutcome | None) -> str:
    if outcome is None or outcome.exit_code == EXIT_INTERRUPTED:
        return INTERRUPTED
    return OK if outcome.status == OK else FAILED


def _ok(outcome: RunOutcome | None) -> list[str]:
    return [] if outcome is None else sorted(ok_points(outcome.run_dir))


def _end(sweep_dir: Path, record: Mapping[str, Any]) -> None:
    states = [entry["state"] for entry in record["configurations"]]
    if INTERRUPTED in states:
        fail(f"interrupted; bench-run --resume {sweep_dir} runs what is left", EXIT_INTERRUPTED)
    bad = states.count(FAILED) + states.count("pending")
    if bad:
        raise RunFailed(
            f"{bad} of {len(states)} configurations not ok (see {sweep_dir}/sweep.json); "
            f"bench-run --resume {sweep_dir} runs them again"
        )


def check_resume_flags(ctx: click.Context, options: Mapping[str, Any]) -> None:
    """--resume runs the sweep as sweep.json has it: a flag beside it would be ignored."""
    given, _ = split_options(ctx, options)
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in sorted(given))
        raise PlanError(f"--resume runs the sweep as it was planned: drop {flags}")


def check_modes(plan: Path | None, resume_dir: Path | None, model: str | None) -> None:
    """--plan, --resume and --model: exactly one way of saying what to run."""
    if plan is not None and resume_dir is not None:
        raise PlanError("--plan starts a sweep and --resume continues one: give one of them")
    if plan is None and resume_dir is None and not model:
        raise PlanError("give --model (or --plan FILE, or --resume SWEEP_DIR)")
