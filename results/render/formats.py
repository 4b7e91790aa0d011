"""Records as text: the table, Markdown, CSV (one flat row per record) and JSON (the schema)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tabulate import tabulate

from results.analysis.slo import search_answers
from results.errors import ResultsError
from results.model.run_ids import short_run_ids
from results.model.schema import HEADLINE_METRICS, LATENCIES, Record, format_rate, metric_info
from results.render.accuracy import scores_table

FORMATS = ("table", "csv", "json", "markdown")
CAPTION = "TTFT, TPOT, ITL and E2EL columns are latencies in milliseconds (ms)"

# the table's own columns: throughput, then each latency's mean, median and p99
DEFAULT_METRICS = HEADLINE_METRICS
# where a metric goes among the columns; latencies follow, then names this release does not know
_FIXED_ORDER = (
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "output_throughput_per_gpu",
    "input_throughput",
    "total_token_throughput",
    "total_token_throughput_per_gpu",
    "max_output_tokens_per_s",
    "max_concurrent_requests",
    "duration_s",
    "total_input_tokens",
    "total_output_tokens",
)
_LATENCY = re.compile(r"^(ttft|tpot|itl|e2el)_(mean|median|std|p(\d+(?:\.\d+)?))_ms$")
_SHORT = {
    "request_throughput": "req/s",
    "output_throughput": "out tok/s",
    "total_token_throughput": "total tok/s",
    "output_throughput_per_gpu": "out tok/s/GPU",
    "total_token_throughput_per_gpu": "total tok/s/GPU",
    "duration_s": "duration s",
}
# the record's fields as CSV columns, in the schema's order; metrics and run_dir follow
CSV_FIELDS = (
    "run_id",
    "point_id",
    "scenario",
    "vendor",
    "model",
    "started",
    "gpu_model",
    "gpu_count",
    "gpus_used",
    "image",
    "image_digest",
    "vllm_version",
    "dtype",
    "quantization",
    "kv_cache_dtype",
    "precision",
    "tp",
    "engine_args",
    "replicas",
    "spread",
    "layout",
    "partition",
    "qps",
    "max_concurrency",
    "input_len",
    "output_len",
    "batch_size",
    "dataset",
    "num_prompts",
    "verdict",
    "reasons",
    "warnings",
    "completed",
    "failed",
    "achieved_rate",
    "slo_met",
)


def metric_sort_key(name: str) -> tuple[int, int, float, str]:
    """Throughputs in a fixed order, then latencies by family and statistic, then the rest."""
    if name in _FIXED_ORDER:
        return (0, _FIXED_ORDER.index(name), 0.0, name)
    match = _LATENCY.match(name)
    if match:
        family, stat, percentile = match.groups()
        rank = {"mean": -3.0, "median": -2.0, "std": -1.0}.get(stat)
        return (1, LATENCIES.index(family), float(percentile) if rank is None else rank, name)
    return (2, 0, 0.0, name)


def metrics_present(records: Iterable[Record]) -> list[str]:
    """Every metric any record has, in column order."""
    names: set[str] = set()
    for record in records:
        names.update(record.metrics)
    return sorted(names, key=metric_sort_key)


def parse_metrics(text: str) -> tuple[str, ...]:
    """'tpot_p99_ms,output_throughput' -> checked names; ResultsError names an unknown one."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ResultsError("--metrics is empty: give names such as tpot_p99_ms,output_throughput")
    for name in names:
        metric_info(name)
    return names


def _header(name: str) -> str:
    match = _LATENCY.match(name)
    if match:
        family, stat, _ = match.groups()
        return f"{family.upper()} {'med' if stat == 'median' else stat}"
    return _SHORT.get(name) or metric_info(name).label


def _notes(records: Sequence[Record], runs: dict[str, str], multi_run: bool) -> list[str]:
    """One line per point that did not pass and per warning, as format_table writes them."""
    lines: list[str] = []
    for rec in records:
        name = f"{runs[rec.run_id]}/{rec.point_id}" if multi_run else rec.point_id
        if rec.verdict != "ok":
            line = f"{name}: {rec.verdict}"
            if rec.reasons:
                line += ": " + "; ".join(rec.reasons)
            lines.append(line)
        lines.extend(f"{name}: warning: {warning}" for warning in rec.warnings)
    return lines


@dataclass(frozen=True)
class _Grid:
    headers: list[str]
    rows: list[list[str]]  # every cell already text: numbers with 2 decimals, "-" for missing
    right: list[bool]  # right-aligned columns
    notes: list[str]


