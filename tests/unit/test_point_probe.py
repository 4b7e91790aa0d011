"""The server's counters, the cross-check of the client on them, client saturation, telemetry."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.agent import probe, server_metrics, telemetry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
METRICS = FIXTURES / "vllm-0.32.0-cpu" / "metrics"
TELEMETRY = FIXTURES / "telemetry"


def _scrapes() -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    before = server_metrics.parse((METRICS / "before.prom").read_text())
    after = server_metrics.parse((METRICS / "after.prom").read_text())
    client = json.loads((METRICS / "client.json").read_text())
    return before, after, client


def _server_side(client: dict[str, Any]) -> dict[str, float]:
    before, after, _ = _scrapes()
    peaks = server_metrics.Peaks()
    peaks.add(before)
    peaks.add(after)
    return server_metrics.server_metrics(before, after, peaks, client)


def test_a_real_scrape_parses_into_the_point_metrics() -> None:
    _, _, client = _scrapes()
    found = _server_side(client)
    # recorded: 12 requests of 64 -> 32 tokens (see the fixture's README)
    assert found["server_requests"] == 12
    assert found["server_generation_tokens"] == 384
    assert found["server_prompt_tokens"] == 770 == client["total_input_tokens"]
    assert found["server_warmup_requests"] == 0
    assert found["num_preemptions"] == 0
    assert found["server_output_throughput"] == pytest.approx(384 / client["duration"])
    assert 0 <= found["queue_time_mean_ms"] < 1000
    assert found["kv_cache_usage_max"] == 0.0  # both scrapes were taken idle
    assert "server_read_bytes_per_gpu" not in found  # vLLM's estimate stays 0 on the CPU: omitted


def test_an_honest_client_passes_the_cross_check() -> None:
    _, _, client = _scrapes()
    assert server_metrics.cross_check(client, _server_side(client)) == []


def test_a_client_that_hides_output_is_caught_naming_both_numbers() -> None:
    _, _, client = _scrapes()
    lying = {
        **client,
        "total_output_tokens": 300,
        "output_throughput": client["output_throughput"] * 300 / 384,
    }
    warnings = server_metrics.cross_check(lying, _server_side(lying))
    assert len(warnings) == 2, warnings
    assert "300" in warnings[0] and "384" in warnings[0]
    assert "tok/s" in warnings[1] and f"{lying['output_throughput']:.1f}" in warnings[1]


def test_the_cross_check_on_a_recorded_run_and_a_lying_client() -> None:
    """A real run's status.json counters and raw JSON; then the client hides half its tokens."""
    (run,) = list((FIXTURES / "runs-probed").iterdir())
    status = json.loads((run / "status.json").read_text())
    for entry in status["points"]:
        raw = json.loads((run / entry["result"]).read_text())
        server = entry["probe"]["metrics"]
        assert server_metrics.cross_check(raw, server) == [], entry["id"]
        honest = raw["total_output_tokens"]
        lying = {**raw, "total_output_tokens": honest // 2}
        (warning,) = server_metrics.cross_check(lying, server)
        assert f"the client counted {honest // 2}, the server generated {honest}" in warning


def test_test_and_warmup_requests_are_allowed_for() -> None:
    """vLLM's test request repeats the first prompt: the server counts it, the client does not."""
    client = {"completed": 4, "failed": 0, "total_output_tokens": 64, "output_lens": [16] * 4,
              "duration": 2.0, "output_throughput": 32.0}  # fmt: skip
    before = {"vllm:generation_tokens_total": 100.0, "vllm:request_success_total": 3.0}
    after = {"vllm:generation_tokens_total": 180.0, "vllm:request_success_total": 8.0}
    found = server_metrics.server_metrics(before, after, server_metrics.Peaks(), client)
    assert found["server_warmup_requests"] == 1 and found["server_output_throughput"] == 32.0
    assert server_metrics.cross_check(client, found) == []
    # without that allowance 16 of 80 tokens would be a 20% disagreement
    assert server_metrics.cross_check({**client, "output_lens": [0]}, found)


def test_prometheus_text_edge_cases() -> None:
    text = """# HELP x
vllm:gpu_cache_usage_perc{engine="0"} 0.25
vllm:gpu_cache_usage_perc{engine="1"} 0.5
vllm:request_queue_time_seconds_bucket{le="+Inf"} 9
vllm:num_requests_running NaN
not a sample line
"""
    values = server_metrics.parse(text)
    # the old gauge name; a fraction per engine: the fullest engine's, never a sum above 1
    assert values == {"vllm:gpu_cache_usage_perc": 0.5}
    peaks = server_metrics.Peaks()
    peaks.add(values)
    assert peaks.values == {"kv_cache_usage": 0.5}
    assert (
        server_metrics.metrics_url("http://127.0.0.1:8000/health")
        == "http://127.0.0.1:8000/metrics"
    )


def test_engines_and_replicas_combine_per_metric() -> None:
    text = """vllm:kv_cache_usage_perc{engine="0"} 0.75
vllm:kv_cache_usage_perc{engine="1"} 0.5
vllm:estimated_read_bytes_per_gpu_total{engine="0"} 100
vllm:estimated_read_bytes_per_gpu_total{engine="1"} 300
vllm:generation_tokens_total{engine="0"} 10
vllm:generation_tokens_total{engine="1"} 20
"""
    assert server_metrics.parse(text) == {
        "vllm:kv_cache_usage_perc": 0.75,  # the fullest engine's
        "vllm:estimated_read_bytes_per_gpu_total": 200.0,  # still per GPU: the engines' mean
        "vllm:generation_tokens_total": 30.0,  # every engine's tokens
    }


@pytest.fixture
def metrics_server() -> Iterator[str]:
    """A real HTTP server answering /metrics with the recorded scrapes, before then after."""
    bodies = [(METRICS / "before.prom").read_bytes(), (METRICS / "after.prom").read_bytes()]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies[0] if len(bodies) > 1 else bodies[-1]
            if len(bodies) > 1:
                bodies.pop(0)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()


def test_a_point_probe_end_to_end_on_a_real_endpoint_and_child(
    tmp_path: Path, metrics_server: str
) -> None:
    """The probe scrapes a real HTTP endpoint and measures a real child process's CPU."""
    watch = probe.PointProbe([metrics_server], set, gpu=None, interval_s=0.1)
    watch.start()
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.2: pass"]
    )
    started = time.monotonic()
    busy.wait()
    ended = time.monotonic()
    _, _, client = _scrapes()
    n = client["completed"]
    client["start_times"] = [started + i * (ended - started - 0.2) / n for i in range(n)]
    client["latencies"] = [0.1] * n
    result = tmp_path / "point.json"
    result.write_text(json.dumps(client))
    report = watch.finish(result)
    found = report["metrics"]
    assert found["server_generation_tokens"] == 384 and report["warnings"] == []
    assert found["client_cpu_cores"] > 0.05  # the busy child, seen through /proc
    assert "cpu_util_mean" in found and found["probe_cpu_s"] >= 0
    assert 0.9 < report["window_s"] < 1.3  # the benchmark's own window, not the whole point


