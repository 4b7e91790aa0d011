"""Charts of serving sweeps: TPOT and TTFT vs QPS, throughput vs latency, as PNG and SVG."""

from __future__ import annotations

import io
import math
import os
import re
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from results.errors import ResultsError
from results.formats import short_run_ids
from results.pool import can_fork, process_pool, workers_for
from results.schema import LATENCIES, OK, Record, format_rate, latency_name, metric_info

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

FORMATS = ("png", "svg")
ChartKind = Literal["qps", "tradeoff"]
# more lines than this make an unreadable legend; the rest are named in the notes
MAX_LINES = 20
# per kind of note (failed, missing metric): enough to act on, not a wall of text
MAX_NOTES = 8
# below this many points (a tradeoff chart's count twice), worker processes cost more than the
# drawing they would share
PARALLEL_FROM_POINTS = 300
# past this many distinct rates the ticks would collide; matplotlib picks them instead
MAX_RATE_TICKS = 12
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# an id, and the two ways an SVG refers to one
_SVG_ID = re.compile(r"""(\bid="|\bxlink:href="#|\bhref="#|url\(#)([^")]+)""")
_STAT = re.compile(r"^(mean|median|std|p\d+(\.\d+)?)$")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
ERROR_BARS = "error bars: ±1 standard deviation over repeated runs"
_PAD_IN = 0.08  # between the title, the axes, their labels, the legend and the edges (inches)


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


# ---------------------------------------------------------------------------------------------
# aggregation


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


def _lines(records: Sequence[Record]) -> _Lines:
    serve = [(_line_key(r), r) for r in records if r.scenario == "serve" and r.qps is not None]
    labels = _line_labels(serve)
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
        series.append(Series(sel.labels[key], tuple(points), sel.styles[key]))

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
    """The source documents' charts (each metric vs QPS) and throughput vs latency."""
    names = [resolve_metric(m, stat) for m in metrics]
    x_name, y_name = resolve_metric(latency, stat), resolve_metric(throughput, stat)
    lines = _lines(records)
    charts = [_qps_chart(lines, name) for name in names]
    charts.append(_tradeoff_chart(lines, x_name, y_name))
    return charts


# ---------------------------------------------------------------------------------------------
# drawing


def load_matplotlib() -> None:
    """Import matplotlib for drawing, once.

    matplotlib is imported here and in the drawing functions, not with this module: it takes
    half a second, which commands that draw nothing (show, compare, index) need not pay. Call
    this before forking processes that draw, so that they inherit it instead of importing it.
    """
    import matplotlib  # noqa: PLC0415 (see the docstring)
    import matplotlib.backends.backend_agg  # noqa: PLC0415
    import matplotlib.figure  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    # no display anywhere this runs; the Agg canvas also keeps PNG bytes identical between runs
    matplotlib.use("Agg")


