"""Charts of serving sweeps as data: TPOT and TTFT vs QPS, throughput vs latency, aggregated."""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from results.analysis.slo import ABOVE_RANGE, FOUND, search_answers
from results.errors import ResultsError
from results.model.run_ids import short_run_ids
from results.model.schema import LATENCIES, Record, format_rate, latency_name, metric_info
from runner.rundir import OK

ChartKind = Literal["qps", "tradeoff"]
# more lines than this make an unreadable legend; the rest are named in the notes
MAX_LINES = 20
# per kind of note (failed, missing metric): enough to act on, not a wall of text
MAX_NOTES = 8
# past this many distinct rates the ticks would collide; matplotlib picks them instead
MAX_RATE_TICKS = 12
# drawn against QPS where the agent's telemetry recorded them (runner/agent/probe.py)
ENERGY_CHARTS = (
    "gpu_power_mean_w",
    "gpu_output_throughput_per_watt",
    "cpu_power_mean_w",
    "cpu_output_throughput_per_watt",
)
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_STAT = re.compile(r"^(mean|median|std|p\d+(\.\d+)?)$")


@dataclass(frozen=True)
class ChartPoint:
    """One plotted point: the mean over `runs` repeated runs, with their standard deviation."""

    qps: float
    x: float
    y: float
    x_err: float = 0.0
    y_err: float = 0.0
    runs: int = 1

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise ResultsError(f"a chart point needs at least one run, not {self.runs}")


@dataclass(frozen=True)
class Series:
    """One line: the points of one configuration under one load shape, in QPS order."""

    label: str
    points: tuple[ChartPoint, ...]
    style: int = 0
    # qps charts: the highest rate meeting the SLO where the line's runs searched (--find-max-qps)
    max_qps: float | None = None


@dataclass(frozen=True)
class Chart:
    """Everything needed to draw one chart, already aggregated; `notes` say what was left out."""

    name: str
    kind: ChartKind
    title: str
    x_label: str
    y_label: str
    series: tuple[Series, ...]
    notes: tuple[str, ...] = ()
    footnote: str = ""
    # qps charts: where `inf` sits (right of the finite rates) and the tick labels
    inf_x: float | None = None
    x_ticks: tuple[tuple[float, str], ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ResultsError(
                f"chart name {self.name!r} is not a safe file name: use letters, digits, _ . -"
            )

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)


def _line_key(record: Record) -> tuple[Any, ...]:
    # a configuration under one load shape: the same engine at other prompt lengths is a new line
    return (
        record.config_key,
        record.input_len,
        record.output_len,
        record.dataset,
        record.max_concurrency,
    )


def _load_text(record: Record) -> str:
    parts = [record.dataset or "random"]
    if record.input_len is not None or record.output_len is not None:
        parts.append(f"{record.input_len or '?'} in / {record.output_len or '?'} out")
    if record.max_concurrency:
        parts.append(f"concurrency {record.max_concurrency}")
    return ", ".join(parts)


def _line_labels(
    keyed: Iterable[tuple[tuple[Any, ...], Record]],
) -> dict[tuple[Any, ...], str]:
    """A legend label per line: the config label, made unique by what differs when needed."""
    first: dict[tuple[Any, ...], Record] = {}
    for key, rec in keyed:
        first.setdefault(key, rec)
    by_label: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for key, rec in first.items():
        by_label[rec.config_label].append(key)
    labels: dict[tuple[Any, ...], str] = {}
    for label, keys in by_label.items():
        if len(keys) == 1:
            labels[keys[0]] = label
            continue
        # what tells these lines apart, in the order people would name it
        telling: tuple[Callable[[Record], str], ...] = (
            _load_text,
            lambda r: f"vLLM {r.vllm_version or '?'}",
            lambda r: (r.image_digest or r.image or "?")[-12:],
        )
        chosen = [getter for getter in telling if len({getter(first[k]) for k in keys}) > 1]
        for index, key in enumerate(keys, 1):
            extra = [getter(first[key]) for getter in chosen] or [f"#{index}"]
            labels[key] = f"{label} ({'; '.join(extra)})"
    return labels