def test_client_limited_only_when_slow_and_busy() -> None:
    client = {"start_times": [i * 0.5 for i in range(11)]}  # 2 req/s sent
    found, warnings = probe.saturation(client, 0.97, 10.0)
    assert found["dispatch_rate"] == pytest.approx(2.0) and found["client_limited"] == 1.0
    assert "client-limited" in warnings[0] and "0.97" in warnings[0]
    found, warnings = probe.saturation(client, 0.2, 10.0)  # slow, but the client was idle
    assert found["client_limited"] == 0.0 and warnings == []
    found, warnings = probe.saturation(client, 1.0, float("inf"))  # as fast as it can: no target
    assert "client_limited" not in found and warnings == []


def test_the_benchmark_window_comes_from_vllm_start_times() -> None:
    client = {"start_times": [10.0, 10.5, 11.0], "latencies": [0.2, 0.3, 0.4]}
    assert probe.benchmark_window(client, 9.0, 12.0) == (10.0, 11.4)
    assert probe.benchmark_window(client, 100.0, 120.0) == (100.0, 120.0)  # another clock
    assert probe.benchmark_window({}, 1.0, 2.0) == (1.0, 2.0)


def test_nvidia_smi_csv_and_its_throttle_reasons() -> None:
    reading = telemetry.parse_nvidia_smi((TELEMETRY / "nvidia-smi-query.csv").read_text())
    assert len(reading) == 3
    assert reading[0] == {"power_w": 412.57, "sm_clock_mhz": 1980.0, "mem_clock_mhz": 3201.0,
                          "util_pct": 97.0, "mem_used_mib": 61234.0, "temp_c": 58.0,
                          "throttle_mask": 0.0}  # fmt: skip
    assert reading[1]["throttle_mask"] == 4.0  # SW power cap
    assert "power_w" not in reading[2] and "throttle_mask" not in reading[2]  # [N/A]


