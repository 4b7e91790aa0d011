"""vLLM's own counters around each serving point, and the check of the client's numbers on them.

The server exposes Prometheus text at `/metrics`. Scraped before and after a point (and every
0.5 s during it, for the peaks of KV-cache use and of running/waiting requests), the
counters' differences are what the server itself did for the point: its generated tokens,
finished requests, preemptions, prefix-cache hits, queue time. Standard library only.

Cross-check. `vllm bench serve` sends one test request (and --num-warmups more) before the
measured ones, each a copy of the first prompt; the server counts those too. So the server's
generated tokens should equal the client's `total_output_tokens` plus (server requests - client
completed - client failed) x the first request's output length. Any difference beyond
TOKEN_TOLERANCE (relative) + 1 token per request is a validity warning naming both numbers.
The server's output throughput is its own token count over the benchmark's duration: it checks
the client's token count, on the client's clock.
"""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

SCRAPE_TIMEOUT_S = 2.0
TOKEN_TOLERANCE = 0.02  # relative, on top of 1 token per request (see the module's text)

# Counters (summed over label sets) whose difference across the point is recorded.
COUNTERS = {
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "preemptions": "vllm:num_preemptions_total",
    "prefix_queries": "vllm:prefix_cache_queries_total",
    "prefix_hits": "vllm:prefix_cache_hits_total",
    "queue_time_sum": "vllm:request_queue_time_seconds_sum",
    "queue_time_count": "vllm:request_queue_time_seconds_count",
    "ttft_sum": "vllm:time_to_first_token_seconds_sum",
    "ttft_count": "vllm:time_to_first_token_seconds_count",
    "read_bytes": "vllm:estimated_read_bytes_per_gpu_total",  # vLLM's own estimate (roofline)
}
REQUESTS = "vllm:request_success_total"
GAUGES = {
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),  # new, old name
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
}

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")


# Each engine (a replica, a data-parallel rank) reports these under its own labels: summing
# them would give a KV-cache usage fraction above 1 and N GPUs' bytes as one GPU's. The largest
# usage and the mean bytes per GPU are kept; every other metric is summed (tokens, requests).
_LARGEST = frozenset(GAUGES["kv_cache_usage"])
_MEAN = frozenset((COUNTERS["read_bytes"],))


def combine(name: str, values: list[float]) -> float:
    """One metric's value over its label sets (or over several servers)."""
    if name in _LARGEST:
        return max(values)
    if name in _MEAN:
        return sum(values) / len(values)
    return sum(values)


def parse(text: str) -> dict[str, float]:
    """Prometheus text -> each metric name's value over its label sets (combine; buckets
    skipped)."""
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name = match.group(1)
        if name.endswith("_bucket"):
            continue
        try:
            value = float(match.group(4))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        found.setdefault(name, []).append(value)
    return {name: combine(name, values) for name, values in found.items()}


def metrics_url(health_url: str) -> str:
    """The server's /metrics beside its /health."""
    base = health_url.rsplit("/", 1)[0] if health_url.endswith("/health") else health_url
    return base.rstrip("/") + "/metrics"


