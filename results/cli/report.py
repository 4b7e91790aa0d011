"""`bench-results report`: one self-contained HTML file with charts, tables and provenance."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from results.cli.common import warn
from results.cli.plot import select_records, selection_options
from results.model.provenance import load_provenance
from results.render.report import TITLE, write_report


@click.command("report")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The HTML file to write (replaced atomically if it exists).",
)
@click.option("--title", default=TITLE, show_default=True, help="The report's heading.")
@selection_options
def report_command(paths: tuple[Path, ...], out_file: Path, title: str, **selection: Any) -> None:
    """Write one HTML report of PATHS... (run directories or folders of them; default: the
    results root, ./runs or $BENCH_RESULTS_ROOT): summary, TPOT/TTFT vs QPS and throughput vs
    latency charts, every point, failed points and warnings, and each run's provenance.

    The file has no outside reference (charts are inline SVG): it opens offline, and can be
    mailed or attached to a CI job as is. Prints the path written.
    """
    records, selected = select_records(paths, selection)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"generated {generated}" + (f" · selection: {selected}" if selected else "")
    provenance = load_provenance(records, warn=warn)
    click.echo(str(write_report(records, out_file, provenance, title=title, subtitle=subtitle)))
