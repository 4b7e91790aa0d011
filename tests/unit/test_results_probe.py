"""The probe's metrics in records, the cross-check re-run on the raw JSON, show/compare/charts,
and the roofline, on a run recorded on this host's CPU (tests/fixtures/runs-probed)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from results.analysis.chartdata import serving_charts
from results.analysis.compare import parse_metrics
from results.cli import main
from results.model import roofline
from results.model.probed import VIEWS
from results.model.records import records_from_run
from results.model.rundir import load_run
from results.model.schema import Record, metric_info
from runner.agent.roofline import weight_bytes_per_gpu

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs-probed"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    (source,) = list(RUNS.iterdir())
    copy = tmp_path / "runs" / source.name
    shutil.copytree(source, copy)
    return copy


def _records(run: Path) -> dict[str, Record]:
    return {r.point_id: r for r in records_from_run(load_run(run))}


def test_serving_records_carry_the_servers_counters(run: Path) -> None:
    records = _records(run)
    assert sorted(records) == ["serve-qps2", "serve-qps4", "serve-qpsinf"]
    for rec in records.values():
        assert rec.metrics["server_generation_tokens"] == rec.metrics["total_output_tokens"]
        assert rec.metrics["server_requests"] == rec.completed == 20
        assert "kv_cache_usage_max" in rec.metrics and "client_cpu_cores" in rec.metrics
        assert rec.warnings == (), rec.warnings  # the honest run: no disagreement
        for name in rec.metrics:
            metric_info(name)  # every name is described: tables and CSV can show it
    # 128 tokens in, 64 out: not decode-heavy, so no roofline number; the weights are recorded
    rec = records["serve-qps4"]
    assert "achieved_bandwidth_gbs" not in rec.metrics
    assert rec.metrics["model_weight_bytes_per_gpu"] > 1e6  # the tiny model's safetensors
    decode_heavy = {**rec.metrics, "total_input_tokens": rec.metrics["total_output_tokens"]}
    assert roofline.achieved_bandwidth(decode_heavy, None)["achieved_bandwidth_gbs"] > 0


def test_the_probes_warnings_become_the_records(run: Path) -> None:
    status = json.loads((run / "status.json").read_text())
    said = "output tokens: the client counted 640, the server generated 1280; ..."
    status["points"][1]["probe"]["warnings"] = [said]
    (run / "status.json").write_text(json.dumps(status))
    records = _records(run)
    assert records["serve-qps4"].verdict == "ok"  # a warning, not a failure: it was measured
    assert records["serve-qps4"].warnings == (said,)
    assert records["serve-qpsinf"].warnings == ()


def test_show_views_and_compare_presets(run: Path) -> None:
    shown = CliRunner().invoke(main, ["show", str(run), "--view", "server"])
    assert shown.exit_code == 0, shown.output
    header = shown.stdout.splitlines()[0]
    assert "server output tokens/s" in header and "peak KV-cache use" in header
    bad = CliRunner().invoke(main, ["show", str(run), "--view", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output
    assert parse_metrics("energy") == VIEWS["energy"]
    both = parse_metrics("tpot,server")
    assert both is not None and both[-len(VIEWS["server"]) :] == VIEWS["server"]


def test_power_and_tokens_per_joule_charts_only_where_measured(run: Path) -> None:
    records = list(_records(run).values())
    names = [c.name for c in serving_charts(records)]
    assert not any("per_watt" in n or "power" in n for n in names)  # no GPU, no RAPL here
    with_power = [
        Record(**{**r.__dict__, "metrics": {**r.metrics, "gpu_power_mean_w": 300.0 + i,
                                            "gpu_output_throughput_per_watt": 0.5}})
        for i, r in enumerate(records) if r.scenario == "serve"
    ]  # fmt: skip
    charts = {c.name: c for c in serving_charts(with_power)}
    chart = charts["gpu_output_throughput_per_watt-vs-qps"]
    assert not chart.empty and "per watt" in chart.title
    assert "gpu_power_mean_w-vs-qps" in charts


def test_roofline_table_and_bound(tmp_path: Path) -> None:
    assert roofline.peak_bandwidth("NVIDIA H100 80GB HBM3")[0] == 3350.0  # type: ignore[index]
    assert roofline.peak_bandwidth("NVIDIA H100 PCIe")[0] == 2000.0  # type: ignore[index]
    assert roofline.peak_bandwidth("NVIDIA H200")[0] == 4800.0  # type: ignore[index]
    assert roofline.peak_bandwidth("AMD Instinct MI300X")[0] == 5300.0  # type: ignore[index]
    assert roofline.peak_bandwidth("NVIDIA A100-SXM4-80GB")[0] == 2039.0  # type: ignore[index]
    assert roofline.peak_bandwidth("cpu") is None
    for bandwidth, source in roofline.PEAK_BANDWIDTH.values():
        assert bandwidth > 0 and source.startswith("https://")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model-00001.safetensors").write_bytes(b"\0" * 3000)
    (model / "model-00002.safetensors").write_bytes(b"\0" * 1000)
    argv = ["vllm", "serve", str(model), "--tensor-parallel-size", "2"]
    assert weight_bytes_per_gpu(argv) == 2000
    assert weight_bytes_per_gpu(["vllm", "serve", str(model), "-tp=4"]) == 1000
    assert weight_bytes_per_gpu(["vllm", "serve", "org/hub-model"]) is None
    # 16 GB of weights per GPU, one decode step per 8 ms: 2 TB/s, 0.6 of an H100 SXM's 3.35
    metrics = {"total_input_tokens": 100.0, "total_output_tokens": 1000.0,
               "model_weight_bytes_per_gpu": 16e9, "tpot_mean_ms": 8.0}  # fmt: skip
    found = roofline.achieved_bandwidth(metrics, "NVIDIA H100 80GB HBM3")
    assert found["achieved_bandwidth_gbs"] == pytest.approx(2000.0)
    assert found["bandwidth_fraction"] == pytest.approx(2000 / 3350)
    prefill_heavy = {**metrics, "total_input_tokens": 5000.0}
    assert roofline.achieved_bandwidth(prefill_heavy, "NVIDIA H100 80GB HBM3") == {}
    counted = {**metrics, "server_read_bytes_per_gpu": 8e12, "duration_s": 2.0}
    assert roofline.achieved_bandwidth(counted, None) == {"achieved_bandwidth_gbs": 4000.0}
    assert not math.isnan(found["bandwidth_fraction"])