def test_amd_smi_json_in_both_shapes() -> None:
    gpus = telemetry.parse_amd_smi((TELEMETRY / "amd-smi-metric-list.json").read_text())
    assert gpus[0]["power_w"] == 542 and gpus[0]["sm_clock_mhz"] == 2100
    assert gpus[0]["temp_c"] == 71 and gpus[0]["mem_used_mib"] == 121344
    assert gpus[0]["energy_j"] == pytest.approx(123.4567895) and gpus[0]["throttle_mask"] == 0
    assert gpus[1]["temp_c"] == 38 and "sm_clock_mhz" not in gpus[1]  # hotspot N/A: the edge
    assert gpus[1]["energy_j"] == 5.25 and gpus[1]["throttle_mask"] == 1
    wrapped = telemetry.parse_amd_smi((TELEMETRY / "amd-smi-metric-gpu-data.json").read_text())
    assert wrapped == [{"power_w": 100.0, "util_pct": 50.0, "mem_used_mib": 250.0, "temp_c": 40.0}]
    assert telemetry.parse_amd_smi("amd-smi: command failed") == []


def test_power_is_integrated_over_the_window_and_throttling_warns() -> None:
    samples = [
        (0.0, [{"power_w": 100.0, "util_pct": 50.0}, {"power_w": 100.0, "util_pct": 70.0}]),
        (1.0, [{"power_w": 300.0, "util_pct": 90.0},
               {"power_w": 100.0, "util_pct": 90.0, "throttle_mask": 0x40}]),
        (2.0, [{"power_w": 100.0, "util_pct": 10.0}, {"power_w": 100.0, "util_pct": 10.0}]),
    ]  # fmt: skip
    found, warnings = telemetry.summarize("gpu", samples, 0.0, 2.0)
    # summed over devices: 200 -> 400 -> 200 W, trapezoids: 300 + 300 J
    assert found["gpu_energy_j"] == pytest.approx(600.0)
    assert found["gpu_power_mean_w"] == pytest.approx(300.0) and found["gpu_power_peak_w"] == 400.0
    assert found["gpu_util_mean"] == pytest.approx((60 + 90 + 10) / 3)
    assert warnings == ["GPU throttled during the point: device 1 (hardware thermal slowdown)"]
    eff = telemetry.efficiency(
        found, {"total_output_tokens": 1200, "output_throughput": 600.0}, "gpu"
    )
    assert eff["gpu_energy_per_output_token_j"] == pytest.approx(0.5)
    assert eff["gpu_output_throughput_per_watt"] == pytest.approx(2.0)


def test_an_energy_counter_beats_integrating_samples() -> None:
    samples = [(float(t), [{"power_w": 50.0, "energy_j": 1000.0 + 80.0 * t}]) for t in range(5)]
    found, _ = telemetry.summarize("gpu", samples, 1.0, 3.0)
    assert found["gpu_energy_j"] == pytest.approx(160.0)  # the counter, not 50 W x 2 s
    assert found["gpu_power_mean_w"] == pytest.approx(80.0)


