"""One self-contained HTML report: summary, inline charts, tables, validity and provenance."""

from __future__ import annotations

import functools
import html
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from markupsafe import Markup

from results.analysis.axis import matrix_key, value_text
from results.analysis.chartdata import Chart, serving_charts
from results.analysis.slo import search_answers
from results.errors import ResultsError
from results.model.provenance import load_provenance
from results.model.run_ids import short_run_ids
from results.model.schema import LATENCIES, LATENCY_LABEL, Record, format_rate
from results.model.sweeps import sweeps_of
from results.render.accuracy import accuracy_vs_speed
from results.render.charts import ERROR_BARS, SvgMarkups
from results.render.report_provenance import GPU_COLUMNS, provenance_views
from runner.rundir import FAILED, NOT_RUN, OK

if TYPE_CHECKING:
    import jinja2

TITLE = "vLLM benchmark report"
TEMPLATE = "report.html.j2"
_TABLE_STATS = ("median", "p99")
_COLUMNS = ["request_throughput", "output_throughput"] + [
    f"{m}_{s}_ms" for m in LATENCIES for s in _TABLE_STATS
]
_HEADERS = ["run", "configuration", "point", "QPS", "done/failed", "req/s", "out tok/s"] + [
    f"{LATENCY_LABEL[m]} {s}" for m in LATENCIES for s in _TABLE_STATS
]


def dash(value: object) -> str:
    """A value as the report shows it: '-' for none or empty."""
    return "-" if value is None or value == "" else str(value)


def _escape(value: object) -> str:
    # Every {{ }} passes through here before autoescape's markupsafe.escape. Text with quotes is
    # escaped here with html.escape (&#x27;, &quot;, as the report always wrote them; markupsafe
    # writes &#39; and &#34;); the rest is left to markupsafe, which escapes & < > the same way.
    # Markup made on purpose (an inline SVG, a macro's output) passes as it is.
    if isinstance(value, Markup):
        return value
    text = value if isinstance(value, str) else str(value)
    if '"' in text or "'" in text:
        return Markup(html.escape(text, quote=True))  # noqa: S704 (escaped just now)
    return text


