"""`bench-results show`: records of run directories, filtered, as a table, CSV, JSON or Markdown."""

from __future__ import annotations

from pathlib import Path

import click

from results.analysis.query import FILTER_KEYS, Filter, load_records
from results.cli.common import SWEEP_HELP, paths_or_root, sweep_scope, warn
from results.errors import ResultsError
from results.model.probed import VIEWS
from results.render.formats import FORMATS, parse_metrics, render

# shorthand options, each the same as --where KEY=VALUE
_SHORTHANDS = ("model", "vendor", "scenario", "precision", "gpu", "run")


def build_filter(where: tuple[str, ...], shorthands: dict[str, tuple[str, ...]]) -> Filter:
    """One Filter from --where and the shorthand options; bad syntax is a usage error."""
    expressions = list(where)
    for key, values in shorthands.items():
        expressions += [f"{key}={value}" for value in values]
    try:
        return Filter.parse(expressions)
    except ResultsError as exc:
        raise click.BadParameter(str(exc), param_hint="'--where'") from None


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--model", multiple=True, help="Model id or its last part (org/name or name).")
@click.option("--vendor", multiple=True, help="nvidia, amd or cpu.")
@click.option("--scenario", multiple=True, help="serve, latency or throughput.")
@click.option("--precision", multiple=True, help="Quantization method, else dtype (fp8, bfloat16).")
@click.option("--gpu", multiple=True, help="GPU model as provenance recorded it.")
@click.option("--run", multiple=True, help="Run id, or its beginning (20261122).")
@click.option(
    "--where",
    multiple=True,
    metavar="KEY=VALUE",
    help=f"Any record field; values may be a,b or a|b. Keys: {', '.join(FILTER_KEYS)}.",
)
@click.option("--sweep", type=click.Path(path_type=Path, file_okay=False), help=SWEEP_HELP)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--metrics",
    metavar="NAME[,NAME]",
    help="Metric columns (table, markdown, csv), e.g. tpot_p99_ms,output_throughput.",
)
@click.option(
    "--view",
    type=click.Choice(sorted(VIEWS)),
    help="Preset metric columns: server (the server's own counters beside the client's, "
    "KV cache, preemptions, the client's CPU), energy (power, J per token, tokens/s per watt).",
)
@click.option("--strict", is_flag=True, help="Fail on a directory that gives no records.")
def show(
    paths: tuple[Path, ...],
    model: tuple[str, ...],
    vendor: tuple[str, ...],
    scenario: tuple[str, ...],
    precision: tuple[str, ...],
    gpu: tuple[str, ...],
    run: tuple[str, ...],
    where: tuple[str, ...],
    sweep: Path | None,
    fmt: str,
    metrics: str | None,
    view: str | None,
    strict: bool,
) -> None:
    """Show every point of PATHS: run directories, or folders of them (a results root).

    \b
    Without PATHS: the folder in $BENCH_RESULTS_ROOT, else ./runs. A folder's records come from
    its index (.index.sqlite, refreshed from the run directories on every call).
    """
    shorthands = {
        "model": model,
        "vendor": vendor,
        "scenario": scenario,
        "precision": precision,
        "gpu": gpu,
        "run": run,
    }
    paths, where = sweep_scope(sweep, paths, where)
    selection = build_filter(where, {k: v for k, v in shorthands.items() if v})
    columns = VIEWS[view] if view is not None else None
    if metrics is not None:
        try:
            columns = parse_metrics(metrics)
        except ResultsError as exc:
            raise click.BadParameter(str(exc), param_hint="'--metrics'") from None
    sources = paths_or_root(paths)
    records = load_records(sources, strict=strict, warn=warn, where=selection or None)
    if not records and selection:
        where_text = ", ".join(str(p) for p in sources)
        raise ResultsError(
            f"no point under {where_text} matches {selection}: loosen the filter "
            "(bench-results show without filters lists every point)"
        )
    click.echo(render(records, fmt, columns), nl=False)