def layout_text(record: Record) -> str:
    """A layout in words: '2xTP4 router, 8 GPUs, cpx/nps4'."""
    parts = [record.layout + (f" {record.spread}" if record.spread else "")]
    if record.gpus_used:
        parts.append(f"{record.gpus_used} GPUs")
    if record.partition:
        parts.append(record.partition)
    return ", ".join(parts)


def _layout_labels(
    keyed: Iterable[tuple[tuple[Any, ...], Record]],
) -> dict[tuple[Any, ...], str]:
    """A legend label per line naming its layout; the configuration too where that repeats."""
    first: dict[tuple[Any, ...], Record] = {}
    for key, rec in keyed:
        first.setdefault(key, rec)
    texts = {key: layout_text(rec) for key, rec in first.items()}
    repeated = {text for text in texts.values() if list(texts.values()).count(text) > 1}
    full = _line_labels(first.items())
    return {
        key: f"{text} ({full[key]})" if text in repeated else text for key, text in texts.items()
    }


def layouts(records: Iterable[Record]) -> list[str]:
    """The layouts (2xTP4, 8xTP1) of the serving records, sorted."""
    return sorted({r.layout for r in records if r.scenario == "serve"})


def _common_load(records: Sequence[Record]) -> str:
    loads = {_load_text(r) for r in records}
    return f" ({loads.pop()})" if len(loads) == 1 else ""


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    # statistics.stdev, in floats: it sums exact fractions, ten times slower (10,000 points);
    # the two differ in the last digit at most, far below what a chart can show
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _capped(kind: str, items: Sequence[str]) -> list[str]:
    notes = list(items[:MAX_NOTES])
    if len(items) > MAX_NOTES:
        notes.append(f"... and {len(items) - MAX_NOTES} more {kind}")
    return notes


@dataclass(frozen=True)
class _Lines:
    """The serve records of a selection with their line keys, and each line's label and style:
    what every chart of the selection shares, worked out once."""

    serve: list[tuple[tuple[Any, ...], Record]]
    labels: dict[tuple[Any, ...], str]
    styles: dict[tuple[Any, ...], int]
    run_names: dict[str, str]


def _lines(records: Sequence[Record], by_layout: bool = False) -> _Lines:
    serve = [(_line_key(r), r) for r in records if r.scenario == "serve" and r.qps is not None]
    labels = _layout_labels(serve) if by_layout else _line_labels(serve)
    # one style per line across every chart of these records, so a configuration keeps its look
    styles = {key: i for i, key in enumerate(sorted(labels, key=lambda k: labels[k]))}
    run_names = short_run_ids([r.run_id for _, r in serve])
    return _Lines(serve, labels, styles, run_names)


@dataclass
class _Selection:
    """The serve records a chart can draw, by line and rate, and what it had to leave out."""

    groups: dict[tuple[Any, ...], dict[float, list[Record]]]
    labels: dict[tuple[Any, ...], str]
    styles: dict[tuple[Any, ...], int]
    failed: list[Record]
    missing: list[tuple[Record, str]]
    run_names: dict[str, str]


def _select(lines: _Lines, needed: Sequence[str]) -> _Selection:
    groups: dict[tuple[Any, ...], dict[float, list[Record]]] = defaultdict(
        lambda: defaultdict(list)
    )
    failed: list[Record] = []
    missing: list[tuple[Record, str]] = []
    for key, rec in lines.serve:
        if rec.verdict != OK:
            failed.append(rec)
            continue
        absent = [name for name in needed if rec.metric(name) is None]
        if absent:
            missing.append((rec, absent[0]))
            continue
        assert rec.qps is not None
        groups[key][rec.qps].append(rec)
    return _Selection(groups, lines.labels, lines.styles, failed, missing, lines.run_names)


