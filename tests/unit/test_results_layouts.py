"""Layouts in results: records carry replicas, spread, layout, gpus_used and partition (from
run.json's replicas and provenance's partition); compare --axis layout; a chart per layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from results.analysis.chartdata import layout_chart, serving_charts
from results.analysis.layouts import layout_pairs, pair_heading
from results.analysis.query import Filter, load_records
from results.cli import main
from results.errors import ResultsError
from results.model.schema import Record
from results.render.formats import render_csv
from tests.unit.synthetic_runs import make_run

GPU = "AMD Instinct MI300X"


def layout_run(
    root: Path,
    run_id: str,
    *,
    tp: int,
    replicas: int | None,
    spread: str | None = None,
    partition: str | None = None,
    gpu_count: int = 8,
    throughput: float = 1.0,
    latency: float = 1.0,
) -> Path:
    """A synthetic run of `replicas` x TP`tp` on an 8-GPU node, written as bench-run writes it:
    run.json's replicas {count, spread, sets} (absent for one server), provenance's partition."""
    run_dir = make_run(root, run_id, throughput=throughput, latency=latency, scenarios=("serve",))
    run: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    run["vendor"] = "amd"
    run["engine"]["tp"] = tp
    if replicas is not None:
        sets = [list(range(i * tp, (i + 1) * tp)) for i in range(replicas)]
        run["replicas"] = {"count": replicas, "spread": spread, "sets": sets}
    (run_dir / "run.json").write_text(json.dumps(run))
    prov = json.loads((run_dir / "provenance.json").read_text())
    prov.update(vendor="amd", gpu_model=GPU, gpu_count=gpu_count, partition=partition)
    (run_dir / "provenance.json").write_text(json.dumps(prov))
    return run_dir


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "runs"
    layout_run(base, "20261201-000001-tiny-llama-amd-aaaaaa", tp=8, replicas=None)
    layout_run(
        base, "20261201-000002-tiny-llama-amd-bbbbbb", tp=4, replicas=2, spread="router",
        throughput=1.5,
    )  # fmt: skip
    layout_run(
        base, "20261201-000003-tiny-llama-amd-cccccc", tp=1, replicas=8, spread="clients",
        partition="cpx/nps4", gpu_count=64, throughput=2.0, latency=1.25,
    )  # fmt: skip
    return base


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def by_layout(records: list[Record]) -> dict[str, list[Record]]:
    found: dict[str, list[Record]] = {}
    for rec in records:
        found.setdefault(rec.layout, []).append(rec)
    return found


def test_records_carry_the_layout(root: Path) -> None:
    groups = by_layout(load_records([root], use_index=False))
    assert sorted(groups) == ["1xTP8", "2xTP4", "8xTP1"]
    one, two, eight = groups["1xTP8"][0], groups["2xTP4"][0], groups["8xTP1"][0]
    assert (one.replicas, one.spread, one.gpus_used, one.partition) == (1, None, 8, None)
    assert (two.replicas, two.spread, two.gpus_used) == (2, "router", 8)
    assert (eight.replicas, eight.spread, eight.gpus_used, eight.partition) == (
        8,
        "clients",
        8,  # eight CPX partitions in use, though the node shows 64
        "cpx/nps4",
    )
    assert two.config_label == f"tiny-llama bfloat16 2xTP4 router @ 8x {GPU}"
    assert eight.config_label.endswith(f"8xTP1 clients @ 8x {GPU} cpx/nps4")
    # per GPU: the total over every replica, over every GPU they use
    for rec in (one, two, eight):
        total = rec.metrics["output_throughput"]
        assert rec.metrics["output_throughput_per_gpu"] == pytest.approx(total / 8)
    data = two.to_dict()
    assert (data["layout"], data["gpus_used"], data["replicas"]) == ("2xTP4", 8, 2)
    assert Record.from_dict(data) == two
    header = render_csv([two]).splitlines()[0].split(",")
    assert {"replicas", "spread", "layout", "partition", "gpus_used"} <= set(header)


def test_show_has_a_layout_column_where_layouts_differ(root: Path) -> None:
    result = invoke("show", root)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    assert lines[start].split()[:3] == ["run", "layout", "scenario"]
    rows = [line.split() for line in lines[start + 2 : start + 11]]  # 3 runs x 3 rates
    assert sorted(row[1] for row in rows) == ["1xTP8"] * 3 + ["2xTP4"] * 3 + ["8xTP1"] * 3
    one = invoke("show", root / "20261201-000002-tiny-llama-amd-bbbbbb")
    assert " layout " not in one.output  # one layout: no column


def test_layouts_survive_the_index_and_filter(root: Path) -> None:
    direct = load_records([root], use_index=False)
    indexed = load_records([root])  # builds the index
    again = load_records([root])  # reads it
    key = sorted((r.run_id, r.point_id, r.layout, r.spread, r.partition) for r in direct)
    for records in (indexed, again):
        assert (
            sorted((r.run_id, r.point_id, r.layout, r.spread, r.partition) for r in records) == key
        )
    chosen = Filter.parse(["layout=8xtp1"]).select(direct)
    assert {r.layout for r in chosen} == {"8xTP1"} and len(chosen) == 3
    assert len(Filter.parse(["gpus_used=8,partition=cpx/nps4"]).select(direct)) == 3
    assert len(Filter.parse(["replicas=2", "spread=router"]).select(direct)) == 3


def test_gpus_used_counts_data_parallel_once() -> None:
    rec = Record(run_id="r", point_id="p", scenario="serve", gpu_count=8, tp=2, replicas=4)
    assert (rec.layout, rec.gpus_used) == ("4xTP2", 8)
    dp = Record(
        run_id="r", point_id="p", scenario="serve", gpu_count=8, tp=2, replicas=4,
        spread="dp", engine_args=("--data-parallel-size", "4"),
    )  # fmt: skip
    assert dp.gpus_used == 8
    cpu = Record(run_id="r", point_id="p", scenario="serve", vendor="cpu", replicas=2)
    assert (cpu.layout, cpu.gpus_used) == ("2xTP1", None)


def test_compare_axis_layout(root: Path) -> None:
    result = invoke("compare", "--root", root, "--axis", "layout", "2xTP4", "8xTP1")
    assert result.exit_code == 0, result.output
    assert "== layout: 2xTP4 -> 8xTP1 on 8 GPUs, model=tiny-llama" in result.output
    result = invoke(
        "compare", "--root", root, "--axis", "layout", "2xtp4", "8xtp1", "--format", "json"
    )
    (document,) = json.loads(result.stdout)
    assert document["baseline"]["source"] == "layout=2xtp4 (8 GPUs)"
    ratios = {
        (p["point"], m["metric"]): m["ratio"] for p in document["points"] for m in p["metrics"]
    }
    assert len({label for label, _ in ratios}) == 3  # the three rates both ran
    for (_, metric), ratio in ratios.items():
        if metric == "output_throughput":
            assert ratio == pytest.approx(2.0 / 1.5)
        if metric.endswith("_ms"):
            assert ratio == pytest.approx(1.25)


def test_compare_axis_layout_errors(root: Path) -> None:
    result = CliRunner().invoke(
        main, ["compare", "--root", str(root), "--axis", "layout", "2xTP4", "4xTP2"]
    )
    assert result.exit_code == 1
    assert "no record has layout 4xtp2" in result.output
    assert "the layouts present are 1xTP8, 2xTP4, 8xTP1" in result.output
    records = load_records([root], use_index=False)
    other = [r for r in records if r.layout == "8xTP1"]
    moved = [Record.from_dict({**r.to_dict(), "model": "org/other"}) for r in other]
    base = [r for r in records if r.layout == "2xTP4"]
    with pytest.raises(ResultsError, match="no configuration was run at both layout"):
        layout_pairs([*base, *moved], ("2xTP4", "8xTP1"))
    with pytest.raises(ResultsError, match="give two different layouts"):
        layout_pairs(records, ("2xTP4", "2xtp4"))
    cpu = [Record.from_dict({**r.to_dict(), "gpu_count": 0}) for r in [*base, *other]]
    (pair,) = layout_pairs(cpu, ("2xTP4", "8xTP1"))
    assert pair_heading(pair, ("2xTP4", "8xTP1")).startswith("layout: 2xTP4 -> 8xTP1, model=")
    assert pair.baseline.source == "layout=2xTP4"


def test_a_chart_of_total_throughput_against_latency_per_layout(root: Path) -> None:
    records = load_records([root], use_index=False)
    charts = serving_charts(records)
    (chart,) = [c for c in charts if c.name.startswith("layouts-")]
    assert chart.name == "layouts-output_throughput-vs-tpot_median_ms"
    assert "per layout" in chart.title
    labels = {s.label: s for s in chart.series}
    assert set(labels) == {
        "1xTP8, 8 GPUs",
        "2xTP4 router, 8 GPUs",
        "8xTP1 clients, 8 GPUs, cpx/nps4",
    }
    groups = by_layout(records)
    for text, layout in (("2xTP4 router, 8 GPUs", "2xTP4"), ("1xTP8, 8 GPUs", "1xTP8")):
        expected = sorted(
            (r.metrics["tpot_median_ms"], r.metrics["output_throughput"]) for r in groups[layout]
        )
        drawn = sorted((p.x, p.y) for p in labels[text].points)
        assert [v for pair in drawn for v in pair] == pytest.approx(
            [v for pair in expected for v in pair]
        )
    one = [r for r in records if r.layout == "1xTP8"]
    assert not [c for c in serving_charts(one) if c.name.startswith("layouts-")]
    assert layout_chart(one, "tpot_median_ms").series[0].label == "1xTP8, 8 GPUs"


def test_the_report_draws_the_layout_chart(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = invoke("report", root, "--out", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "per layout" in page and "8xTP1 clients, 8 GPUs, cpx/nps4" in page
    assert "GPU partition modes" in page  # the CPX run's provenance
