"""`bench-results compare`: a candidate against a baseline, and the regression gate for CI."""

from __future__ import annotations

import json
from pathlib import Path

import click

from results.analysis.axis import axis_pairs
from results.analysis.compare import compare, parse_metrics
from results.analysis.comparison import Comparison
from results.analysis.layouts import layout_pairs, pair_heading
from results.analysis.query import Filter, load_records
from results.analysis.sides import load_sides
from results.cli.common import ROOT_ENV, default_root, sweep_scope, warn
from results.errors import ResultsError
from results.model.sweeps import read_sweep
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
    "p99), 'headline' (default: req/s, output tok/s, TTFT/TPOT/ITL/E2EL mean, median, p99), "
    "'energy' (power, J per token, tokens/s per watt), 'server' (its own counters) "
    "or 'all'. The gate checks the same set.",
)
@click.option(
    "--sweep",
    type=click.Path(path_type=Path, file_okay=False),
    help="Only this sweep's records: the sweep directory is the root of filter sides.",
)
@click.option(
    "--axis",
    metavar="KEY",
    help="With --sweep: BASELINE and CANDIDATE are two values of this matrix axis "
    "(--axis tp 1 2); each pair of configurations that differ only in it is compared. "
    "--axis layout 2xTP4 8xTP1 (with or without --sweep): two layouts of the GPUs, "
    "replicas x TP, each configuration run at both.",
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
    sweep: Path | None,
    axis: str | None,
    metrics: str | None,
    fmt: str,
    fail_if_worse: float | None,
    strict: bool,
) -> None:
    """Compare CANDIDATE with BASELINE at every load both ran.

    Each side is a run directory or a folder of them (repeated runs pool together), or a filter
    over --root such as precision=fp8 or model=org/name,precision=bfloat16.

    \b
    Within a sweep: --sweep DIR --axis KEY VALUE_A VALUE_B compares VALUE_B (candidate) with
    VALUE_A (baseline) of the matrix axis KEY, once per pair of configurations that differ
    only in KEY (e.g. --axis tp 1 2 under each quantization).

    \b
    Layouts of a node's GPUs: --axis layout 2xTP4 8xTP1 compares 8 TP=1 replicas with 2 TP=4
    replicas (replicas x TP), once per configuration run at both, over --root or --sweep.
    """
    # a ResultsError ends as one `error:` line and exit status 1 (the group, results.cli.common)
    names = parse_metrics(metrics)
    if axis is not None and axis.strip().lower() == "layout":
        comparisons = _layout_comparisons(sweep, root, (baseline, candidate), where, strict, names)
    elif axis is not None:
        if sweep is None:
            raise click.UsageError("--axis compares within a sweep: give --sweep DIR too")
        comparisons = _axis_comparisons(sweep, axis, baseline, candidate, where, strict, names)
    else:
        _, where = sweep_scope(sweep, (), where)
        sides = load_sides(
            baseline,
            candidate,
            root=sweep or root or default_root(),
            where=where,
            strict=strict,
            warn=warn,
        )
        comparisons = [("", compare(*sides, metrics=names))]
    _report(comparisons, fmt, fail_if_worse)


def _axis_comparisons(
    sweep: Path,
    axis: str,
    baseline: str,
    candidate: str,
    where: tuple[str, ...],
    strict: bool,
    names: tuple[str, ...] | None,
) -> list[tuple[str, Comparison]]:
    paths, where = sweep_scope(sweep, (), where)
    selection = Filter.parse(where)
    records = load_records(list(paths), strict=strict, warn=warn, where=selection)
    pairs = axis_pairs(read_sweep(sweep), records, axis, (baseline, candidate))
    return [
        (
            f"{axis}: {baseline} -> {candidate} where {pair.label}",
            compare(*pair.sides, metrics=names),
        )
        for pair in pairs
    ]


def _layout_comparisons(
    sweep: Path | None,
    root: Path | None,
    layouts: tuple[str, str],
    where: tuple[str, ...],
    strict: bool,
    names: tuple[str, ...] | None,
) -> list[tuple[str, Comparison]]:
    """Two layouts (2xTP4, 8xTP1) of each configuration under the root (or --sweep DIR)."""
    paths, where = sweep_scope(sweep, (), where)
    records = load_records(
        list(paths or (root or default_root(),)),
        strict=strict,
        warn=warn,
        where=Filter.parse(where),
    )
    return [
        (pair_heading(pair, layouts), compare(*pair.sides, metrics=names))
        for pair in layout_pairs(records, layouts)
    ]


def _report(comparisons: list[tuple[str, Comparison]], fmt: str, threshold: float | None) -> None:
    """Each comparison on stdout (under its heading when there are several), the gate's lines
    on stderr; ResultsError when the candidate fails the gate in any of them."""
    failed = 0
    offenders = 0
    documents = []
    for heading, comparison in comparisons:
        gate = comparison.gate(threshold) if threshold is not None else None
        text = format_comparison(comparison, fmt, gate)
        if fmt == "json":
            documents.append({"axis": heading, **json.loads(text)} if heading else json.loads(text))
        else:
            click.echo(f"== {heading}\n{text}" if heading else text)
        if gate is None:
            continue
        for line in gate_lines(gate):
            click.echo(line, err=True)
        if not gate.passed:
            failed += 1
            offenders += len(gate.offenders)
    if fmt == "json":
        single = len(documents) == 1 and "axis" not in documents[0]
        click.echo(json.dumps(documents[0] if single else documents, indent=2))
    if failed:
        raise ResultsError(
            f"the candidate fails the gate --fail-if-worse {threshold:g}%: "
            f"{offenders} regression(s), one per 'worse:' line above"
        )
