"""A comparison as text: a plain table, a Markdown document or JSON, and the gate's lines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from results.analysis.accuracy import INTERVAL_TEXT
from results.analysis.comparison import (
    ALPHA,
    CONFIDENCE,
    POINT_FIELDS,
    SAME_WITHIN_PCT,
    Comparison,
    GateResult,
    MetricComparison,
    PointComparison,
    Side,
    Skipped,
    number_text,
    p_text,
)
from results.analysis.stats import Summary
from results.errors import ResultsError
from results.model.run_ids import short_run_ids
from results.model.schema import MetricInfo
from results.render.accuracy import delta_table

FORMATS = ("table", "json", "markdown")


def comparison_dict(comparison: Comparison, gate: GateResult | None = None) -> dict[str, Any]:
    """The comparison as the JSON output holds it, with the gate's result when there is one."""
    data: dict[str, Any] = {
        "baseline": _side_dict(comparison.baseline),
        "candidate": _side_dict(comparison.candidate),
        "confidence": CONFIDENCE,
        "alpha": ALPHA,
        "same_within_pct": SAME_WITHIN_PCT,
        "metrics": (
            list(comparison.metric_names) if comparison.metric_names is not None else "all"
        ),
        "points": [
            {
                "point": point.label,
                "key": dict(zip(POINT_FIELDS, point.key, strict=True)),
                "baseline_runs": list(point.baseline_runs),
                "candidate_runs": list(point.candidate_runs),
                "repeats": point.repeats,
                "metrics": [_metric_dict(m) for m in point.metrics],
            }
            for point in comparison.points
        ],
        "accuracy": [d.to_dict() for d in comparison.accuracy],
        "accuracy_interval": INTERVAL_TEXT,
        "skipped": [_skipped_dict(s) for s in comparison.skipped],
        "only_baseline": list(comparison.only_baseline),
        "only_candidate": list(comparison.only_candidate),
        "summary": {
            **comparison.counts(),
            "points": len(comparison.points),
            "text": comparison.summary,
        },
    }
    if gate is not None:
        data["gate"] = {
            "fail_if_worse_pct": gate.threshold_pct,
            "checked": gate.checked,
            "points": gate.points,
            "metrics": list(gate.metrics),
            "passed": gate.passed,
            "offenders": list(gate.offenders),
        }
    return data


def _side_dict(side: Side) -> dict[str, Any]:
    return {
        "source": side.source,
        "config": side.config_label,
        "runs": list(side.run_ids),
        "records": len(side.records),
    }


def _metric_dict(metric: MetricComparison) -> dict[str, Any]:
    return {
        "metric": metric.name,
        "label": metric.info.label,
        "unit": metric.info.unit,
        "better": metric.info.better,
        "baseline": _summary_dict(metric.baseline),
        "candidate": _summary_dict(metric.candidate),
        "ratio": metric.ratio,
        "change_pct": metric.change_pct,
        "direction": metric.direction,
        "change": metric.change_text,
        "verdict": metric.verdict,
        "p_value": metric.p_value,
        "significant": metric.significant,
        "no_test": metric.no_test,
    }


def _summary_dict(summary: Summary) -> dict[str, Any]:
    interval = summary.interval
    return {
        "n": summary.n,
        "mean": summary.mean,
        "std": summary.std,
        "ci_low": None if interval is None else interval[0],
        "ci_high": None if interval is None else interval[1],
        "values": list(summary.values),
    }


def _skipped_dict(skipped: Skipped) -> dict[str, Any]:
    return {
        "side": skipped.side,
        "run_id": skipped.run_id,
        "point_id": skipped.point_id,
        "point": skipped.label,
        "verdict": skipped.verdict,
        "reason": skipped.reason,
    }


def _metric_label(info: MetricInfo) -> str:
    """The label with its unit, unless the label already says it ('output tokens/s')."""
    words = info.label.split()
    if "/s" in info.label or words[-1] == info.unit:
        return info.label
    return f"{info.label} ({info.unit})"


