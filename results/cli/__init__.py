"""The bench-results command line: show the results of finished runs."""

from __future__ import annotations

import click

from results.cli.common import OneLineGroup
from results.cli.compare import compare_command
from results.cli.index import index_command
from results.cli.plot import plot_command
from results.cli.report import report_command
from results.cli.show import show


@click.group(cls=OneLineGroup)
def main() -> None:
    """Read the run directories bench-run wrote and report their results."""


main.add_command(show)
main.add_command(index_command)
main.add_command(compare_command)
main.add_command(plot_command)
main.add_command(report_command)