def draw(chart: Chart) -> Figure:
    """The chart as a matplotlib Figure (no pyplot: no global state, safe to call repeatedly)."""
    load_matplotlib()
    import matplotlib  # noqa: PLC0415 (imported late: see load_matplotlib)
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    lines = len(chart.series)
    # the legend goes under the axes, so long configuration labels never squeeze the plot
    # no layout engine: it would draw every artist once more just to measure (twice the time
    # for a chart of 20 lines); _place measures the few things the margins depend on instead
    fig = Figure(figsize=(8.0, 4.8 + 0.24 * lines), dpi=100)
    ax = fig.add_subplot()
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    any_error = False
    for index, series in enumerate(chart.series):
        color = colors[series.style % len(colors)]
        marker = _MARKERS[series.style % len(_MARKERS)]
        gid = f"{chart.name}-series-{index}"
        pts = series.points
        main = [p for p in pts if chart.kind != "qps" or not math.isinf(p.qps)]
        tail = [p for p in pts if chart.kind == "qps" and math.isinf(p.qps)]
        shown = main or tail
        ax.plot(
            [p.x for p in shown],
            [p.y for p in shown],
            marker=marker,
            color=color,
            label=series.label,
            gid=gid,
        )
        if main and tail:
            # the jump to `inf` is not a measured trend: dotted, so nobody reads a slope into it
            ax.plot(
                [main[-1].x, tail[0].x],
                [main[-1].y, tail[0].y],
                linestyle=":",
                marker=marker,
                markevery=[1],
                color=color,
                gid=f"{gid}-inf",
            )
        if any(p.x_err or p.y_err for p in pts):
            any_error = True
            ax.errorbar(
                [p.x for p in pts],
                [p.y for p in pts],
                xerr=[p.x_err for p in pts] if chart.kind == "tradeoff" else None,
                yerr=[p.y_err for p in pts],
                fmt="none",
                ecolor=color,
                capsize=3,
                gid=f"{gid}-errors",
            )
        if chart.kind == "tradeoff":
            for p in pts:
                ax.annotate(
                    format_rate(p.qps),
                    (p.x, p.y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize="x-small",
                    color=color,
                )
    if chart.kind == "qps":
        finite = [p.x for s in chart.series for p in s.points if not math.isinf(p.qps)]
        ticks = list(chart.x_ticks)
        if finite and chart.inf_x is not None and all(label == "inf" for _, label in ticks):
            # too many rates to label each: round numbers up to the highest, as matplotlib
            # would pick them (setting the "inf" tick replaces matplotlib's own)
            top = max(finite)
            picked = MaxNLocator(nbins=8).tick_values(0.0, top)
            ticks[:0] = [(float(t), f"{t:g}") for t in picked if 0.0 <= t <= top]
        if ticks:
            ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
        if chart.inf_x is not None and finite:
            ax.axvline(
                (max(finite) + chart.inf_x) / 2,
                color="#bbbbbb",
                linestyle="--",
                linewidth=0.8,
                gid=f"{chart.name}-inf-separator",
            )
        ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    height = fig.get_figheight()
    title = fig.suptitle(chart.title, fontsize="medium", y=1.0 - _PAD_IN / height, va="top")
    ax.set_xlabel(chart.x_label)
    ax.set_ylabel(chart.y_label)
    ax.grid(True, alpha=0.3)
    legend: Legend | None = None
    if chart.empty:
        ax.text(0.5, 0.5, "no serving point to draw", transform=ax.transAxes, ha="center")
    else:
        legend = fig.legend(
            loc="lower center",
            bbox_to_anchor=(0.5, _PAD_IN / height),
            fontsize="small",
            frameon=False,
        )
    footnote = "; ".join(part for part in (chart.footnote, ERROR_BARS if any_error else "") if part)
    if footnote:
        # under the title, whatever the legend's size
        ax.set_title(footnote, fontsize="x-small", color="#666666")
    _place(fig, ax, title, legend)
    return fig


def _place(fig: Figure, ax: Axes, title: Text, legend: Legend | None) -> None:
    """Put the axes between the titles, the tick labels and the legend, which are measured."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (see draw)

    renderer = FigureCanvasAgg(fig).get_renderer()  # type: ignore[no-untyped-call]
    dpi = fig.dpi
    width, height = fig.get_figwidth(), fig.get_figheight()

    def inches(extent: Bbox, along: str) -> float:
        return float(extent.width if along == "x" else extent.height) / dpi

    top = _PAD_IN + inches(title.get_window_extent(renderer), "y") + _PAD_IN
    if ax.get_title():
        top += inches(ax.title.get_window_extent(renderer), "y") + _PAD_IN
    bottom = _PAD_IN
    if legend is not None:
        bottom += inches(legend.get_window_extent(renderer), "y") + _PAD_IN
    # the labels' size hardly depends on where the axes are: their text does (ticks, digits)
    x_axis, y_axis = ax.xaxis.get_tightbbox(renderer), ax.yaxis.get_tightbbox(renderer)
    bottom += (inches(x_axis, "y") if x_axis is not None else 0.0) + _PAD_IN
    left = (inches(y_axis, "x") if y_axis is not None else 0.0) + 2 * _PAD_IN
    right = 0.3  # half an "inf" tick label, and a QPS label at the last point
    ax.set_position(
        (
            left / width,
            bottom / height,
            max(width - left - right, 1.0) / width,
            max(height - top - bottom, 1.0) / height,
        )
    )


def render(chart: Chart, fmt: str, *, svg_text: bool = False) -> bytes:
    """The chart as PNG or SVG bytes, identical for identical input (no date, fixed ids).

    An SVG draws its letters as paths, so it looks the same anywhere; with `svg_text` they stay
    <text> for the viewer's fonts: a third of the size, and faster, for pages of many charts.
    """
    if fmt not in FORMATS:
        raise ResultsError(f"unknown chart format {fmt!r}: use {' or '.join(FORMATS)}")
    fig = draw(chart)
    buffer = io.BytesIO()
    metadata: dict[str, Any] = (
        {"Date": None, "Creator": "vllm-bench-images"}
        if fmt == "svg"
        else {"Software": "vllm-bench-images"}
    )
    # ids in an SVG come from a hash salted with this: fixed per chart, so output is stable
    rc: dict[str, Any] = {
        "svg.hashsalt": chart.name,
        "svg.id": chart.name,
        "svg.fonttype": "none" if svg_text else "path",
    }
    import matplotlib  # noqa: PLC0415 (imported late: see load_matplotlib)

    with matplotlib.rc_context(rc):  # type: ignore[arg-type]
        fig.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def svg_markup(chart: Chart) -> str:
    """The chart as an <svg> element to inline in HTML (no XML declaration or doctype).

    Every id in it is prefixed with the chart's name: matplotlib names glyphs and groups the
    same in every figure (DejaVuSans-4c, figure_1), and ids must be unique in one HTML page.
    """
    text = render(chart, "svg", svg_text=True).decode("utf-8")
    svg = text[text.index("<svg") :]
    prefix = f"{chart.name}-"

    def own(match: re.Match[str]) -> str:
        head, name = match[1], match[2]
        return match[0] if name == chart.name or name.startswith(prefix) else head + prefix + name

    return _SVG_ID.sub(own, svg)


class SvgMarkups:
    """svg_markup of each chart, drawn by worker processes while the caller does other work.

    `with SvgMarkups(charts) as svgs: ...; svgs.result()`. Few points, one CPU or no fork: the
    charts are drawn in this process, by result().
    """

    def __init__(self, charts: Sequence[Chart]) -> None:
        self._charts = list(charts)
        self._pool: ProcessPoolExecutor | None = None
        self._pending: dict[int, Future[str]] = {}

    def __enter__(self) -> SvgMarkups:
        charts = self._charts
        workers = workers_for(len(charts))
        if workers > 1 and can_fork() and sum(map(_cost, charts)) >= PARALLEL_FROM_POINTS:
            load_matplotlib()  # once, here, rather than in each worker
            self._pool = process_pool(workers)
            # the costliest first, so that no worker is left drawing a big one alone at the end
            for i in sorted(range(len(charts)), key=lambda i: -_cost(charts[i])):
                self._pending[i] = self._pool.submit(svg_markup, charts[i])
        return self

    def result(self) -> list[str]:
        return [self._markup(i, chart) for i, chart in enumerate(self._charts)]

    def _markup(self, i: int, chart: Chart) -> str:
        if i in self._pending:
            try:
                return self._pending[i].result()
            except BrokenProcessPool:
                pass  # a worker was killed (out of memory, say): draw it here instead
        return svg_markup(chart)

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _cost(chart: Chart) -> int:
    # what drawing a chart takes grows with its points; a tradeoff chart labels each of them
    points = sum(len(s.points) for s in chart.series)
    return points * 2 if chart.kind == "tradeoff" else points


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_charts(charts: Sequence[Chart], out_dir: Path, formats: Sequence[str]) -> list[Path]:
    """Write each chart that has something to draw as <out_dir>/<name>.<fmt>; the paths written.

    Each file is written to a temporary name and renamed, so a chart is never half-written.
    """
    for fmt in formats:
        if fmt not in FORMATS:
            raise ResultsError(f"unknown chart format {fmt!r}: use {' or '.join(FORMATS)}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(
            f"cannot create {out_dir}: {exc.strerror or exc}; give a writable -o"
        ) from exc
    written: list[Path] = []
    for chart in charts:
        if chart.empty:
            continue
        for fmt in formats:
            path = out_dir / f"{chart.name}.{fmt}"
            try:
                _atomic_write(path, render(chart, fmt))
            except OSError as exc:
                raise ResultsError(
                    f"cannot write {path}: {exc.strerror or exc}; give a writable -o"
                ) from exc
            written.append(path)
    return written
