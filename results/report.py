"""One self-contained HTML report: summary, inline charts, tables, validity and provenance."""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from results.charts import ERROR_BARS, Chart, SvgMarkups, serving_charts
from results.errors import ResultsError
from results.formats import short_run_ids
from results.rundir import PROVENANCE_FILE, read_json_object
from results.schema import FAILED, LATENCIES, LATENCY_LABEL, NOT_RUN, OK, Record, format_rate

TITLE = "vLLM benchmark report"
_TABLE_STATS = ("median", "p99")

# Everything is inline. The policy makes the browser refuse any request the page might still
# try (a stray URL in a label would be text anyway: everything is escaped), so it works offline.
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1400px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
#d5d9e0;padding-bottom:4px}h3{font-size:15px;margin:14px 0 6px}
.meta{color:#5a6372;margin:0 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.card{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#5a6372;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:14px}
figure.chart{background:#fff;border:1px solid #d5d9e0;border-radius:6px;margin:0;padding:8px;
flex:1 1 560px;max-width:820px}
figure.chart svg{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#5a6372}
.scroll{overflow-x:auto;background:#fff;border:1px solid #d5d9e0;border-radius:6px}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{padding:3px 8px;border-bottom:1px solid #eceef2;text-align:left;white-space:nowrap}
th{background:#eef1f5;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fdecec}tr.not-run td{background:#f3f3f3;color:#777}
tr.warn td{background:#fff8e1}
.v-ok{color:#1a7f37;font-weight:600}.v-failed{color:#c62828;font-weight:600}
.v-not-run{color:#777;font-weight:600}
ul.issues li{margin:2px 0}ul.notes{font-size:12px;color:#5a6372;margin:4px 0 0;padding-left:18px}
details{background:#fff;border:1px solid #d5d9e0;border-radius:6px;margin:6px 0;padding:4px 10px}
summary{cursor:pointer;font-weight:600}
pre{background:#f3f4f7;padding:6px 8px;border-radius:4px;overflow-x:auto;font-size:12px;
white-space:pre-wrap;word-break:break-all}
table.kv{width:auto}table.kv th{position:static;width:180px}
.muted{color:#5a6372}
"""

# a click on a header sorts by that column (numbers as numbers, "-" last); a second click reverses
_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var body = table.tBodies[0];
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var up = th.getAttribute("data-dir") !== "up";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-dir"); });
      th.setAttribute("data-dir", up ? "up" : "down");
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var text = row.cells[col].textContent.trim();
        var num = parseFloat(text);
        return text === "-" ? null : (isNaN(num) || !/^[-+0-9.inf]/.test(text) ? text : num);
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
        var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0)
                                        : (typeof x === "number" ? -1 : 1);
        return up ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _e(value: object) -> str:
    return escape("-" if value is None or value == "" else str(value), quote=True)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def load_provenance(
    records: Iterable[Record], warn: Callable[[str], None] | None = None
) -> dict[str, dict[str, Any]]:
    """Each run's provenance.json, by run id, read once per run from the record's run_dir.

    A run whose file is missing or unreadable gets the summary its records carry, with a warning.
    """
    found: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec.run_id in found:
            continue
        prov: dict[str, Any] | None = None
        if rec.run_dir:
            file = Path(rec.run_dir) / PROVENANCE_FILE
            try:
                prov = read_json_object(file) if file.is_file() else None
            except ResultsError as exc:
                if warn is not None:
                    warn(f"{exc}; the report shows the run's summary provenance instead")
        found[rec.run_id] = prov if prov is not None else {"summary": dict(rec.provenance)}
    return found


# ---------------------------------------------------------------------------------------------
# sections


def _summary(records: Sequence[Record], configs: Mapping[tuple[Any, ...], list[Record]]) -> str:
    verdicts = Counter(r.verdict for r in records)
    warned = sum(1 for r in records if r.warnings)
    runs = len({r.run_id for r in records})
    cards = [
        ("runs", runs),
        ("configurations", len(configs)),
        ("points", len(records)),
        ("ok", verdicts.get(OK, 0)),
        ("failed", verdicts.get(FAILED, 0)),
        ("not run", sum(n for v, n in verdicts.items() if v not in (OK, FAILED))),
        ("with warnings", warned),
    ]
    parts = ['<section id="summary"><h2>Summary</h2><div class="cards">']
    parts += [f'<div class="card"><b>{n}</b><span>{_e(label)}</span></div>' for label, n in cards]
    parts.append("</div>")

    def listing(name: str, values: Iterable[str | None]) -> str:
        present = sorted({v for v in values if v})
        return f"<b>{_e(name)}:</b> {_e(', '.join(present) or '-')}"

    parts.append(
        '<p class="meta">'
        + " &middot; ".join(
            (
                listing("models", (r.model for r in records)),
                listing("vendors", (r.vendor for r in records)),
                listing("hardware", (r.gpu_model or r.vendor for r in records)),
                listing("vLLM", (r.vllm_version for r in records)),
                listing("scenarios", (r.scenario for r in records)),
            )
        )
        + "</p>"
    )
    parts.append("</section>")
    return "".join(parts)


def _configurations(configs: Mapping[tuple[Any, ...], list[Record]]) -> str:
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
            "<tr>"
            f"<td>{_e(first.config_label)}</td><td>{_e(first.vendor)}</td>"
            f"<td>{_e(first.image_digest or first.image)}</td><td>{_e(first.vllm_version)}</td>"
            f'<td class="n">{len({r.run_id for r in recs})}</td>'
            f'<td class="n">{len(ok)}/{len(recs) - len(ok)}</td>'
            f'<td class="n">{_num(peak)}</td><td class="n">{_num(tpot)}</td>'
            "</tr>"
        )
    head = (
        "<tr><th>configuration</th><th>vendor</th><th>image</th><th>vLLM</th><th>runs</th>"
        "<th>points ok/not ok</th><th>peak output tok/s (serve)</th>"
        "<th>lowest TPOT median (ms)</th></tr>"
    )
    return (
        '<section id="configurations"><h2>Configurations</h2><div class="scroll">'
        f'<table class="sortable"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
        "</div></section>"
    )


def _charts(drawn: Sequence[Chart], svgs: Sequence[str]) -> str:
    parts = ['<section id="charts"><h2>Charts</h2>']
    if not drawn:
        parts.append('<p class="muted">No serving point to chart: the selection holds none.</p>')
    else:
        parts.append('<div class="charts">')
        for chart, svg in zip(drawn, svgs, strict=True):
            caption = chart.title
            if any(p.runs > 1 for s in chart.series for p in s.points):
                caption += f"; {ERROR_BARS}"
            notes = "".join(f"<li>{_e(n)}</li>" for n in chart.notes)
            parts.append(
                f'<figure class="chart" id="chart-{_e(chart.name)}">{svg}'
                f"<figcaption>{_e(caption)}"
                + (f'<ul class="notes">{notes}</ul>' if notes else "")
                + "</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _results(records: Sequence[Record], runs: Mapping[str, str]) -> str:
    head = ["run", "configuration", "point", "QPS", "done/failed", "req/s", "out tok/s"]
    head += [f"{LATENCY_LABEL[m]} {s}" for m in LATENCIES for s in _TABLE_STATS]
    head.append("verdict")
    names = ["request_throughput", "output_throughput"]
    names += [(f"{m}_{s}_ms") for m in LATENCIES for s in _TABLE_STATS]
    labels: dict[tuple[Any, ...], str] = {}
    # run names, point ids, rates and verdicts repeat: each is escaped once (10,000 rows)
    escaped: dict[str, str] = {}

    def esc(text: str) -> str:
        value = escaped.get(text)
        if value is None:
            value = escaped[text] = _e(text)
        return value

    rows: list[str] = []
    for rec in records:
        key = rec.config_key
        label = labels.get(key)
        if label is None:
            label = labels[key] = _e(rec.config_label)
        css = "warn" if rec.warnings else ""
        if rec.verdict in (FAILED, NOT_RUN):
            css = rec.verdict
        get = rec.metrics.get
        cells = "".join(
            [
                '<td class="n">-</td>' if (v := get(n)) is None else f'<td class="n">{v:.2f}</td>'
                for n in names
            ]
        )
        done = f"{'-' if rec.completed is None else rec.completed}/" + (
            "-" if rec.failed is None else str(rec.failed)
        )
        verdict = esc(rec.verdict)
        rows.append(
            f'<tr class="{css}"><td>{esc(runs[rec.run_id])}</td><td>{label}</td>'
            f'<td>{esc(rec.point_id)}</td><td class="n">{esc(format_rate(rec.qps))}</td>'
            f'<td class="n">{done}</td>{cells}<td class="v-{verdict}">{verdict}</td></tr>'
        )
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (
        '<section id="results"><h2>Results</h2>'
        '<p class="meta">Every point. Latencies in milliseconds; latency-scenario rows report '
        "E2EL as the whole batch's latency. Click a header to sort.</p>"
        f'<div class="scroll"><table class="sortable" id="results-table"><thead><tr>{header}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _validity(records: Sequence[Record], runs: Mapping[str, str]) -> str:
    bad = [
        f"<li><b>{_e(runs[r.run_id])}/{_e(r.point_id)}</b> ({_e(r.config_label)}): "
        f'<span class="v-{_e(r.verdict)}">{_e(r.verdict)}</span>: '
        f"{_e('; '.join(r.reasons) or 'no reason recorded')}</li>"
        for r in records
        if r.verdict != OK
    ]
    warned = [
        f"<li><b>{_e(runs[r.run_id])}/{_e(r.point_id)}</b> ({_e(r.config_label)}): {_e(w)}</li>"
        for r in records
        for w in r.warnings
    ]
    none = '<p class="muted">None.</p>'
    return (
        '<section id="validity"><h2>Validity</h2>'
        f"<h3>Failed and not-run points ({len(bad)})</h3>"
        + (f'<ul class="issues" id="failed-points">{"".join(bad)}</ul>' if bad else none)
        + f"<h3>Warnings ({len(warned)})</h3>"
        + (f'<ul class="issues" id="warnings">{"".join(warned)}</ul>' if warned else none)
        + "</section>"
    )


def _kv(rows: Iterable[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>' if body else '<p class="muted">-</p>'


def _section(prov: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = prov.get(name)
    return value if isinstance(value, dict) else {}


def _command(argv: object) -> str:
    if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
        return shlex.join(argv)
    return json.dumps(argv)


# provenance keys the structured view shows; any other is listed as JSON so nothing is hidden
_SHOWN = {
    "format", "run_id", "tool", "executor", "vendor", "host", "gpus", "gpu_model", "gpu_count",
    "driver", "agent_python", "vllm_version", "packages", "commands", "env", "started",
    "finished", "container", "summary",
}  # fmt: skip


def _provenance_block(run_id: str, short: str, label: str, prov: Mapping[str, Any]) -> str:
    tool, executor, host = (
        _section(prov, "tool"),
        _section(prov, "executor"),
        _section(prov, "host"),
    )
    container = _section(prov, "container")
    parts = [
        f'<details class="provenance" id="run-{_e(short)}"><summary>{_e(run_id)} '
        f'<span class="muted">&middot; {_e(label)}</span></summary>'
    ]
    if "summary" in prov:
        parts.append(
            '<p class="muted">provenance.json could not be read; the summary kept in the '
            "records:</p>" + _kv(sorted(_section(prov, "summary").items()))
        )
    parts.append("<h3>Software and host</h3>")
    parts.append(
        _kv(
            (
                ("tool", f"{tool.get('name') or 'vllm-bench-images'} {tool.get('version') or ''}"),
                ("git commit", tool.get("git_commit")),
                ("executor", executor.get("name")),
                ("vLLM", prov.get("vllm_version")),
                ("agent Python", prov.get("agent_python")),
                ("host", host.get("hostname")),
                ("OS", host.get("os")),
                ("kernel", host.get("kernel")),
                ("CPU", f"{host.get('cpu_model') or '-'} x {host.get('cpu_count') or '-'}"),
                ("memory (GiB)", host.get("memory_gib")),
                ("GPU driver", prov.get("driver")),
                ("started", prov.get("started")),
                ("finished", prov.get("finished")),
            )
        )
    )
    gpus = prov.get("gpus")
    parts.append("<h3>GPUs</h3>")
    if isinstance(gpus, list) and gpus:
        columns = ("index", "name", "vendor", "driver", "memory_mib", "bus_id", "uuid")
        head = "".join(f"<th>{c}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{_e(g.get(c))}</td>" for c in columns) + "</tr>"
            for g in gpus
            if isinstance(g, dict)
        )
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    else:
        parts.append('<p class="muted">None: the run used no GPU.</p>')
    parts.append("<h3>Image and container</h3>")
    if container:
        digests = container.get("image_digests")
        parts.append(
            _kv(
                (
                    ("image", container.get("image")),
                    ("image id", container.get("image_id")),
                    ("digests", ", ".join(digests) if isinstance(digests, list) else digests),
                    ("container id", container.get("id")),
                )
            )
        )
        labels = container.get("image_labels")
        if isinstance(labels, dict) and labels:
            parts.append("<h3>Image labels</h3>" + _kv(sorted(labels.items())))
        if "spec" in container:
            spec = json.dumps(container["spec"], indent=1, sort_keys=True, default=str)
            parts.append(f"<h3>Container spec</h3><pre>{_e(spec)}</pre>")
    else:
        parts.append(
            f'<p class="muted">None: executor {_e(executor.get("name"))}, no container.</p>'
        )
    packages = _section(prov, "packages")
    parts.append("<h3>Packages</h3>" + _kv(sorted(packages.items())))
    env = _section(prov, "env")
    parts.append("<h3>Environment (secrets redacted)</h3>" + _kv(sorted(env.items())))
    commands = _section(prov, "commands")
    parts.append("<h3>Commands</h3>")
    if "server" in commands:
        parts.append(f"<p>server</p><pre>{_e(_command(commands['server']))}</pre>")
    points = commands.get("points")
    if isinstance(points, dict):
        for point, argv in points.items():
            parts.append(f"<p>{_e(point)}</p><pre>{_e(_command(argv))}</pre>")
    for key, value in commands.items():
        if key not in ("server", "points"):
            parts.append(f"<p>{_e(key)}</p><pre>{_e(_command(value))}</pre>")
    other = {k: v for k, v in prov.items() if k not in _SHOWN}
    if other:
        text = json.dumps(other, indent=1, sort_keys=True, default=str)
        parts.append(f"<h3>Other</h3><pre>{_e(text)}</pre>")
    parts.append("</details>")
    return "".join(parts)


def _provenance(
    records: Sequence[Record], provenance: Mapping[str, Mapping[str, Any]], runs: Mapping[str, str]
) -> str:
    parts = [
        '<section id="provenance"><h2>Provenance</h2>'
        '<p class="meta">Each run: the software, host, GPUs, image, environment and the exact '
        "commands it ran.</p>"
    ]
    first: dict[str, Record] = {}
    for rec in records:
        first.setdefault(rec.run_id, rec)
    for run_id, rec in first.items():
        prov = provenance.get(run_id) or {"summary": dict(rec.provenance)}
        parts.append(_provenance_block(run_id, runs[run_id], rec.config_label, prov))
    parts.append("</section>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# entry points


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
        body = [
            f"<h1>{_e(title)}</h1>",
            f'<p class="meta">{_e(subtitle)}</p>' if subtitle else "",
            _summary(records, configs),
            "",  # the charts, once drawn
            _configurations(configs),
            _results(records, runs),
            _validity(records, runs),
            _provenance(records, provenance, runs),
        ]
        body[3] = _charts(drawn, svgs.result())
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main><script>{_JS}</script></body></html>\n"
    )


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
