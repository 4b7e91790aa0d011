"""Charts: one line per configuration, repeats averaged, failed points noted, PNG and SVG files."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from results.analysis.chartdata import (
    MAX_LINES,
    qps_chart,
    resolve_metric,
    serving_charts,
    tradeoff_chart,
)
from results.cli import main
from results.errors import ResultsError
from results.model.schema import Record
from results.render.charts import draw as draw_chart
from results.render.charts import render, svg_markup, write_charts
from tests.unit.synthetic_runs import make_run

SVG = "{http://www.w3.org/2000/svg}"


def rec(
    run_id: str,
    qps: float | None,
    *,
    quantization: str | None = None,
    tpot: float = 5.0,
    ttft: float = 20.0,
    out: float = 100.0,
    scenario: str = "serve",
    verdict: str = "ok",
    reasons: tuple[str, ...] = (),
    input_len: int = 128,
    engine_args: tuple[str, ...] = (),
    p99: bool = True,
) -> Record:
    metrics = {"tpot_median_ms": tpot, "ttft_median_ms": ttft, "output_throughput": out}
    if p99:
        metrics |= {"tpot_p99_ms": tpot * 2, "ttft_p99_ms": ttft * 2}
    return Record(
        run_id=run_id,
        point_id=f"serve-qps{qps:g}" if qps is not None else scenario,
        scenario=scenario,
        vendor="cpu",
        model="org/tiny-llama",
        dtype="bfloat16",
        quantization=quantization,
        engine_args=engine_args,
        qps=qps,
        input_len=input_len,
        output_len=32,
        dataset="random",
        verdict=verdict,
        reasons=reasons,
        metrics=metrics if verdict == "ok" else {},
    )


def sweep(run_id: str, quantization: str | None = None, scale: float = 1.0) -> list[Record]:
    return [
        rec(run_id, q, quantization=quantization, tpot=scale * (4 + q), out=50 * q)
        for q in (1.0, 3.0, 5.0)
    ]


def parse_svg(data: bytes) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 (matplotlib's output, written by this test)


def svg_ids(data: bytes) -> list[str]:
    return [el.get("id", "") for el in parse_svg(data).iter(f"{SVG}g")]


def test_one_line_per_configuration_in_qps_order() -> None:
    records = sweep("r1") + sweep("r2", "fp8", 0.5) + [rec("r1", None, scenario="latency")]
    chart = qps_chart(records, "tpot_median_ms")
    assert [s.label for s in chart.series] == [
        "tiny-llama bfloat16 @ cpu",
        "tiny-llama fp8 @ cpu",
    ]
    fp16, fp8 = chart.series
    assert [(p.qps, p.x, p.y) for p in fp16.points] == [(1, 1, 5), (3, 3, 7), (5, 5, 9)]
    assert [p.y for p in fp8.points] == [2.5, 3.5, 4.5]
    assert chart.title == "TPOT median vs QPS (random, 128 in / 32 out)"
    assert chart.y_label == "TPOT median (ms)"
    assert chart.x_label == "requested rate (QPS)"
    assert chart.notes == () and chart.footnote == ""
    # the matplotlib figure: one labelled line per configuration, in the legend
    ax = draw_chart(chart).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == [s.label for s in chart.series]


def test_repeated_runs_are_averaged_with_error_bars() -> None:
    records = [rec("r1", 2.0, tpot=4.0), rec("r2", 2.0, tpot=6.0), rec("r1", 4.0, tpot=5.0)]
    chart = qps_chart(records, "tpot_median_ms")
    (series,) = chart.series
    first, second = series.points
    assert (first.y, first.runs) == (5.0, 2)
    assert first.y_err == pytest.approx(math.sqrt(2))
    assert (second.y, second.y_err, second.runs) == (5.0, 0.0, 1)
    ax = draw_chart(chart).axes[0]
    assert len(ax.containers) == 1  # one errorbar set
    assert "tpot_median_ms-vs-qps-series-0-errors" in svg_ids(render(chart, "svg"))


def test_failed_points_are_omitted_and_noted() -> None:
    records = [*sweep("r1"), rec("r1", 7.0, verdict="failed", reasons=("20 of 20 failed",))]
    chart = qps_chart(records, "tpot_median_ms")
    assert [p.qps for p in chart.series[0].points] == [1, 3, 5]
    (note,) = chart.notes
    assert "failed point tiny-llama bfloat16 @ cpu @ 7 QPS" in note
    assert note.endswith("20 of 20 failed")
    assert chart.footnote == "1 failed point(s) omitted"


def test_inf_sits_right_of_the_finite_rates_on_its_own_tick() -> None:
    records = [*sweep("r1"), rec("r1", math.inf, tpot=12.0)]
    chart = qps_chart(records, "tpot_median_ms")
    points = chart.series[0].points
    assert [p.qps for p in points] == [1, 3, 5, math.inf]
    assert chart.inf_x == 7.0  # one step (2 QPS) right of 5
    assert points[-1].x == 7.0
    assert [label for _, label in chart.x_ticks] == ["1", "3", "5", "inf"]
    ax = draw_chart(chart).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "3", "5", "inf"]
    solid, dotted = (line for line in ax.get_lines() if "series" in str(line.get_gid()))
    assert list(solid.get_xdata()) == [1, 3, 5]
    assert list(dotted.get_xdata()) == [5, 7.0] and dotted.get_linestyle() == ":"


def test_points_without_the_metric_are_noted() -> None:
    records = [*sweep("r1"), rec("r2", 1.0, quantization="fp8", p99=False)]
    chart = qps_chart(records, "tpot_p99_ms")
    assert [s.label for s in chart.series] == ["tiny-llama bfloat16 @ cpu"]
    assert any("vLLM reported no tpot_p99_ms" in n for n in chart.notes)


def test_lines_that_share_a_label_are_told_apart() -> None:
    records = [rec("r1", 1.0), rec("r2", 1.0, input_len=1024)]
    labels = [s.label for s in qps_chart(records, "tpot_median_ms").series]
    assert labels == [
        "tiny-llama bfloat16 @ cpu (random, 1024 in / 32 out)",
        "tiny-llama bfloat16 @ cpu (random, 128 in / 32 out)",
    ]


def test_at_most_max_lines_are_drawn_and_the_rest_named() -> None:
    records = [
        rec(f"r{i}", 1.0, engine_args=("--max-num-seqs", str(i))) for i in range(MAX_LINES + 5)
    ]
    chart = qps_chart(records, "tpot_median_ms")
    assert len(chart.series) == MAX_LINES
    assert any(n.startswith("5 more configuration(s) not drawn") for n in chart.notes)


def test_throughput_vs_latency_curves() -> None:
    records = [*sweep("r1"), *sweep("r2"), *sweep("r3", "fp8", 0.5)]
    records[0] = rec("r1", 1.0, tpot=7.0, out=50.0)  # r1 and r2 differ at 1 QPS
    chart = tradeoff_chart(records, "tpot_median_ms")
    assert chart.name == "output_throughput-vs-tpot_median_ms"
    assert chart.x_label == "TPOT median (ms)" and chart.y_label == "output tokens/s (tok/s)"
    fp16 = chart.series[0]
    assert [(p.x, p.y, p.runs) for p in fp16.points] == [(6, 50, 2), (7, 150, 2), (9, 250, 2)]
    assert fp16.points[0].x_err == pytest.approx(math.sqrt(2))
    ax = draw_chart(chart).axes[0]
    assert [t.get_text() for t in ax.texts] == ["1", "3", "5"] * 2  # each point's QPS


def test_write_charts_png_and_svg(tmp_path: Path) -> None:
    records = sweep("r1") + sweep("r2", "fp8", 0.5)
    written = write_charts(serving_charts(records), tmp_path / "out", ["png", "svg"])
    names = [p.name for p in written]
    assert names == [
        "tpot_median_ms-vs-qps.png",
        "tpot_median_ms-vs-qps.svg",
        "ttft_median_ms-vs-qps.png",
        "ttft_median_ms-vs-qps.svg",
        "output_throughput-vs-tpot_median_ms.png",
        "output_throughput-vs-tpot_median_ms.svg",
    ]
    for path in written:
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert image.format == "PNG" and image.size[0] == 800
        else:
            root = parse_svg(path.read_bytes())
            assert root.tag == f"{SVG}svg" and root.get("id") == path.stem
            series = [i for i in svg_ids(path.read_bytes()) if re.fullmatch(r".*-series-\d+", i)]
            assert series == [f"{path.stem}-series-0", f"{path.stem}-series-1"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)  # no temp left


def test_output_is_deterministic() -> None:
    chart = serving_charts([*sweep("r1"), rec("r1", math.inf)])[0]
    for fmt in ("png", "svg"):
        assert render(chart, fmt) == render(chart, fmt)
    svg = render(chart, "svg").decode()
    assert "<dc:date>" not in svg
    assert svg_markup(chart).startswith("<svg") and "<?xml" not in svg_markup(chart)


def test_resolve_metric() -> None:
    assert resolve_metric("tpot", "p99") == "tpot_p99_ms"
    assert resolve_metric("TTFT", "mean") == "ttft_mean_ms"
    assert resolve_metric("output_throughput", "p99") == "output_throughput"
    with pytest.raises(ResultsError, match="unknown statistic 'p9x'"):
        resolve_metric("tpot", "p9x")
    with pytest.raises(ResultsError, match="unknown metric 'speed'"):
        resolve_metric("speed", "median")


def test_nothing_to_draw_writes_nothing(tmp_path: Path) -> None:
    charts = serving_charts([rec("r1", None, scenario="latency")])
    assert all(c.empty for c in charts)
    assert write_charts(charts, tmp_path, ["png"]) == []


# ---------------------------------------------------------------------------------------------
# bench-results plot


def plot(*args: Any) -> Result:
    return CliRunner().invoke(main, ["plot", *map(str, args)], catch_exceptions=False)


def runs(root: Path) -> Path:
    make_run(root, "20261122-054648-tiny-llama-cpu-0a1b2c")
    make_run(
        root,
        "20261122-060000-tiny-llama-cpu-0a1b2d",
        quantization="fp8",
        latency=0.6,
        failed=("serve-qps8",),
    )
    return root


def test_plot_writes_the_charts_and_prints_their_paths(tmp_path: Path) -> None:
    root = runs(tmp_path / "runs")
    result = plot(root, "-o", tmp_path / "charts")
    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert [p.name for p in paths] == [
        "tpot_median_ms-vs-qps.png",
        "tpot_median_ms-vs-qps.svg",
        "ttft_median_ms-vs-qps.png",
        "ttft_median_ms-vs-qps.svg",
        "output_throughput-vs-tpot_median_ms.png",
        "output_throughput-vs-tpot_median_ms.svg",
    ]
    assert all(p.is_file() and p.parent == tmp_path / "charts" for p in paths)
    assert result.stderr.startswith("note: omitted failed point tiny-llama fp8 @ cpu @ 8 QPS")
    assert len(result.stderr.splitlines()) == 1  # one note, not one per chart


def test_plot_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = runs(tmp_path / "runs")
    monkeypatch.setenv("BENCH_RESULTS_ROOT", str(root))  # no PATHS: the results root
    result = plot(
        "-o", tmp_path / "c", "--format", "svg", "--metric", "itl,e2el", "--stat", "p99",
        "--latency", "e2el", "--precision", "bfloat16",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [Path(p).name for p in result.stdout.splitlines()] == [
        "itl_p99_ms-vs-qps.svg",
        "e2el_p99_ms-vs-qps.svg",
        "output_throughput-vs-e2el_p99_ms.svg",
    ]
    assert result.stderr == ""  # the failed fp8 point is filtered out, so nothing to note
    svg = (tmp_path / "c" / "itl_p99_ms-vs-qps.svg").read_bytes()
    assert [i for i in svg_ids(svg) if i.endswith("-series-0")] == ["itl_p99_ms-vs-qps-series-0"]
    assert not any(i.endswith("-series-1") for i in svg_ids(svg))


def test_plot_errors(tmp_path: Path) -> None:
    root = runs(tmp_path / "runs")
    out = tmp_path / "c"
    bad_stat = plot(root, "-o", out, "--stat", "p9x")
    assert bad_stat.exit_code == 2 and "unknown statistic 'p9x'" in bad_stat.stderr
    bad_metric = plot(root, "-o", out, "--metric", "speed")
    assert bad_metric.exit_code == 2 and "unknown metric 'speed'" in bad_metric.stderr
    no_match = plot(root, "-o", out, "--model", "nothing-like-it")
    assert no_match.exit_code == 1
    assert no_match.stderr.startswith("error: no point under") and "model=" in no_match.stderr
    assert len(no_match.stderr.splitlines()) == 1
    offline = tmp_path / "offline"
    make_run(offline, "20261122-080000-tiny-llama-cpu-0a1b2e", scenarios=("latency",))
    nothing = plot(offline, "-o", out)
    assert nothing.exit_code == 1
    assert nothing.stderr.startswith("error: nothing to plot: 1 point(s) selected, 0 of them")
    assert not out.exists()
