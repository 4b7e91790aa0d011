"""The results table as tabulate draws it: the reference bench-results' fast renderer must match."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from results.model.run_ids import short_run_ids
from results.model.schema import LATENCIES, Record, format_rate
from results.render.formats import CAPTION

STATS = ("mean", "median", "p99")
_STAT_LABEL = {"mean": "mean", "median": "med", "p99": "p99"}


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def format_table(records: Sequence[Record]) -> str:
    """The records as a table, a caption line above it, and the non-ok points below it."""
    if not records:
        return "no points to show"
    runs = short_run_ids([r.run_id for r in records])
    multi_run = len(runs) > 1

    headers = ["run"] if multi_run else []
    headers += ["scenario", "QPS", "done/failed", "req/s", "out tok/s"]
    for metric in LATENCIES:
        headers += [f"{metric.upper()} {_STAT_LABEL[stat]}" for stat in STATS]
    headers.append("verdict")

    rows: list[list[object]] = []
    for rec in records:
        row: list[object] = [runs[rec.run_id]] if multi_run else []
        row += [
            rec.scenario,
            format_rate(rec.qps),
            f"{_count(rec.completed)}/{_count(rec.failed)}",
            rec.metric("request_throughput"),
            rec.metric("output_throughput"),
        ]
        for metric in LATENCIES:
            row += [rec.metric(f"{metric}_{stat}_ms") for stat in STATS]
        row.append(rec.verdict)
        rows.append(row)

    qps_col = headers.index("QPS")
    colalign = ["left"] * len(headers)
    for index, header in enumerate(headers):
        if header not in ("run", "scenario", "verdict"):
            colalign[index] = "right"
    table = tabulate(
        rows,
        headers=headers,
        tablefmt="simple",
        floatfmt=".2f",
        missingval="-",
        colalign=colalign,
        # "10" and "inf" are labels here, not numbers to print as 10.00
        disable_numparse=[qps_col],
    )

    lines = [CAPTION, table]
    for rec in records:
        name = f"{runs[rec.run_id]}/{rec.point_id}" if multi_run else rec.point_id
        if rec.verdict != "ok":
            line = f"{name}: {rec.verdict}"
            if rec.reasons:
                line += ": " + "; ".join(rec.reasons)
            lines.append(line)
        lines.extend(f"{name}: warning: {warning}" for warning in rec.warnings)
    return "\n".join(lines)