def test_the_cpu_sampler_reads_this_host_and_rapl_where_readable(tmp_path: Path) -> None:
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "energy_uj").write_text("999000000\n")
    (zone / "max_energy_range_uj").write_text("1000000000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-zone: counted inside its package
    cpu = telemetry.Cpu(rapl=tmp_path)
    sum(range(200000))
    (zone / "energy_uj").write_text("4000000\n")  # wrapped around: 1 J + 4 J
    reading = cpu.read()
    assert reading[0]["energy_j"] == pytest.approx(5.0)
    assert 0.0 <= reading[0].get("util_pct", 0.0) <= 100.0
    assert telemetry.Cpu(rapl=tmp_path / "none").packages == []


def test_watching_probes_serving_points_only(tmp_path: Path, metrics_server: str) -> None:
    """A Fleet's replicas are scraped and summed; a latency point is not probed."""
    health = metrics_server.replace("/metrics", "/health")
    with probe.watching("latency", [object()], tmp_path / "x.json") as seen:
        pass
    assert seen.report == {}
    fleet = types.SimpleNamespace(
        servers=[types.SimpleNamespace(health_url=health, proc=None, argv=["vllm", "serve", "m"])],
        router=None,
    )
    result = tmp_path / "point.json"
    result.write_text((METRICS / "client.json").read_text())
    with probe.watching("serve", [fleet], result) as seen:
        time.sleep(0.2)
    assert seen.report["sources"]["server"] == [metrics_server]
    assert seen.report["metrics"]["server_generation_tokens"] == 384
    assert seen.report["warnings"] == []


class _NvmlStandIn:
    """libnvidia-ml's calls as telemetry.Nvml makes them, answering with one H100's values
    (a stand-in: no NVIDIA driver here; the values are the units NVML documents: mW, mJ)."""

    def __init__(self, fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.fail = fail

    def __getattr__(self, name: str) -> Any:
        values: dict[str, Any] = {
            "nvmlDeviceGetCount_v2": 1,
            "nvmlDeviceGetPowerUsage": 412570,  # mW
            "nvmlDeviceGetTotalEnergyConsumption": 123456789,  # mJ
            "nvmlDeviceGetClockInfo": {1: 1980, 2: 2619},
            "nvmlDeviceGetTemperature": 58,
            "nvmlDeviceGetCurrentClocksThrottleReasons": 0x1 | 0x40,  # idle + HW thermal
        }

        def call(*args: Any) -> int:
            if name in self.fail:
                return 3  # NVML_ERROR_NOT_SUPPORTED
            out: Any = args[-1]._obj if args else None
            if name == "nvmlDeviceGetUtilizationRates":
                out.gpu, out.memory = 97, 60
            elif name == "nvmlDeviceGetMemoryInfo":
                out.total, out.used, out.free = 80 * 2**30, 60 * 2**30, 20 * 2**30
            elif name == "nvmlDeviceGetClockInfo":
                out.value = values[name][args[1]]
            elif name in values:
                out.value = values[name]
            return 0

        return call


def test_nvml_readings_in_their_documented_units() -> None:
    (dev,) = telemetry.Nvml(_NvmlStandIn()).read()
    assert dev == {"power_w": 412.57, "energy_j": 123456.789, "sm_clock_mhz": 1980.0,
                   "mem_clock_mhz": 2619.0, "util_pct": 97.0, "mem_used_mib": 60 * 1024.0,
                   "temp_c": 58.0, "throttle_mask": 64.0}  # fmt: skip  # idle is not throttling
    (partial,) = telemetry.Nvml(_NvmlStandIn({"nvmlDeviceGetTotalEnergyConsumption"})).read()
    assert "energy_j" not in partial and partial["power_w"] == 412.57  # left out, not zero
