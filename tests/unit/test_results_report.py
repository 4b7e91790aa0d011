"""The HTML report: contents, escaping, no outside reference, atomic writes, the CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from results.analysis.query import load_records
from results.cli import main
from results.errors import ResultsError
from results.model.provenance import load_provenance
from results.render.report import render_report, write_report
from tests.unit.synthetic_runs import make_run

FP16 = "20261122-054648-tiny-llama-cpu-0a1b2c"
FP8 = "20261122-060000-tiny-llama-cpu-0a1b2d"
HOSTILE = '<script>alert("x")</script>'


def runs(root: Path) -> Path:
    make_run(root, FP16)
    make_run(root, FP8, quantization="fp8", latency=0.6, failed=("serve-qps8",))
    return root


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_report_contents(tmp_path: Path) -> None:
    records = load_records([runs(tmp_path)])
    html = render_report(records, title="FP16 vs FP8", subtitle="nightly")
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>FP16 vs FP8</title>" in html and '<p class="meta">nightly</p>' in html
    # summary: runs, configurations, points, ok, failed
    cards = re.findall(r'<div class="card"><b>(\d+)</b><span>([^<]+)</span>', html)
    assert cards[:5] == [
        ("2", "runs"),
        ("2", "configurations"),
        ("10", "points"),
        ("9", "ok"),
        ("1", "failed"),
    ]
    # the three charts, inline
    figures = re.findall(r'<figure class="chart" id="chart-([^"]+)"><svg ', html)
    assert figures == [
        "tpot_median_ms-vs-qps",
        "ttft_median_ms-vs-qps",
        "output_throughput-vs-tpot_median_ms",
    ]
    assert "omitted failed point tiny-llama fp8 @ cpu @ 8 QPS (cpu-0a1b2d)" in html
    # every point is a row; the failed one is marked
    table = html[html.index('id="results-table"') : html.index('<section id="validity"')]
    assert table.count("<tr") == 1 + len(records)
    assert table.count('<tr class="failed">') == 1
    # failed points with their reasons
    assert (
        '<b>cpu-0a1b2d/serve-qps8</b> (tiny-llama fp8 @ cpu): <span class="v-failed">failed'
        "</span>: 20 of 20 requests failed" in html
    )
    # each run's provenance: versions, packages, environment, the exact commands
    assert html.count('<details class="provenance"') == 2
    block = html[html.index('id="run-cpu-0a1b2c"') :]
    for expected in (
        "<th>git commit</th><td>a61657c9f0fcf96234f686d25a4b152f9312e0ab</td>",
        "<th>vLLM</th><td>0.32.0+cpu</td>",
        "<th>torch</th><td>2.13.0+cpu</td>",
        "<th>VLLM_CPU_KVCACHE_SPACE</th><td>1</td>",
        "<pre>/work/main/.venv/bin/vllm serve /work/main/.cache/tiny-llama --host 127.0.0.1",
        "None: the run used no GPU.",
        "None: executor local, no container.",
    ):
        assert expected in block, expected


def test_report_shows_warnings(tmp_path: Path) -> None:
    # a server at half the requested rate: achieved < 90 % of requested is a warning
    make_run(tmp_path, FP16, throughput=0.5)
    html = render_report(load_records([tmp_path]))
    warnings = html[html.index('<ul class="issues" id="warnings">') :]
    assert "could not keep up" in warnings.split("</ul>")[0]
    assert '<tr class="warn">' in html


def test_report_escapes_everything(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, FP16, failed=("serve-qps4",))
    status = json.loads((run_dir / "status.json").read_text())
    status["points"][1]["reasons"] = [f"server said {HOSTILE} & left"]
    (run_dir / "status.json").write_text(json.dumps(status))
    prov = json.loads((run_dir / "provenance.json").read_text())
    prov["env"]["EVIL"] = HOSTILE
    prov["commands"]["server"].append("--served-model-name=<b>x</b>")
    prov["host"]["hostname"] = '"><img src=x onerror=alert(1)>'
    prov["container"] = {"image": "evil'\"<image>", "id": "c0ffee"}
    (run_dir / "provenance.json").write_text(json.dumps(prov))
    edit_json(run_dir / "run.json", model={"source": "org/<i>model</i>"})

    html = render_report(load_records([run_dir]), title=f"title {HOSTILE}")
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "<b>x</b>" not in html and "<i>model</i>" not in html
    assert "server said &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; left" in html
    assert "<title>title &lt;script&gt;" in html
    assert "&lt;i&gt;model&lt;/i&gt;" in html
    assert "evil&#x27;&quot;&lt;image&gt;" in html
    assert "&#x27;--served-model-name=&lt;b&gt;x&lt;/b&gt;&#x27;" in html  # shell-quoted too


def test_report_is_self_contained(tmp_path: Path) -> None:
    html = render_report(load_records([runs(tmp_path)]))
    # no resource from anywhere: no src/href to another document, no stylesheet or script file
    values = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", html)
    assert values and all(v.startswith(("#", "data:")) for v in values)
    assert not re.search(r"""\b(?:src|href)\s*=\s*[^"'\s]""", html)  # none unquoted
    assert not re.search(r"<link\b|@import|url\((?!#)", html)
    assert not re.search(r"<script\b[^>]*\bsrc", html)
    # outside the recorded commands (text: vllm bench serve --base-url http://127.0.0.1:...),
    # what remains of http(s) is XML namespaces and RDF terms, which browsers never fetch
    markup = re.sub(r"<pre>.*?</pre>", "", html, flags=re.DOTALL)
    for url in re.findall(r"https?://[^\s\"'<>]+", markup):
        assert url.startswith(("http://www.w3.org/", "http://purl.org/", "http://creativecommons"))
    # inlined charts keep every id unique, and every reference inside the page points at one
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    assert {v[1:] for v in values} <= set(ids)
    # and the browser is told to refuse any other request
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in html


