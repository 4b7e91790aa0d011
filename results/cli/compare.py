"""`bench-results compare`: a candidate against a baseline, and the regression gate for CI."""

from __future__ import annotations

from pathlib import Path

import click

from results.analysis.compare import compare, parse_metrics
from results.analysis.sides import load_sides
from results.cli.common import ROOT_ENV, default_root, warn
from results.errors import ResultsError
from results.render.comparison import FORMATS, format_comparison, gate_lines


@click.command("compare")
@click.argument("baseline")
@click.argument("candidate")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    help="Where a side given as a filter looks for run directories "
    f"[default: ${ROOT_ENV}, else runs].",
)
@click.option(
    "--where",
    multiple=True,
    metavar="KEY=VALUE",
    help="Narrow both sides, e.g. model=org/name or scenario=serve (repeatable).",
)
@click.option(
    "--metrics",
    metavar="NAMES",
    help="Comma list of metric names (tpot_median_ms), latency families (tpot: mean, median, "
    "p99), 'headline' (default: req/s, output tok/s, TTFT/TPOT/ITL/E2EL mean, median, p99) "
    "or 'all'. The gate checks the same set.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--fail-if-worse",
    type=click.FloatRange(min=0),
    metavar="PCT",
    help="Exit 1 when a compared metric is worse by more than PCT percent (significantly so, "
    "where both sides have repeated runs) or a candidate point failed that the baseline passed.",
)
@click.option("--strict", is_flag=True, help="Fail on a directory that is not a run directory.")
def compare_command(
    baseline: str,
    candidate: str,
    root: Path | None,
    where: tuple[str, ...],
    metrics: str | None,
    fmt: str,
    fail_if_worse: float | None,
    strict: bool,
) -> None:
    """Compare CANDIDATE with BASELINE at every load both ran.

    Each side is a run directory or a folder of them (repeated runs pool together), or a filter
    over --root such as precision=fp8 or model=org/name,precision=bfloat16.
    """
    # a ResultsError ends as one `error:` line and exit status 1 (the group, results.cli.common)
    names = parse_metrics(metrics)
    sides = load_sides(
        baseline,
        candidate,
        root=root or default_root(),
        where=where,
        strict=strict,
        warn=warn,
    )
    comparison = compare(*sides, metrics=names)
    gate = comparison.gate(fail_if_worse) if fail_if_worse is not None else None
    click.echo(format_comparison(comparison, fmt, gate))
    if gate is None:
        return
    for line in gate_lines(gate):
        click.echo(line, err=True)
    if not gate.passed:
        raise ResultsError(
            f"the candidate fails the gate --fail-if-worse {gate.threshold_pct:g}%: "
            f"{len(gate.offenders)} regression(s), one per 'worse:' line above"
        )
