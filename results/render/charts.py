"""Charts drawn: matplotlib figures as PNG and SVG files, and SVG markup to inline in HTML."""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from results.analysis.chartdata import Chart, Series
from results.errors import ResultsError
from results.model.schema import format_rate
from results.pool import can_fork, process_pool, workers_for

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

FORMATS = ("png", "svg")
# below this many points (a tradeoff chart's count twice), worker processes cost more than the
# drawing they would share
PARALLEL_FROM_POINTS = 300
# an id, and the two ways an SVG refers to one
_SVG_ID = re.compile(r"""(\bid="|\bxlink:href="#|\bhref="#|url\(#)([^")]+)""")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
ERROR_BARS = "error bars: ±1 standard deviation over repeated runs"
_PAD_IN = 0.08  # between the title, the axes, their labels, the legend and the edges (inches)


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
        any_error |= _draw_series(ax, chart, index, series, color)
    if chart.kind == "qps":
        _rate_axis(ax, chart)
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


def _draw_series(ax: Axes, chart: Chart, index: int, series: Series, color: str) -> bool:
    """One series' line, its error bars and (tradeoff) rate labels; True if it has error bars."""
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
    if chart.kind == "qps" and series.max_qps is not None:
        _mark_max_qps(ax, gid, series, color)
    has_error = any(p.x_err or p.y_err for p in pts)
    if has_error:
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
    return has_error


def _mark_max_qps(ax: Axes, gid: str, series: Series, color: str) -> None:
    """A star on the line's point at its max QPS under SLO (--find-max-qps), labelled."""
    at = [p for p in series.points if p.qps == series.max_qps]
    if not at:
        return
    ax.plot(
        [at[0].x],
        [at[0].y],
        marker="*",
        markersize=14,
        linestyle="none",
        color=color,
        markeredgecolor="black",
        gid=f"{gid}-max-qps-slo",
    )
    ax.annotate(
        f"max QPS under SLO: {format_rate(at[0].qps)}",
        (at[0].x, at[0].y),
        textcoords="offset points",
        xytext=(6, -12),
        fontsize="x-small",
        color=color,
    )


def _rate_axis(ax: Axes, chart: Chart) -> None:
    """A qps chart's x axis: the rates' ticks, `inf` on its own past a dashed separator."""
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 (imported late: see draw)

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
