"""The HTML report in Debian's headless Chromium, driven over the DevTools protocol."""

from __future__ import annotations

import base64
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from results.cli import main
from tests.browser import SETTLE_S, Browser
from tests.conftest import FIXTURES, ROOT
from tests.unit.synthetic_runs import make_run

FIXTURE_RUN = FIXTURES / "runs" / "20261122-054648-tiny-llama-cpu-d56769"
SCREENSHOT_COPY = ROOT / ".cache" / "report-screenshot.png"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CPU sweep plus a synthetic FP8 configuration (two repeats, one failed point,
    an `inf` rate), reported through the CLI as a user would."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(FIXTURE_RUN, root / FIXTURE_RUN.name)
    fp8 = {"quantization": "fp8", "qps": (2.0, 4.0, 8.0, math.inf)}
    make_run(root, "20261122-060000-tiny-llama-cpu-0a1b2c", latency=0.6, throughput=1.5, **fp8)
    make_run(
        root,
        "20261122-070000-tiny-llama-cpu-0a1b2d",
        latency=0.7,
        throughput=1.4,
        failed=("serve-qps8",),
        **fp8,
    )
    out = root.parent / "report.html"
    result = CliRunner().invoke(main, ["report", str(root), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    return out


def test_report_renders_offline_without_errors(
    browser: Browser, report: Path, tmp_path: Path
) -> None:
    with browser.open(report.as_uri()) as page:
        assert page.errors() == [], f"console errors: {page.errors()}\n{browser.log_tail()}"
        assert page.outside_requests() == [], "the report asked for more than itself"
        assert page.requests() == [report.as_uri()]  # the protocol really saw the load
        tools = page.tools
        assert tools.evaluate("document.title") == "vLLM benchmark report"
        # TPOT vs QPS, TTFT vs QPS, throughput vs latency, each drawn with its lines
        charts = tools.evaluate(
            "Array.from(document.querySelectorAll('figure.chart svg'))"
            ".map(s => [s.id, s.getBBox().width > 100, "
            "s.querySelectorAll('g[id*=\"-series-\"]').length])"
        )
        assert [c[0] for c in charts] == [
            "tpot_median_ms-vs-qps",
            "ttft_median_ms-vs-qps",
            "output_throughput-vs-tpot_median_ms",
        ]
        assert all(visible and lines >= 2 for _, visible, lines in charts), charts
        # every point in the table: 5 of the real run, 6 of each synthetic one
        assert tools.evaluate("document.querySelectorAll('#results-table tbody tr').length") == 17
        assert tools.evaluate("document.querySelectorAll('details.provenance').length") == 3
        assert "serve-qps8" in tools.evaluate("document.getElementById('failed-points').innerText")
        # the inline sorter runs: a second click on QPS sorts descending, `inf` first
        for _ in range(2):
            tools.evaluate("document.querySelector('#results-table th:nth-child(4)').click()")
        first = tools.evaluate(
            "document.querySelector('#results-table tbody tr td:nth-child(4)').textContent"
        )
        assert first == "inf"
        # the real run's provenance, opened for the screenshot: its exact commands are there
        text = tools.evaluate(
            "(() => { const d = document.querySelector('details.provenance'); d.open = true;"
            " return d.innerText; })()"
        )
        assert "vllm bench serve" in text and "0.32.0+cpu" in text
        tools.drain(SETTLE_S)
        assert page.errors() == [], f"errors after sorting: {page.errors()}"

        metrics = tools.call("Page.getLayoutMetrics")
        height = min(int(metrics["cssContentSize"]["height"]), 8000)
        shot = tools.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1},
        )
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    screenshot = tmp_path / "report-screenshot.png"
    screenshot.write_bytes(png)
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, SCREENSHOT_COPY)
    print(f"screenshot: {screenshot} (copied to {SCREENSHOT_COPY})")


def test_outside_request_is_caught(browser: Browser, report: Path, tmp_path: Path) -> None:
    """The checks above can fail: the same report with one remote image is caught."""
    html = report.read_text(encoding="utf-8")
    tainted = tmp_path / "tainted.html"
    tainted.write_text(
        html.replace("<main>", '<main><img src="https://cdn.example.invalid/logo.png">', 1),
        encoding="utf-8",
    )
    with browser.open(tainted.as_uri()) as page:
        # the report's content policy blocks the image: a console error, and no request leaves
        assert any("cdn.example.invalid" in e for e in page.errors()), page.errors()
    # without the policy the request itself is seen
    bare = tmp_path / "bare.html"
    bare.write_text('<img src="https://cdn.example.invalid/logo.png">', encoding="utf-8")
    with browser.open(bare.as_uri()) as page:
        assert "https://cdn.example.invalid/logo.png" in page.outside_requests()
