"""`bench-results index`: build or refresh a results root's SQLite index, and say what it holds."""

from __future__ import annotations

from pathlib import Path

import click

from results.analysis import index
from results.cli.common import warn


@click.command("index")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--rebuild", is_flag=True, help="Throw the index away and read every run again.")
def index_command(root: Path, rebuild: bool) -> None:
    """Index the run directories under ROOT in ROOT/.index.sqlite.

    The run directories stay the truth: the index is refreshed from them by every command that
    reads ROOT (only runs whose files changed are read again) and can be deleted at any time.
    """
    summary = index.refresh(root, rebuild=rebuild, warn=warn)
    for problem in summary.problems:
        warn(problem.warning)
    how = "rebuilt" if summary.rebuilt else "refreshed"
    click.echo(
        f"{summary.index}: {summary.runs} run(s), {summary.records} record(s); {how}: "
        f"{summary.parsed} run(s) read, {summary.removed} removed, "
        f"{len(summary.problems)} skipped"
    )