def scrape(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> dict[str, float] | None:
    """One scrape; None when the server does not answer (the point then has no server metrics)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310 - our server
            return parse(reply.read().decode("utf-8", "replace"))
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _gauge(values: dict[str, float], key: str) -> float | None:
    for name in GAUGES[key]:
        if name in values:
            return values[name]
    return None


@dataclass
class Peaks:
    """The largest gauge values seen across the point's samples."""

    samples: int = 0
    values: dict[str, float] = field(default_factory=dict)

    def add(self, values: dict[str, float]) -> None:
        self.samples += 1
        for key in GAUGES:
            value = _gauge(values, key)
            if value is not None:
                self.values[key] = max(value, self.values.get(key, value))


class ServerSampler:
    """Scrapes /metrics before, during (PointProbe's thread calls sample) and after one point."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.before: dict[str, float] | None = None
        self.after: dict[str, float] | None = None
        self.peaks = Peaks()

    def _scrape_all(self) -> dict[str, float] | None:
        """The servers' values combined (several replicas serve one point); None if any is
        silent."""
        found: dict[str, list[float]] = {}
        for url in self.urls:
            values = scrape(url)
            if values is None:
                return None
            for name, value in values.items():
                found.setdefault(name, []).append(value)
        return {name: combine(name, values) for name, values in found.items()}

    def start(self) -> None:
        self.before = self._scrape_all()
        if self.before is not None:
            self.peaks.add(self.before)

    def sample(self) -> None:
        values = self._scrape_all()
        if values is not None:
            self.peaks.add(values)

    def stop(self) -> None:
        self.after = self._scrape_all()
        if self.after is not None:
            self.peaks.add(self.after)

    def metrics(self, client: dict[str, Any] | None) -> dict[str, float]:
        """The point's server-side metrics (empty when a scrape failed)."""
        if self.before is None or self.after is None:
            return {}
        return server_metrics(self.before, self.after, self.peaks, client)


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    if name not in after:
        return None
    return after[name] - before.get(name, 0.0)


def _extra_requests(server_requests: float | None, client: dict[str, Any] | None) -> float:
    """Requests the server finished that the client did not measure (its test and warm-ups)."""
    if server_requests is None or not client:
        return 0.0
    completed = client.get("completed")
    failed = client.get("failed") or 0
    if not isinstance(completed, int):
        return 0.0
    return max(0.0, server_requests - completed - (failed if isinstance(failed, int) else 0))


def _warmup_tokens(extra: float, client: dict[str, Any] | None) -> float:
    """The test and warm-up requests' tokens: each repeats the first prompt."""
    lens = (client or {}).get("output_lens")
    first = lens[0] if isinstance(lens, list) and lens and isinstance(lens[0], int) else 0
    return extra * first


def server_metrics(
    before: dict[str, float],
    after: dict[str, float],
    peaks: Peaks,
    client: dict[str, Any] | None,
) -> dict[str, float]:
    d = {key: _delta(before, after, name) for key, name in COUNTERS.items()}
    requests = _delta(before, after, REQUESTS)
    found: dict[str, float] = {}
    if d["prompt_tokens"] is not None:
        found["server_prompt_tokens"] = d["prompt_tokens"]
    if requests is not None:
        found["server_requests"] = requests
    tokens = d["generation_tokens"]
    if tokens is not None:
        found["server_generation_tokens"] = tokens
        extra = _extra_requests(requests, client)
        measured = tokens - _warmup_tokens(extra, client)
        found["server_warmup_requests"] = extra
        duration = (client or {}).get("duration")
        if isinstance(duration, (int, float)) and duration > 0:
            found["server_output_throughput"] = measured / duration
    if d["read_bytes"]:
        found["server_read_bytes_per_gpu"] = d["read_bytes"]
    if d["preemptions"] is not None:
        found["num_preemptions"] = d["preemptions"]
    if d["prefix_queries"]:
        found["prefix_cache_hit_rate"] = (d["prefix_hits"] or 0.0) / d["prefix_queries"]
    if d["queue_time_count"]:
        found["queue_time_mean_ms"] = 1000 * (d["queue_time_sum"] or 0.0) / d["queue_time_count"]
    if d["ttft_count"]:
        found["server_ttft_mean_ms"] = 1000 * (d["ttft_sum"] or 0.0) / d["ttft_count"]
    for key, name in (
        ("kv_cache_usage", "kv_cache_usage_max"),
        ("running", "num_requests_running_max"),
        ("waiting", "num_requests_waiting_max"),
    ):
        if key in peaks.values:
            found[name] = peaks.values[key]
    found["server_samples"] = float(peaks.samples)
    return found


def cross_check(client: dict[str, Any], server: dict[str, float]) -> list[str]:
    """Warnings where the client's output tokens or throughput disagree with the server's."""
    tokens = server.get("server_generation_tokens")
    client_tokens = client.get("total_output_tokens")
    if tokens is None or not isinstance(client_tokens, int):
        return []
    extra = server.get("server_warmup_requests", 0.0)
    measured = tokens - _warmup_tokens(extra, client)
    requests = float(client.get("completed") or 0)
    allowed = TOKEN_TOLERANCE * client_tokens + requests
    warnings = []
    if abs(measured - client_tokens) > allowed:
        warmups = f" less its {extra:.0f} test/warm-up request(s)" if extra else ""
        warnings.append(
            f"output tokens: the client counted {client_tokens}, the server generated "
            f"{measured:.0f}{warmups}; they differ by more than {TOKEN_TOLERANCE:.0%} "
            "+ 1 per request"
        )
    client_rate = client.get("output_throughput")
    server_rate = server.get("server_output_throughput")
    duration = client.get("duration")
    if (
        isinstance(client_rate, (int, float))
        and isinstance(duration, (int, float))
        and server_rate is not None
        and duration > 0
        and abs(server_rate - client_rate) > TOKEN_TOLERANCE * client_rate + requests / duration
    ):
        warnings.append(
            f"output throughput: the client reported {client_rate:.1f} tok/s, the server's "
            f"counters give {server_rate:.1f} tok/s; they differ by more than {TOKEN_TOLERANCE:.0%}"
        )
    return warnings