@functools.cache
def _environment() -> jinja2.Environment:
    # jinja2 is imported here, not with the module: every bench-results command imports this
    # one, and only `report` renders a template
    import jinja2  # noqa: PLC0415

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("results.render", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_escape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["dash"] = dash
    return env


@dataclass(frozen=True)
class _Config:
    label: str
    vendor: str
    image: str | None
    vllm: str | None
    runs: int
    ok: int
    not_ok: int
    peak: str
    tpot: str


@dataclass(frozen=True)
class _Figure:
    name: str
    svg: Markup
    caption: str
    notes: tuple[str, ...]


class _Row(NamedTuple):
    # a tuple, unpacked by the template's loop: 10,000 rows read faster than by attribute
    css: str
    run: str
    label: str
    point: str
    qps: str
    done: str
    cells: list[str]
    verdict: str


@dataclass(frozen=True)
class _Issue:
    run: str
    point: str
    label: str
    verdict: str
    text: str


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _summary(
    records: Sequence[Record], configs: Mapping[tuple[Any, ...], list[Record]]
) -> dict[str, Any]:
    verdicts = Counter(r.verdict for r in records)
    cards = [
        ("runs", len({r.run_id for r in records})),
        ("configurations", len(configs)),
        ("points", len(records)),
        ("ok", verdicts.get(OK, 0)),
        ("failed", verdicts.get(FAILED, 0)),
        ("not run", sum(n for v, n in verdicts.items() if v not in (OK, FAILED))),
        ("with warnings", sum(1 for r in records if r.warnings)),
    ]

    def listing(values: Iterable[str | None]) -> str:
        return ", ".join(sorted({v for v in values if v})) or "-"

    listings = [
        ("models", listing(r.model for r in records)),
        ("vendors", listing(r.vendor for r in records)),
        ("hardware", listing(r.gpu_model or r.vendor for r in records)),
        ("vLLM", listing(r.vllm_version for r in records)),
        ("scenarios", listing(r.scenario for r in records)),
    ]
    return {"cards": cards, "listings": listings}


def _configurations(configs: Mapping[tuple[Any, ...], list[Record]]) -> list[_Config]:
    rows = []
    for recs in sorted(configs.values(), key=lambda rs: rs[0].config_label):
        first = recs[0]
        ok = [r for r in recs if r.verdict == OK]
        serve = [r for r in ok if r.scenario == "serve"]
        peak = max((r.metrics["output_throughput"] for r in serve if "output_throughput" in
                    r.metrics), default=None)  # fmt: skip
        tpot = min((r.metrics["tpot_median_ms"] for r in serve if "tpot_median_ms" in r.metrics),
                   default=None)  # fmt: skip
        rows.append(
            _Config(
                label=first.config_label,
                vendor=first.vendor,
                image=first.image_digest or first.image,
                vllm=first.vllm_version,
                runs=len({r.run_id for r in recs}),
                ok=len(ok),
                not_ok=len(recs) - len(ok),
                peak=_num(peak),
                tpot=_num(tpot),
            )
        )
    return rows


def _figures(drawn: Sequence[Chart], svgs: Sequence[str]) -> list[_Figure]:
    figures = []
    for chart, svg in zip(drawn, svgs, strict=True):
        caption = chart.title
        if any(p.runs > 1 for s in chart.series for p in s.points):
            caption += f"; {ERROR_BARS}"
        # matplotlib's own SVG, its text already escaped: markup to keep, not text to escape
        figures.append(_Figure(chart.name, Markup(svg), caption, chart.notes))  # noqa: S704
    return figures


def _rows(records: Sequence[Record], runs: Mapping[str, str]) -> list[_Row]:
    rows: list[_Row] = []
    for rec in records:
        css = "warn" if rec.warnings else ""
        if rec.verdict in (FAILED, NOT_RUN):
            css = rec.verdict
        get = rec.metrics.get
        done = f"{'-' if rec.completed is None else rec.completed}/" + (
            "-" if rec.failed is None else str(rec.failed)
        )
        rows.append(
            _Row(
                css=css,
                run=dash(runs[rec.run_id]),
                label=dash(rec.config_label),
                point=dash(rec.point_id),
                qps=dash(format_rate(rec.qps)),
                done=done,
                cells=["-" if (v := get(n)) is None else f"{v:.2f}" for n in _COLUMNS],
                verdict=dash(rec.verdict),
            )
        )
    return rows


def _issues(records: Sequence[Record], runs: Mapping[str, str]) -> dict[str, list[_Issue]]:
    bad = [
        _Issue(
            runs[r.run_id],
            r.point_id,
            r.config_label,
            r.verdict,
            "; ".join(r.reasons) or "no reason recorded",
        )
        for r in records
        if r.verdict != OK
    ]
    warned = [
        _Issue(runs[r.run_id], r.point_id, r.config_label, r.verdict, w)
        for r in records
        for w in r.warnings
    ]
    return {"bad": bad, "warned": warned}


def _searches(records: Sequence[Record], runs: Mapping[str, str]) -> list[dict[str, Any]]:
    """The --find-max-qps answers, one row per run that searched."""
    return [
        {
            "run": runs[a.run_id],
            "label": a.config_label,
            "slo": a.slo,
            "cell": a.cell,
            "missed": None if a.lowest_missed is None else f"{a.lowest_missed:g}",
            "probes": a.probes,
            "result": a.result or "did not finish",
        }
        for a in search_answers(records)
    ]


def _sweeps(records: Sequence[Record]) -> list[dict[str, Any]]:
    """A section per sweep the records come from: its matrix axes and its configurations."""
    shown = Counter((r.sweep, matrix_key(r.matrix)) for r in records)
    return [
        {
            "name": sweep.name,
            "axes": [(k, ", ".join(value_text(v) for v in vs)) for k, vs in sweep.axes().items()],
            "configurations": [
                {
                    "index": c["index"],
                    "label": c["label"],
                    "state": c["state"],
                    "runs": ", ".join(c["runs"]),
                    "points": shown[(sweep.name, matrix_key(c["varying"]))],
                }
                for c in sweep.configurations
            ],
        }
        for sweep in sweeps_of(records)
    ]


def render_report(
    records: Sequence[Record],
    provenance: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    title: str = TITLE,
    subtitle: str = "",
    charts: Sequence[Chart] | None = None,
) -> str:
    """The report as one HTML document with no outside reference.

    `provenance` maps run id -> provenance.json (read from each record's run_dir when None);
    `charts` default to serving_charts(records): TPOT and TTFT vs QPS, throughput vs latency.
    """
    if not records:
        raise ResultsError("no point to report: the selection is empty; loosen the filters")
    if provenance is None:
        provenance = load_provenance(records)
    if charts is None:
        charts = serving_charts(records)
    drawn = [c for c in charts if not c.empty]
    with SvgMarkups(drawn) as svgs:
        # the charts are drawn by other processes meanwhile, where there are CPUs for them
        runs = short_run_ids([r.run_id for r in records])
        configs: dict[tuple[Any, ...], list[Record]] = defaultdict(list)
        for rec in records:
            configs[rec.config_key].append(rec)
        page = {
            "title": title,
            "subtitle": subtitle,
            "summary": _summary(records, configs),
            "configurations": _configurations(configs),
            "headers": _HEADERS,
            "rows": _rows(records, runs),
            **_issues(records, runs),
            "provenance": provenance_views(records, provenance, runs),
            "gpu_columns": GPU_COLUMNS,
            "searches": _searches(records, runs),
            "sweeps": _sweeps(records),
            "accuracy": accuracy_vs_speed(records),
        }
        figures = _figures(drawn, svgs.result())
    return _environment().get_template(TEMPLATE).render(page, figures=figures)


def write_report(
    records: Sequence[Record],
    path: Path | str,
    provenance: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> Path:
    """Render the report and write it to `path` atomically: an old report is never half-replaced."""
    path = Path(path)
    text = render_report(records, provenance, **options)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ResultsError(f"cannot write {path}: {parent} is not a directory; create it first")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise ResultsError(f"cannot write in {parent}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ResultsError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
