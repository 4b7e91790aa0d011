"""`bench-run k8s status|collect|cancel SWEEP`, and bench-run's own flags for --executor k8s."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from results.cli.common import OneLineGroup
from results.errors import UserError
from runner.errors import BenchError, RunFailed
from runner.executors.k8s_api import kubeconfig_from_env
from runner.executors.k8s_detached import Sweep, cancel, collect, find_sweep, run_states

F = TypeVar("F", bound=Callable[..., Any])

_RUN_OPTIONS = (
    click.option("--context", help="k8s: the kubeconfig context (default: the current one; "
                 "KUBECONFIG names the file)"),
    click.option("--detach", is_flag=True, help="k8s: submit the Jobs and return; then "
                 "bench-run k8s status|collect|cancel OUT_FOLDER"),
    click.option("--pending-timeout", type=float, default=600.0, show_default=True,
                 metavar="SECONDS", help="k8s: how long a pod may stay Pending for a reason "
                 "(unbound PVC, no node with the GPUs, image pull) before its run fails"),
)  # fmt: skip


def k8s_run_options(command: F) -> F:
    """bench-run's flags for reaching and following a cluster (RunRequest fields)."""
    for option in reversed(_RUN_OPTIONS):
        command = option(command)
    return command


class K8sGroup(OneLineGroup):
    user_errors = (UserError, BenchError)


_SWEEP_OPTIONS = (
    click.argument("sweep"),
    click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                 default=Path("runs"), show_default=True,
                 help="where a sweep id's run directories go (a folder's own otherwise)"),
    click.option("--context", help="the kubeconfig context (default: the recorded one)"),
    click.option("--namespace", help="the namespace (default: the recorded one)"),
)  # fmt: skip


def _sweep_options(command: F) -> F:
    for option in reversed(_SWEEP_OPTIONS):
        command = option(command)
    return command


def _find(sweep: str, out_dir: Path, context: str | None, namespace: str | None) -> Sweep:
    return find_sweep(
        sweep,
        out_dir,
        context=context,
        namespace=namespace,
        kubeconfig=kubeconfig_from_env(os.environ),
    )


@click.group("k8s", cls=K8sGroup)
def k8s() -> None:
    """A sweep submitted to Kubernetes: its state, its run directories, cancelling it."""


@k8s.command("status")
@_sweep_options
def status(sweep: str, out_dir: Path, context: str | None, namespace: str | None) -> None:
    """Each run of SWEEP: collected, ready to collect, running, pending (why) or failed (why)."""
    found = _find(sweep, out_dir, context, namespace)
    states = run_states(found)
    click.echo(f"sweep {found.sweep_id} in {found.cluster.where()}", err=True)
    for state in states:
        pod = state.pod or "-"
        detail = f"  {state.detail}" if state.detail else ""
        click.echo(f"{state.run_id}\t{state.index}\t{pod}\t{state.state}{detail}")
    counts: dict[str, int] = {}
    for state in states:
        counts[state.state] = counts.get(state.state, 0) + 1
    click.echo(", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())), err=True)


@k8s.command("collect")
@_sweep_options
@click.option("--give-up", is_flag=True, help="finish runs whose pod is stuck Pending as failed")
def collect_cmd(
    sweep: str, out_dir: Path, context: str | None, namespace: str | None, give_up: bool
) -> None:
    """Bring home every run directory SWEEP's pods hold; finish failed runs as failed here."""
    found = _find(sweep, out_dir, context, namespace)
    done, left = collect(found, give_up=give_up)
    for path in done:
        click.echo(path)
    click.echo(f"collected {len(done)} run(s) into {found.folder}", err=True)
    if left:
        what = ", ".join(f"{s.run_id} ({s.state})" for s in left)
        raise RunFailed(f"{len(left)} run(s) not collected yet: {what}; collect again later")


@k8s.command("cancel")
@_sweep_options
def cancel_cmd(sweep: str, out_dir: Path, context: str | None, namespace: str | None) -> None:
    """Delete SWEEP's Jobs (and their pods) and ConfigMaps; collected runs stay."""
    found = _find(sweep, out_dir, context, namespace)
    gone = cancel(found)
    for name in gone:
        click.echo(f"deleted {name}")
    click.echo(f"deleted {len(gone)} object(s) of sweep {found.sweep_id}", err=True)
