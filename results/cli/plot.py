"""`bench-results plot`: TPOT and TTFT vs QPS and throughput vs latency, as PNG and SVG files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from results.analysis.chartdata import resolve_metric, serving_charts
from results.analysis.query import FILTER_KEYS, load_records
from results.cli.common import SWEEP_HELP, paths_or_root, sweep_scope, warn
from results.cli.show import build_filter
from results.errors import ResultsError
from results.model.schema import Record
from results.render.charts import write_charts

F = TypeVar("F", bound=Callable[..., Any])

# the same shorthands as `bench-results show`, each the same as --where KEY=VALUE
_SHORTHANDS = {
    "model": "Model id or its last part (org/name or name).",
    "vendor": "nvidia, amd or cpu.",
    "scenario": "serve, latency or throughput.",
    "precision": "Quantization method, else dtype (fp8, bfloat16).",
    "gpu": "GPU model as provenance recorded it.",
    "run": "Run id, or its beginning (20261122).",
}


def selection_options(command: F) -> F:
    """The options that choose records, as `show` has them: shorthands, --where, --sweep,
    --strict."""
    command = click.option(
        "--sweep", type=click.Path(path_type=Path, file_okay=False), help=SWEEP_HELP
    )(command)
    command = click.option(
        "--strict", is_flag=True, help="Fail on a directory that gives no records."
    )(command)
    command = click.option(
        "--where",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"Any record field; values may be a,b or a|b. Keys: {', '.join(FILTER_KEYS)}.",
    )(command)
    for key, text in reversed(_SHORTHANDS.items()):
        command = click.option(f"--{key}", multiple=True, help=text)(command)
    return command


def select_records(paths: tuple[Path, ...], options: dict[str, Any]) -> tuple[list[Record], str]:
    """The records under `paths` (default: the results root) that the options select, and the
    selection in words ('' when there is none)."""
    shorthands = {key: options[key] for key in _SHORTHANDS if options.get(key)}
    paths, where = sweep_scope(options.get("sweep"), paths, tuple(options.get("where") or ()))
    selection = build_filter(where, shorthands)
    sources = paths_or_root(paths)
    records = load_records(
        sources, strict=bool(options.get("strict")), warn=warn, where=selection or None
    )
    if not records:
        where_text = ", ".join(str(p) for p in sources)
        raise ResultsError(
            f"no point under {where_text}"
            + (f" matches {selection}: loosen the filter" if selection else ": nothing to draw")
        )
    return records, str(selection)


def _check_stat(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        resolve_metric("tpot", value)
    except ResultsError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _check_metrics(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    names = tuple(n for item in value for n in item.split(",") if n.strip())
    for name in names:
        try:
            resolve_metric(name, "median")
        except ResultsError as exc:
            raise click.BadParameter(str(exc)) from None
    return names


@click.command("plot")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for the chart files (created if missing).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "svg", "both"]),
    default="both",
    show_default=True,
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    callback=_check_metrics,
    metavar="NAME",
    help="A chart of NAME vs QPS (repeatable or comma list): a latency family "
    "(tpot, ttft, itl, e2el; with --stat) or a metric such as output_throughput. "
    "Default: tpot and ttft.",
)
@click.option(
    "--stat",
    default="median",
    show_default=True,
    callback=_check_stat,
    help="Statistic of the latency families: median, mean or a percentile such as p99.",
)
@click.option(
    "--latency",
    default="tpot",
    show_default=True,
    type=click.Choice(["tpot", "ttft", "itl", "e2el"]),
    help="The latency axis of the throughput vs latency chart (with --stat).",
)
@selection_options
def plot_command(
    paths: tuple[Path, ...],
    out_dir: Path,
    fmt: str,
    metrics: tuple[str, ...],
    stat: str,
    latency: str,
    **selection: Any,
) -> None:
    """Draw the serving charts of PATHS... (run directories or folders of them; default: the
    results root, ./runs or $BENCH_RESULTS_ROOT): each metric vs QPS, one line per
    configuration, and output tokens/s vs latency. Prints the files written.

    Repeated runs of a configuration are averaged (error bars: one standard deviation); failed
    points are left out and named on stderr.
    """
    records, _ = select_records(paths, selection)
    charts = serving_charts(
        records, stat=stat, metrics=metrics or ("tpot", "ttft"), latency=latency
    )
    if all(chart.empty for chart in charts):
        serve = sum(1 for r in records if r.scenario == "serve")
        raise ResultsError(
            f"nothing to plot: {len(records)} point(s) selected, {serve} of them serving points "
            "with the metrics; charts need `bench-run --scenario serve` results"
        )
    formats = ["png", "svg"] if fmt == "both" else [fmt]
    for path in write_charts(charts, out_dir, formats):
        click.echo(str(path))
    notes = dict.fromkeys(note for chart in charts for note in chart.notes)
    for note in notes:
        click.echo(f"note: {note}", err=True)