def test_provenance_that_cannot_be_read_falls_back_to_the_summary(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, FP16)
    records = load_records([run_dir])
    (run_dir / "provenance.json").write_text('{"cut off')
    warnings: list[str] = []
    provenance = load_provenance(records, warn=warnings.append)
    assert provenance[FP16] == {"summary": records[0].provenance}
    (warning,) = warnings
    assert "provenance.json is not valid JSON" in warning
    html = render_report(records, provenance)
    assert "provenance.json could not be read" in html
    assert "<th>git_commit</th><td>a61657c9f0fcf96234f686d25a4b152f9312e0ab</td>" in html


def test_write_report_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = load_records([make_run(tmp_path / "runs", FP16)])
    out = tmp_path / "report.html"
    out.write_text("the old report")
    assert write_report(records, out) == out
    assert out.read_text().startswith("<!DOCTYPE html>")
    out.write_text("the old report")

    def refuse(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ResultsError, match=r"cannot write .*report\.html: No space left on device"):
        write_report(records, out)
    assert out.read_text() == "the old report"  # never half-replaced
    assert [p.name for p in tmp_path.iterdir() if p.name != "runs"] == ["report.html"]


def test_write_report_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no point to report"):
        render_report([])
    records = load_records([make_run(tmp_path, FP16)])
    with pytest.raises(ResultsError, match="is not a directory; create it first"):
        write_report(records, tmp_path / "missing" / "report.html")


# ---------------------------------------------------------------------------------------------
# bench-results report


def report(*args: Any) -> Result:
    return CliRunner().invoke(main, ["report", *map(str, args)], catch_exceptions=False)


def test_report_cli(tmp_path: Path) -> None:
    root = runs(tmp_path / "runs")
    out = tmp_path / "report.html"
    result = report(root, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n" and result.stderr == ""
    html = out.read_text()
    assert html.count('<details class="provenance"') == 2
    assert re.search(r'<p class="meta">generated \d{4}-\d\d-\d\d \d\d:\d\d UTC</p>', html)


def test_report_cli_filters(tmp_path: Path) -> None:
    root = runs(tmp_path / "runs")
    out = tmp_path / "fp8.html"
    result = report(root, "-o", out, "--where", "precision=fp8", "--title", "FP8 only")
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count('<details class="provenance"') == 1 and FP8 in html and FP16 not in html
    assert "selection: precision=fp8" in html and "<h1>FP8 only</h1>" in html


def test_report_cli_errors(tmp_path: Path) -> None:
    root = runs(tmp_path / "runs")
    no_dir = report(root, "-o", tmp_path / "missing" / "r.html")
    assert no_dir.exit_code == 1
    assert no_dir.stderr.startswith("error: cannot write") and len(no_dir.stderr.splitlines()) == 1
    no_match = report(root, "-o", tmp_path / "r.html", "--vendor", "amd")
    assert no_match.exit_code == 1 and "vendor=amd" in no_match.stderr
    assert not (tmp_path / "r.html").exists()
    bad_key = report(root, "-o", tmp_path / "r.html", "--where", "colour=blue")
    assert bad_key.exit_code == 2 and "unknown filter key 'colour'" in bad_key.stderr
