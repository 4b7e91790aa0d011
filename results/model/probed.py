"""A serving point's probe (runner/agent/probe.py) read back: the server's counters, the client's
CPU and dispatch rate, telemetry and energy, as record metrics, and its warnings."""

from __future__ import annotations

import math
from typing import Any, Literal

Better = Literal["higher", "lower"]


def probe_fields(entry: dict[str, Any] | None) -> tuple[dict[str, float], tuple[str, ...]]:
    """status.json's probe of one point: (metrics, warnings); nothing for a point without one."""
    found = entry.get("probe") if isinstance(entry, dict) else None
    if not isinstance(found, dict):
        return {}, ()
    recorded = found.get("metrics")
    metrics = {
        str(name): float(value)
        for name, value in (recorded.items() if isinstance(recorded, dict) else ())
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }
    said = found.get("warnings")
    warnings = tuple(str(w) for w in said) if isinstance(said, list) else ()
    return metrics, warnings


# Metric names the probe records: (name, label, unit, which direction is better).
_DEVICE: tuple[tuple[str, str, str, Better], ...] = (
    ("power_mean_w", "mean power", "W", "lower"),
    ("power_peak_w", "peak power", "W", "lower"),
    ("energy_j", "energy", "J", "lower"),
    ("energy_per_output_token_j", "energy per output token", "J/token", "lower"),
    ("output_throughput_per_watt", "output tokens/s per watt", "tok/s/W", "higher"),
    ("sm_clock_mhz_mean", "mean clock", "MHz", "higher"),
    ("mem_clock_mhz_mean", "mean memory clock", "MHz", "higher"),
    ("util_mean", "mean utilization", "%", "higher"),
    ("mem_used_mib_max", "peak memory used", "MiB", "lower"),
    ("temp_max", "peak temperature", "C", "lower"),
)
PROBE_METRICS: tuple[tuple[str, str, str, Better], ...] = (
    ("server_generation_tokens", "server output tokens", "tokens", "higher"),
    ("server_prompt_tokens", "server prompt tokens", "tokens", "higher"),
    ("server_requests", "server requests", "requests", "higher"),
    ("server_warmup_requests", "server test/warm-up requests", "requests", "lower"),
    ("server_output_throughput", "server output tokens/s", "tok/s", "higher"),
    ("server_ttft_mean_ms", "server TTFT mean", "ms", "lower"),
    ("server_read_bytes_per_gpu", "server bytes read per GPU", "bytes", "higher"),
    ("server_samples", "server scrapes", "scrapes", "higher"),
    ("kv_cache_usage_max", "peak KV-cache use", "fraction", "lower"),
    ("num_requests_running_max", "peak running requests", "requests", "higher"),
    ("num_requests_waiting_max", "peak waiting requests", "requests", "lower"),
    ("num_preemptions", "preemptions", "count", "lower"),
    ("prefix_cache_hit_rate", "prefix-cache hit rate", "fraction", "higher"),
    ("queue_time_mean_ms", "queue time mean", "ms", "lower"),
    ("client_cpu_cores", "client CPU", "cores", "lower"),
    ("dispatch_rate", "dispatched requests/s", "req/s", "higher"),
    ("dispatch_rate_ratio", "dispatched / requested rate", "ratio", "higher"),
    ("client_limited", "client-limited", "flag", "lower"),
    ("probe_cpu_s", "sampler CPU", "s", "lower"),
    ("server_cpu_s", "server CPU", "s", "lower"),
    ("client_cpu_s", "client CPU", "s", "lower"),
    ("model_weight_bytes_per_gpu", "weight bytes per GPU", "bytes", "lower"),
    ("achieved_bandwidth_gbs", "achieved memory bandwidth", "GB/s", "higher"),
    ("bandwidth_fraction", "fraction of peak memory bandwidth", "fraction", "higher"),
    *((f"{dev}_{name}", f"{dev.upper()} {label}", unit, better)
      for dev in ("gpu", "cpu") for name, label, unit, better in _DEVICE),
)  # fmt: skip

# `bench-results show --view NAME`: the metric columns of each view
VIEWS: dict[str, tuple[str, ...]] = {
    "server": (
        "output_throughput",
        "server_output_throughput",
        "kv_cache_usage_max",
        "num_preemptions",
        "queue_time_mean_ms",
        "client_cpu_cores",
        "dispatch_rate",
    ),
    "energy": (
        "output_throughput",
        "gpu_power_mean_w",
        "gpu_power_peak_w",
        "gpu_energy_per_output_token_j",
        "gpu_output_throughput_per_watt",
        "cpu_util_mean",
        "bandwidth_fraction",
    ),
}