def _notes(sel: _Selection, drawn: Sequence[tuple[Any, ...]]) -> tuple[tuple[str, ...], str]:
    """The full notes (for people reading the report or stderr) and a one-line footnote."""

    def where(rec: Record) -> str:
        label = sel.labels[_line_key(rec)]
        return f"{label} @ {format_rate(rec.qps)} QPS ({sel.run_names[rec.run_id]})"

    failed = [
        f"omitted {rec.verdict} point {where(rec)}: {'; '.join(rec.reasons) or 'no reason given'}"
        for rec in sel.failed
    ]
    missing = [f"omitted {where(rec)}: vLLM reported no {name}" for rec, name in sel.missing]
    hidden = [sel.labels[key] for key in sel.groups if key not in drawn]
    notes = _capped("failed points", failed) + _capped("points without the metric", missing)
    if hidden:
        notes.append(
            f"{len(hidden)} more configuration(s) not drawn (at most {MAX_LINES} lines): "
            + "; ".join(sorted(hidden)[:MAX_NOTES])
            + ("; ..." if len(hidden) > MAX_NOTES else "")
            + ". Narrow the selection with filters"
        )
    short: list[str] = []
    if sel.failed:
        short.append(f"{len(sel.failed)} failed point(s) omitted")
    if sel.missing:
        short.append(f"{len(sel.missing)} point(s) without the metric omitted")
    if hidden:
        short.append(f"{len(hidden)} configuration(s) not drawn")
    return tuple(notes), "; ".join(short)


def _drawn_keys(sel: _Selection) -> list[tuple[Any, ...]]:
    return sorted(sel.groups, key=lambda k: sel.labels[k])[:MAX_LINES]


def _inf_position(finite: Sequence[float]) -> float:
    """Where `inf` sits: one step right of the highest finite rate, on its own tick."""
    if not finite:
        return 1.0
    top = finite[-1]
    step = (top - finite[0]) / (len(finite) - 1) if len(finite) > 1 else top
    return top + max(step, 0.15 * top)


def _max_qps_under_slo(records: Iterable[Record]) -> float | None:
    """The highest rate meeting the SLO that the line's searches found (the lowest, where
    repeated runs answered differently); None where none searched or none found one."""
    found = [
        a.max_qps
        for a in search_answers(records)
        if a.result in (FOUND, ABOVE_RANGE) and a.max_qps is not None
    ]
    return min(found) if found else None


def qps_chart(records: Sequence[Record], metric: str) -> Chart:
    """`metric` vs the requested rate, one line per configuration (serve points only).

    The x axis is the REQUESTED rate. `inf` (every prompt sent at once) is drawn one step right
    of the highest finite rate, on a tick labelled "inf", joined by a dotted segment: its
    achieved rate is the server's saturation throughput, which differs per configuration and
    may be below the highest finite rate, so placing it there would fold lines back and put the
    configurations' points at different x.
    """
    return _qps_chart(_lines(records), metric)


def _qps_chart(lines: _Lines, metric: str) -> Chart:
    info = metric_info(metric)
    sel = _select(lines, [metric])
    drawn = _drawn_keys(sel)
    finite = sorted({q for key in drawn for q in sel.groups[key] if not math.isinf(q)})
    has_inf = any(math.isinf(q) for key in drawn for q in sel.groups[key])
    inf_x = _inf_position(finite) if has_inf else None

    series: list[Series] = []
    for key in drawn:
        points: list[ChartPoint] = []
        for qps in sorted(sel.groups[key]):
            mean, sd = _mean_sd([r.metrics[metric] for r in sel.groups[key][qps]])
            x = inf_x if math.isinf(qps) and inf_x is not None else qps
            points.append(ChartPoint(qps, x, mean, 0.0, sd, len(sel.groups[key][qps])))
        best = _max_qps_under_slo(r for recs in sel.groups[key].values() for r in recs)
        series.append(Series(sel.labels[key], tuple(points), sel.styles[key], best))

    ticks: tuple[tuple[float, str], ...] = ()
    if len(finite) <= MAX_RATE_TICKS:
        ticks = tuple((q, format_rate(q)) for q in finite)
    if inf_x is not None:
        ticks += ((inf_x, "inf"),)
    notes, footnote = _notes(sel, drawn)
    drawn_records = [r for key in drawn for recs in sel.groups[key].values() for r in recs]
    return Chart(
        name=f"{metric}-vs-qps",
        kind="qps",
        title=f"{info.label} vs QPS{_common_load(drawn_records)}",
        x_label="requested rate (QPS)",
        y_label=f"{info.label} ({info.unit})",
        series=tuple(series),
        notes=notes,
        footnote=footnote,
        inf_x=inf_x,
        x_ticks=ticks,
    )


