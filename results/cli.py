"""The bench-results command line: show the results of finished runs."""

from __future__ import annotations

from pathlib import Path

import click

from results.errors import ResultsError
from results.records import records_from_run
from results.rundir import find_runs, load_run
from results.table import format_table


@click.group()
def main() -> None:
    """Read the run directories bench-run wrote and report their results."""


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
def show(run_dirs: tuple[Path, ...]) -> None:
    """Print a table of every point of RUN_DIR... (run directories, or folders of them)."""
    try:
        paths = find_runs(run_dirs)
        if not paths:
            where = ", ".join(str(p) for p in run_dirs)
            raise ResultsError(
                f"no run directory found under {where}: give a directory holding run.json, "
                "or a folder of them"
            )
        records = [rec for path in paths for rec in records_from_run(load_run(path))]
    except ResultsError as exc:
        # one line, whatever the message holds, so scripts can grep it
        message = " ".join(str(exc).split())
        click.echo(f"error: {message}", err=True)
        raise SystemExit(1) from None
    click.echo(format_table(records))
