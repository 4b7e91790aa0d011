"""What is measured beside a serving point: the server's counters, the client's CPU, telemetry.

A PointProbe is started before a point and finished after it. One thread samples every
INTERVAL_S: the server's /metrics (peaks of KV-cache use, running and waiting requests), the
CPU time of the agent's child processes other than the server (the load generator, or the
point's `vllm bench serve`), the host CPU (/proc/stat, RAPL) and the GPUs (telemetry.py). The
finish reads the point's vLLM JSON and gives the point's metrics and warnings:

- server_* metrics and the cross-check of the client's tokens against the server's
  (server_metrics.py);
- client_cpu_cores (mean cores the client used during the benchmark's window), dispatch_rate
  (requests sent per second, from vLLM's per-request start times) and client_limited: the
  requests went out clearly slower than asked (dispatch under DISPATCH_SHORTFALL of the rate)
  while the client used at least CLIENT_BUSY_CORES of a core: the client, not the server, set
  the pace;
- gpu_* / cpu_* power, energy, clocks, use, memory and temperature over the benchmark's window,
  energy per output token and output tokens/s per watt; throttling is a warning.

The benchmark's window is its first request's start to its last reply, from vLLM's start_times
and latencies (time.perf_counter: CLOCK_MONOTONIC on Linux, the clock of time.monotonic here).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..rundir import read_json
from . import roofline, server_metrics, telemetry

INTERVAL_S = 0.5
DISPATCH_SHORTFALL = 0.8  # dispatched under 80% of the requested rate...
CLIENT_BUSY_CORES = 0.8  # ...while the client used at least 0.8 of a core: client-limited
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(parent: int) -> list[int]:
    """Direct children of a process (Linux /proc/<pid>/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{parent}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its live descendants (the server's engine, workers)."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += process_cpu_s(current) or 0.0
        todo += _children(current)
    return total


class ClientCpu:
    """The cumulative CPU seconds of the agent's children but the server, sampled over time."""

    def __init__(self, exclude: Callable[[], set[int]]) -> None:
        self.exclude = exclude
        self.seen: dict[int, float] = {}
        self.samples: list[tuple[float, float]] = []

    def sample(self) -> None:
        skip = self.exclude()
        for pid in _children(os.getpid()):
            if pid in skip:
                continue
            cpu = process_cpu_s(pid)
            if cpu is not None:
                self.seen[pid] = max(cpu, self.seen.get(pid, 0.0))
        self.samples.append((time.monotonic(), sum(self.seen.values())))

    def cores(self, t0: float, t1: float) -> float | None:
        """Mean cores used over [t0, t1] (None without two samples around it)."""
        if len(self.samples) < 2 or t1 <= t0:
            return None
        times = [t for t, _ in self.samples]
        values = [v for _, v in self.samples]
        used = telemetry._interp(times, values, t1) - telemetry._interp(times, values, t0)
        return max(0.0, used) / (t1 - t0)


def benchmark_window(client: dict[str, Any], started: float, stopped: float) -> tuple[float, float]:
    """The benchmark's own window on this clock, else the whole point."""
    starts, latencies = client.get("start_times"), client.get("latencies")
    if isinstance(starts, list) and isinstance(latencies, list) and starts and latencies:
        try:
            t0 = min(float(s) for s in starts)
            t1 = max(float(s) + float(lat) for s, lat in zip(starts, latencies, strict=False))
        except (TypeError, ValueError):
            return started, stopped
        if started - 1.0 <= t0 < t1 <= stopped + 1.0:  # the same clock: it lies inside the point
            return t0, t1
    return started, stopped


def dispatch_rate(client: dict[str, Any]) -> float | None:
    """Requests sent per second: (n - 1) over the span of their start times."""
    starts = client.get("start_times")
    if not isinstance(starts, list) or len(starts) < 3:
        return None
    values = sorted(float(s) for s in starts if isinstance(s, (int, float)))
    span = values[-1] - values[0] if len(values) >= 3 else 0.0
    return (len(values) - 1) / span if span > 0 else None


def saturation(
    client: dict[str, Any], cores: float | None, requested: float | None
) -> tuple[dict[str, float], list[str]]:
    found: dict[str, float] = {}
    warnings: list[str] = []
    if cores is not None:
        found["client_cpu_cores"] = cores
    rate = dispatch_rate(client)
    if rate is not None:
        found["dispatch_rate"] = rate
    if rate is None or requested is None or math.isinf(requested) or requested <= 0:
        return found, warnings
    found["dispatch_rate_ratio"] = rate / requested
    limited = rate < DISPATCH_SHORTFALL * requested and (cores or 0.0) >= CLIENT_BUSY_CORES
    found["client_limited"] = 1.0 if limited else 0.0
    if limited:
        warnings.append(
            f"client-limited: requests went out at {rate:.3g}/s of {requested:g} requested while "
            f"the load generator used {cores:.2f} CPU cores: this is not the server's limit"
        )
    return found, warnings


class PointProbe:
    """Started before a serving point, finished after it: its metrics and warnings."""

    def __init__(
        self,
        metrics_urls: list[str],
        exclude_pids: Callable[[], set[int]],
        gpu: Any | None = None,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.server = server_metrics.ServerSampler(metrics_urls)
        self.client_cpu = ClientCpu(exclude_pids)
        self.cpu = telemetry.Cpu()
        self.gpu = gpu
        self.interval_s = interval_s
        self.cpu_samples: list[tuple[float, telemetry.Reading]] = []
        self.gpu_samples: list[tuple[float, telemetry.Reading]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = self.stopped = 0.0
        self.own_cpu_s = 0.0  # the sampler's own CPU time: its cost (benchmarks/sampler_cost.py)
        self.fixed: dict[str, float] = {}  # known before the point (the model's weight bytes)
        self.exclude = exclude_pids
        self.server_cpu = 0.0  # the servers' CPU seconds over the point (their process trees)

    def _sample(self) -> None:
        self.server.sample()
        self.client_cpu.sample()
        now = time.monotonic()
        self.cpu_samples.append((now, self.cpu.read()))
        if self.gpu is not None:
            self.gpu_samples.append((time.monotonic(), self.gpu.read()))

    def _loop(self) -> None:
        # It first sleeps interval_s: the first sample after the start's is one interval later.
        begun = time.thread_time()
        while not self._stop.wait(self.interval_s):
            self._sample()
        self.own_cpu_s += time.thread_time() - begun

    def _server_cpu_s(self) -> float:
        return sum(tree_cpu_s(pid) for pid in self.exclude())

    def start(self) -> None:
        begun = time.thread_time()
        self.server_cpu = -self._server_cpu_s()
        self.started = time.monotonic()
        self.server.start()
        self.client_cpu.sample()
        self.cpu_samples.append((self.started, self.cpu.read()))
        if self.gpu is not None:
            self.gpu_samples.append((self.started, self.gpu.read()))
        self.own_cpu_s += time.thread_time() - begun
        self._thread = threading.Thread(target=self._loop, name="point-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        begun = time.thread_time()
        self._sample()
        self.server.stop()
        self.stopped = time.monotonic()
        self.server_cpu += self._server_cpu_s()
        self.own_cpu_s += time.thread_time() - begun

    def finish(self, result: Path) -> dict[str, Any]:
        """Stop sampling; the point's {"metrics", "warnings", "window_s", "sources"}."""
        self.stop()
        client = read_json(result) or {}
        requested = client.get("request_rate")
        requested_rate = float(requested) if isinstance(requested, (int, float)) else None
        t0, t1 = benchmark_window(client, self.started, self.stopped)
        metrics = self.server.metrics(client)
        warnings = server_metrics.cross_check(client, metrics) if client else []
        found, said = saturation(client, self.client_cpu.cores(t0, t1), requested_rate)
        metrics.update(found)
        warnings += said
        for prefix, samples in (("cpu", self.cpu_samples), ("gpu", self.gpu_samples)):
            values, said = telemetry.summarize(prefix, samples, t0, t1)
            metrics.update(values)
            metrics.update(telemetry.efficiency(values, client, prefix))
            warnings += said
        metrics["probe_cpu_s"] = self.own_cpu_s
        metrics["server_cpu_s"] = self.server_cpu
        metrics["client_cpu_s"] = self.client_cpu.samples[-1][1] - self.client_cpu.samples[0][1]
        metrics.update(self.fixed)
        return {
            "metrics": {k: round(v, 6) for k, v in metrics.items()},
            "warnings": warnings,
            "window_s": round(t1 - t0, 3),
            "interval_s": self.interval_s,
            "sources": {
                "server": self.server.urls,
                "gpu": getattr(self.gpu, "name", None),
                "cpu_energy": "rapl" if self.cpu.packages else None,
            },
        }


class Watched:
    """What `watching` found: the point's report, or {} where nothing was probed."""

    def __init__(self) -> None:
        self.report: dict[str, Any] = {}


@contextlib.contextmanager
def watching(scenario: str, servers: Sequence[Any], result: Path) -> Iterator[Watched]:
    """Probe a serving point while its servers run; the report once the point wrote its JSON.

    `servers`: core.py's Server, or a Fleet (fleet.py): its replicas are scraped, and they and
    its router are the processes that are not the client.
    """
    watched = Watched()
    if scenario != "serve" or not servers:
        yield watched
        return
    replicas = [r for s in servers for r in getattr(s, "servers", [s])]
    owned = [*replicas, *(getattr(s, "router", None) for s in servers)]
    urls = [server_metrics.metrics_url(str(r.health_url)) for r in replicas]

    def server_pids() -> set[int]:
        return {o.proc.pid for o in owned if getattr(o, "proc", None) is not None}

    probe = PointProbe(urls, server_pids, telemetry.gpu_source())
    weights = roofline.weight_bytes_per_gpu([str(a) for a in getattr(replicas[0], "argv", [])])
    if weights is not None:
        probe.fixed["model_weight_bytes_per_gpu"] = weights  # for the roofline (roofline.py)
    probe.start()
    try:
        yield watched
    except BaseException:
        probe.stop()
        raise
    watched.report = probe.finish(result)
