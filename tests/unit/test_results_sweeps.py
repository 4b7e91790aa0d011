"""Runs of a sweep: sweep and matrix values on records, a re-run point seen once, --sweep,
and compare --axis."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner, Result

from results.analysis.axis import axis_pairs
from results.analysis.chartdata import serving_charts
from results.analysis.query import Filter, load_records
from results.cli import main
from results.model.schema import Record
from results.model.sweeps import read_sweep
from results.render.charts import draw, render
from results.render.report import render_report
from tests.unit.sweep_dirs import FIXTURE, SWEEP_NAME, make_sweep


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_records_carry_the_sweep_and_matrix_values(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path, resumed=False)
    records = load_records([sweep], use_index=False)
    assert len(records) == 4 * 5
    assert {r.sweep for r in records} == {SWEEP_NAME}
    assert {(r.matrix["tp"], r.matrix["dtype"]) for r in records} == {
        (1, "bfloat16"),
        (1, "float16"),
        (2, "bfloat16"),
        (2, "float16"),
    }


def test_a_rerun_point_is_seen_once_the_latest_attempt(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    for use_index in (False, True):
        records = load_records([sweep], use_index=use_index)
        first = [r for r in records if r.matrix == {"tp": 1, "dtype": "bfloat16"}]
        assert sorted(r.point_id for r in first) == sorted(
            ["serve-qps2", "serve-qps4", "serve-qps8", "latency", "throughput"]
        )
        qps4 = [r for r in first if r.point_id == "serve-qps4"]
        assert [(r.run_id, r.verdict) for r in qps4] == [("c0001-tp-1-dtype-bfloat16-r2", "ok")]


def test_a_filter_on_verdict_does_not_bring_back_a_superseded_point(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    assert load_records([sweep], where=Filter.parse(["verdict=failed"]), use_index=False) == []
    # the earlier run named alone: still superseded, its sweep.json sits beside it
    alone = load_records([sweep / "c0001-tp-1-dtype-bfloat16"])
    assert "serve-qps4" not in {r.point_id for r in alone}


def test_runs_outside_a_sweep_have_none(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / FIXTURE.name)
    records = load_records([tmp_path], use_index=False)
    assert records and all(r.sweep is None and r.matrix == {} for r in records)


def test_a_broken_sweep_json_warns_and_reads_the_runs_alone(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    (sweep / "sweep.json").write_text("{")
    warnings: list[str] = []
    records = load_records([sweep], warn=warnings.append, use_index=False)
    assert len(records) == 4 * 5 + 1
    assert any("sweep.json" in w for w in warnings)


def test_show_sweep_keeps_that_sweep_only(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "root")
    shutil.copytree(FIXTURE, tmp_path / "root" / FIXTURE.name)
    result = invoke("show", tmp_path / "root", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr  # a sweep directory is read as a folder of runs
    assert len(json.loads(result.stdout)) == 5 + 20
    for paths in ((), (tmp_path / "root",)):
        result = invoke("show", *paths, "--sweep", sweep, "--format", "json")
        assert result.exit_code == 0, result.output
        records = json.loads(result.stdout)
        assert len(records) == 20 and {r["sweep"] for r in records} == {SWEEP_NAME}
    result = invoke("show", "--sweep", sweep, "--where", "tp=2", "--format", "json")
    assert {r["matrix"]["tp"] for r in json.loads(result.stdout)} == {2}


def test_sweep_must_be_a_sweep_directory(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / FIXTURE.name)
    result = CliRunner().invoke(main, ["show", "--sweep", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a sweep directory" in result.output


def test_axis_pairs_match_configurations_differing_only_in_the_axis(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    records = load_records([sweep], use_index=False)
    pairs = axis_pairs(read_sweep(sweep), records, "tp", ("1", "2"))
    assert [p.label for p in pairs] == ["dtype=bfloat16", "dtype=float16"]
    for pair in pairs:
        assert {r.matrix["tp"] for r in pair.baseline.records} == {1}
        assert {r.matrix["tp"] for r in pair.candidate.records} == {2}
        both = (*pair.baseline.records, *pair.candidate.records)
        assert len({r.matrix["dtype"] for r in both}) == 1


def test_compare_axis_compares_each_pair_point_by_point(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    result = invoke("compare", "--sweep", sweep, "--axis", "dtype", "bfloat16", "float16")
    assert result.exit_code == 0, result.output
    assert result.output.count("== dtype: bfloat16 -> float16 where ") == 2
    assert "where tp=1" in result.output and "where tp=2" in result.output
    result = invoke(
        "compare", "--sweep", sweep, "--axis", "dtype", "bfloat16", "float16", "--format", "json"
    )
    documents = json.loads(result.stdout)
    assert [d["axis"] for d in documents] == [
        "dtype: bfloat16 -> float16 where tp=1",
        "dtype: bfloat16 -> float16 where tp=2",
    ]
    assert all(d["points"] for d in documents)


def test_compare_axis_errors(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    result = CliRunner().invoke(main, ["compare", "--sweep", str(sweep), "--axis", "pp", "1", "2"])
    assert result.exit_code == 1 and "not a matrix axis" in result.output
    result = CliRunner().invoke(main, ["compare", "--sweep", str(sweep), "--axis", "tp", "1", "4"])
    assert result.exit_code == 1 and "no tp=4" in result.output
    result = CliRunner().invoke(main, ["compare", "--axis", "tp", "1", "2"])
    assert result.exit_code == 2 and "--sweep" in result.output


def test_the_report_has_a_section_per_sweep(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    records = load_records([sweep], use_index=False)
    page = render_report(records, charts=[])
    section = page.split(f'<section class="sweep" id="sweep-{SWEEP_NAME}">', 1)[1]
    section = section.split("</section>", 1)[0]
    assert f"Sweep {SWEEP_NAME}" in section
    assert "<b>tp</b> 1, 2" in section and "<b>dtype</b> bfloat16, float16" in section
    assert section.count("<tr><td") == 4
    assert "c0001-tp-1-dtype-bfloat16, c0001-tp-1-dtype-bfloat16-r2" in section
    assert '<td class="v-ok">ok</td>' in section
    assert '<td class="n">5</td>' in section  # each point once, the re-run one included


def test_a_report_without_sweeps_has_no_sweep_section(tmp_path: Path) -> None:
    records = load_records([FIXTURE], use_index=False)
    assert 'class="sweep"' not in render_report(records, charts=[])


def test_report_and_plot_take_sweep(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "root")
    shutil.copytree(FIXTURE, tmp_path / "root" / FIXTURE.name)
    out = tmp_path / "report.html"
    result = invoke("report", tmp_path / "root", "--sweep", sweep, "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert f"Sweep {SWEEP_NAME}" in page
    result = invoke("plot", "--sweep", sweep, "-o", tmp_path / "charts", "--format", "svg")
    assert result.exit_code == 0, result.output


def _searched(records: list[Record], result: str, max_qps: float | None) -> list[Record]:
    search = {
        "result": result,
        "max_qps": max_qps,
        "lowest_missed": 8.0,
        "probes": [{"qps": 8.0}],
        "slo": [["ttft_p99_ms", 500]],
    }
    return [replace(r, search=search) if r.scenario == "serve" else r for r in records]


def test_qps_charts_mark_the_max_qps_under_slo(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    records = load_records([sweep], use_index=False)
    tp1 = [r for r in records if r.matrix == {"tp": 1, "dtype": "float16"}]
    tp2 = [r for r in records if r.matrix == {"tp": 2, "dtype": "float16"}]
    records = _searched(tp1, "found", 4.0) + _searched(tp2, "none", None)
    charts = serving_charts(records)
    qps = [c for c in charts if c.kind == "qps"]
    assert qps and all([s.max_qps for s in c.series] == [4.0, None] for c in qps)
    tradeoff = next(c for c in charts if c.kind == "tradeoff")
    assert all(s.max_qps is None for s in tradeoff.series)
    svg = render(qps[0], "svg").decode()
    assert f"{qps[0].name}-series-0-max-qps-slo" in svg
    assert f"{qps[0].name}-series-1-max-qps-slo" not in svg
    ax = draw(qps[0]).axes[0]
    assert any(t.get_text() == "max QPS under SLO: 4" for t in ax.texts)


def test_no_marker_without_a_search(tmp_path: Path) -> None:
    records = load_records([make_sweep(tmp_path)], use_index=False)
    chart = serving_charts(records)[0]
    assert all(s.max_qps is None for s in chart.series)
    assert "max-qps-slo" not in render(chart, "svg").decode()