def tradeoff_chart(
    records: Sequence[Record], latency: str, throughput: str = "output_throughput"
) -> Chart:
    """Throughput vs latency, one curve per configuration through its QPS points.

    Up and to the left is better: the curve shows what each extra token/s costs in latency.
    Each point is labelled with its requested rate.
    """
    return _tradeoff_chart(_lines(records), latency, throughput)


def _tradeoff_chart(lines: _Lines, latency: str, throughput: str) -> Chart:
    x_info, y_info = metric_info(latency), metric_info(throughput)
    sel = _select(lines, [latency, throughput])
    drawn = _drawn_keys(sel)
    series: list[Series] = []
    for key in drawn:
        points: list[ChartPoint] = []
        for qps in sorted(sel.groups[key]):
            group = sel.groups[key][qps]
            x, x_sd = _mean_sd([r.metrics[latency] for r in group])
            y, y_sd = _mean_sd([r.metrics[throughput] for r in group])
            points.append(ChartPoint(qps, x, y, x_sd, y_sd, len(group)))
        series.append(Series(sel.labels[key], tuple(points), sel.styles[key]))
    notes, footnote = _notes(sel, drawn)
    drawn_records = [r for key in drawn for recs in sel.groups[key].values() for r in recs]
    return Chart(
        name=f"{throughput}-vs-{latency}",
        kind="tradeoff",
        title=f"{y_info.label} vs {x_info.label}{_common_load(drawn_records)}",
        x_label=f"{x_info.label} ({x_info.unit})",
        y_label=f"{y_info.label} ({y_info.unit})",
        series=tuple(series),
        notes=notes,
        footnote=footnote,
    )


def layout_chart(
    records: Sequence[Record], latency: str, throughput: str = "output_throughput"
) -> Chart:
    """Total throughput (every replica's) vs latency, one curve per layout of the GPUs.

    Where 2xTP4 and 8xTP1 serve the same model on the same 8 GPUs, the curve higher up at
    the latency one can accept is the layout to deploy.
    """
    chart = _tradeoff_chart(_lines(records, by_layout=True), latency, throughput)
    return dataclasses.replace(
        chart,
        name=f"layouts-{chart.name}",
        title=f"{chart.title} per layout (replicas x TP; total over replicas)",
    )


def resolve_metric(name: str, stat: str) -> str:
    """'tpot' + 'p99' -> 'tpot_p99_ms'; a full normalised name is checked and kept."""
    if not _STAT.match(stat):
        raise ResultsError(
            f"unknown statistic {stat!r}: use median, mean, std or a percentile such as p99"
        )
    key = name.strip().lower()
    if key in LATENCIES:
        return latency_name(key, stat)
    metric_info(key)  # raises, naming the metrics there are
    return key


def serving_charts(
    records: Sequence[Record],
    *,
    stat: str = "median",
    metrics: Sequence[str] = ("tpot", "ttft"),
    latency: str = "tpot",
    throughput: str = "output_throughput",
) -> list[Chart]:
    """The source documents' charts (each metric vs QPS) and throughput vs latency; where the
    records hold several layouts (2xTP4, 8xTP1), total throughput vs latency per layout."""
    names = [resolve_metric(m, stat) for m in metrics]
    x_name, y_name = resolve_metric(latency, stat), resolve_metric(throughput, stat)
    lines = _lines(records)
    charts = [_qps_chart(lines, name) for name in names]
    charts.append(_tradeoff_chart(lines, x_name, y_name))
    for name in ENERGY_CHARTS:  # power and tokens per joule vs QPS, where telemetry measured them
        if any(name in r.metrics for r in records):
            charts.append(_qps_chart(lines, name))
    if len(layouts(records)) > 1:  # replicas x TP compared: one curve per layout
        charts.append(layout_chart(records, x_name, y_name))
    return charts