def _cell(summary: Summary) -> str:
    half = summary.half_width
    text = number_text(summary.mean)
    return text if half is None else f"{text} ± {number_text(half)}"


def _point_table(point: PointComparison, tablefmt: str) -> str:
    tested = any(m.p_value is not None for m in point.metrics)
    headers = ["metric", "baseline", "candidate", "ratio", "change"]
    if tested:
        headers.append("p")
    rows: list[list[str]] = []
    for metric in point.metrics:
        ratio = metric.ratio
        row = [
            _metric_label(metric.info),
            _cell(metric.baseline),
            _cell(metric.candidate),
            "-" if ratio is None else f"{ratio:.3f}",
            metric.reading,
        ]
        if tested:
            row.append("-" if metric.p_value is None else p_text(metric.p_value))
        rows.append(row)
    colalign = ["left", "right", "right", "right", "left", "right"][: len(headers)]
    return tabulate(
        rows, headers=headers, tablefmt=tablefmt, colalign=colalign, disable_numparse=True
    )


def _runs_text(runs: Sequence[str], short: dict[str, str]) -> str:
    return ", ".join(short[r] for r in runs)


def format_comparison(
    comparison: Comparison, fmt: str = "table", gate: GateResult | None = None
) -> str:
    """The comparison as a plain table, a Markdown document, or JSON (with the gate's result;
    the other formats leave the gate to its own lines on stderr)."""
    if fmt == "json":
        return json.dumps(comparison_dict(comparison, gate), indent=2, allow_nan=False)
    if fmt not in FORMATS:
        raise ResultsError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    markdown = fmt == "markdown"
    tablefmt = "github" if markdown else "simple"
    short = short_run_ids([*comparison.baseline.run_ids, *comparison.candidate.run_ids])
    lines: list[str] = []
    for side in (comparison.baseline, comparison.candidate):
        runs = side.run_ids
        what = f"{side.name}: {side.config_label} ({side.source}: {len(runs)} run(s))"
        lines.append(f"- {what}" if markdown else what)
    if markdown:
        lines.append("")
    lines.append(
        f"ratio = candidate / baseline; with repeated runs: mean ± {CONFIDENCE:.0%} confidence "
        f"interval, p from Welch's t-test (significant below {ALPHA:.2g}); changes within "
        f"{SAME_WITHIN_PCT:g}% count as the same"
    )
    for point in comparison.points:
        lines.append("")
        heading = f"{point.label}: {point.repeats}"
        if len(point.baseline_runs) > 1 or len(point.candidate_runs) > 1:
            heading += (
                f" (baseline {_runs_text(point.baseline_runs, short)}; "
                f"candidate {_runs_text(point.candidate_runs, short)})"
            )
        lines.append(f"### {heading}" if markdown else heading)
        if markdown:
            lines.append("")
        lines.append(_point_table(point, tablefmt))
    if comparison.accuracy:  # beside the speed ratios: the scores' changes (lm-eval)
        lines += ["", "### accuracy", ""] if markdown else ["", "accuracy"]
        lines.append(delta_table(comparison.accuracy, tablefmt))
    notes = [
        f"skipped: {s.side} {s.label} ({short.get(s.run_id, s.run_id)}/{s.point_id}): "
        f"{s.verdict}: {s.reason}"
        for s in comparison.skipped
    ]
    notes += [f"only in baseline: {label}" for label in comparison.only_baseline]
    notes += [f"only in candidate: {label}" for label in comparison.only_candidate]
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes] if markdown else notes
    lines.append("")
    lines.append(f"summary: {comparison.summary}")
    return "\n".join(lines)


def gate_lines(gate: GateResult) -> list[str]:
    """Each offending point and metric on one line, then what the gate checked."""
    return [*(f"worse: {offender}" for offender in gate.offenders), gate.description]
