"""Two real CPU sweeps -> bench-results: a table, a comparison, charts and a report in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from results.cli import main as results_main
from runner.cli import main as run_main
from tests.browser import Browser

DTYPES = ("bfloat16", "float32")


def _sweep(root: Path, model: Path, dtype: str) -> None:
    args = [
        "--executor", "local", "--vendor", "cpu", "--model", str(model), "--dtype", dtype,
        "--max-model-len", "2048", "--env", "VLLM_CPU_KVCACHE_SPACE=1",
        "--input-len", "64", "--output-len", "16", "--qps", "4,inf", "--num-prompts", "8",
        "--out", str(root),
    ]  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _results(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(results_main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_real_sweeps_give_table_comparison_charts_and_report(
    tmp_path: Path, tiny_model: Path, browser: Browser
) -> None:
    root = tmp_path / "runs"
    for dtype in DTYPES:
        _sweep(root, tiny_model, dtype)

    # the table, and the records as the documented JSON schema
    code, table, _ = _results("show", str(root))
    assert code == 0
    assert table.count("serve") == 4 and "inf" in table, table
    code, text, _ = _results("show", str(root), "--format", "json")
    records = json.loads(text)
    assert code == 0 and len(records) == 4
    for record in records:
        assert record["schema"] == 1 and record["verdict"] == "ok"
        assert record["dtype"] in DTYPES and record["vllm_version"].startswith("0.32")
        assert record["completed"] == 8 and record["failed"] == 0
        assert record["metrics"]["tpot_median_ms"] > 0
        assert record["metrics"]["output_throughput"] > 0
    code, csv_text, _ = _results("show", str(root), "--format", "csv", "--where", "dtype=float32")
    assert code == 0 and len(csv_text.strip().splitlines()) == 3  # header + 2 points

    # FP32 against BF16, matched point by point, with the gate on. The gate's limit is out of
    # reach on purpose: on a shared 2-core host the tiny model's readings move by orders of
    # magnitude (a TPOT near zero when one burst delivers every token; seen: 0.0033 -> 3.5 ms).
    # The gate's own verdicts are unit-tested; here it must run on real records and pass.
    code, compared, err = _results(
        "compare", "--root", str(root), "dtype=bfloat16", "dtype=float32",
        "--fail-if-worse", "1000000000",
    )  # fmt: skip
    assert code == 0, err
    assert "serve @ 4 QPS" in compared and "serve @ inf QPS" in compared, compared
    # every headline metric gets a ratio and a reading (the size of a change depends on the host)
    assert "TPOT median (ms)" in compared and "ratio" in compared
    assert "lower" in compared or "higher" in compared or "unchanged" in compared
    code, as_json, _ = _results(
        "compare", "--root", str(root), "dtype=bfloat16", "dtype=float32", "--format", "json"
    )
    assert code == 0 and as_json.strip().startswith("{")

    # the source documents' charts, one line per configuration
    charts = tmp_path / "charts"
    code, listed, err = _results("plot", str(root), "-o", str(charts), "--format", "both")
    assert code == 0, err
    written = [Path(line) for line in listed.split()]
    assert any(p.suffix == ".png" for p in written) and any(p.suffix == ".svg" for p in written)
    assert all(p.is_file() and p.stat().st_size > 1000 for p in written)

    # the report, rendered offline by a real browser
    report = tmp_path / "report.html"
    code, _, err = _results("report", str(root), "-o", str(report))
    assert code == 0, err
    with browser.open(report.as_uri()) as page:
        assert page.errors() == [], page.errors()
        assert page.outside_requests() == []
        rows = page.tools.evaluate("document.querySelectorAll('#results-table tbody tr').length")
        assert rows == 4
        lines = page.tools.evaluate(
            "document.querySelectorAll('figure.chart svg g[id*=\"-series-\"]').length"
        )
        assert lines >= 2 * 3  # two configurations in each of the three charts