def _grid(records: Sequence[Record], metrics: Sequence[str]) -> _Grid:
    runs = short_run_ids([r.run_id for r in records])
    multi_run = len(runs) > 1
    # replicas x TP, where the records hold more than one (2xTP4 beside 8xTP1)
    layouts = len({r.layout for r in records}) > 1
    headers = (["run"] if multi_run else []) + (["layout"] if layouts else [])
    headers += ["scenario", "QPS", "done/failed"]
    with_slo = any(rec.slo_met is not None for rec in records)
    headers += [_header(m) for m in metrics] + (["SLO"] if with_slo else []) + ["verdict"]
    rows: list[list[str]] = []
    for rec in records:
        row = [runs[rec.run_id]] if multi_run else []
        if layouts:
            row.append(rec.layout)
        done = "-" if rec.completed is None else str(rec.completed)
        failed = "-" if rec.failed is None else str(rec.failed)
        row += [rec.scenario, format_rate(rec.qps), f"{done}/{failed}"]
        get = rec.metrics.get
        row += ["-" if (value := get(name)) is None else f"{value:.2f}" for name in metrics]
        if with_slo:
            row.append("-" if rec.slo_met is None else "met" if rec.slo_met else "missed")
        row.append(rec.verdict)
        rows.append(row)
    right = [header not in ("run", "layout", "scenario", "SLO", "verdict") for header in headers]
    searches = [answer.describe() for answer in search_answers(records)]
    return _Grid(headers, rows, right, [*searches, *_notes(records, runs, multi_run)])


def _simple(grid: _Grid) -> str:
    """tabulate's "simple" format, byte for byte, at a fraction of its cost on 10,000 rows."""
    # tabulate leaves two spaces beside each header, so a column is at least that wide
    widths = [len(header) + 2 for header in grid.headers]
    for col, cells in enumerate(zip(*grid.rows, strict=True)):
        widths[col] = max(widths[col], *map(len, cells))
    # one format string pads every cell of a row (str.format is C; a loop per cell is not)
    template = "  ".join(
        f"{{:{'>' if right else '<'}{width}}}"
        for width, right in zip(widths, grid.right, strict=True)
    )
    lines = [template.format(*grid.headers).rstrip(), "  ".join("-" * width for width in widths)]
    lines += [template.format(*row).rstrip() for row in grid.rows]
    return "\n".join(lines)


def render_table(records: Sequence[Record], metrics: Sequence[str] | None = None) -> str:
    """The plain-text table (tabulate's \"simple\" look, much faster); `metrics` picks columns."""
    if not records:
        return "no points to show"
    metrics = DEFAULT_METRICS if metrics is None else metrics
    grid = _grid(records, metrics)
    caption = [CAPTION] if any(_LATENCY.match(m) for m in metrics) else []
    accuracy = scores_table(records)  # lm-eval's scores do not fit the speed columns
    return "\n".join([*caption, _simple(grid), *grid.notes, *(["", accuracy] if accuracy else [])])


def render_markdown(records: Sequence[Record], metrics: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table, then the points that did not pass as a list."""
    if not records:
        return "_no points to show_"
    grid = _grid(records, DEFAULT_METRICS if metrics is None else metrics)
    table = tabulate(
        grid.rows,
        headers=grid.headers,
        tablefmt="github",
        colalign=["right" if right else "left" for right in grid.right],
        disable_numparse=True,
    )
    parts = [f"_{CAPTION}._", "", table]
    if grid.notes:
        parts += ["", *(f"- {note}" for note in grid.notes)]
    accuracy = scores_table(records, "github")
    if accuracy:
        parts += ["", accuracy]
    return "\n".join(parts)


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return "inf" if math.isinf(value) else repr(value)
    if isinstance(value, tuple):
        return "; ".join(str(v) for v in value)
    return value


def render_csv(records: Sequence[Record], metrics: Sequence[str] | None = None) -> str:
    """One row per record: every field, then each metric (all present, or those asked for)."""
    columns = list(metrics) if metrics is not None else metrics_present(records)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_FIELDS, *columns, "run_dir"])
    for rec in records:
        fields = [_cell(getattr(rec, name)) for name in CSV_FIELDS]
        # engine flags are argv words: a space keeps "--flag value" readable and splittable
        fields[CSV_FIELDS.index("engine_args")] = " ".join(rec.engine_args)
        values = [_cell(rec.metrics.get(name)) for name in columns]
        writer.writerow([*fields, *values, _cell(rec.run_dir)])
    return out.getvalue()


def render_json(records: Sequence[Record]) -> str:
    """A JSON list of records, each exactly Record.to_dict() (schema version in each)."""
    return json.dumps([r.to_dict() for r in records], indent=2) + "\n"


def render(records: Sequence[Record], fmt: str, metrics: Sequence[str] | None = None) -> str:
    """`records` in one of FORMATS; text ends with a newline."""
    if fmt == "table":
        return render_table(records, metrics) + "\n"
    if fmt == "markdown":
        return render_markdown(records, metrics) + "\n"
    if fmt == "csv":
        return render_csv(records, metrics)
    if fmt == "json":
        return render_json(records)
    raise ResultsError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
