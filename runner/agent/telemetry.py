"""Hardware telemetry during a point: GPU power, energy, clocks, use, memory, heat, throttling.

Standard library only. Each source is used only where it is there:
- NVIDIA: NVML through ctypes when libnvidia-ml.so.1 loads (power in mW, the energy counter in
  mJ, clocks, use, memory, temperature, clock-event (throttle) reasons); else one
  `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` per sample.
- AMD: `amd-smi metric --json` per sample (power.socket_power, energy.total_energy_consumption,
  clock.gfx_0/mem_0, usage.gfx_activity, mem_usage.used_vram, temperature.hotspot,
  power.throttle_status).
- The CPU: /proc/stat (busy share of all cores) and RAPL energy counters
  (/sys/class/powercap/intel-rapl:N/energy_uj) where readable.

A reading is one dict of numbers per device; the point's summary integrates power over the
benchmark's own window (its first request's start to its last reply) where that is known.
"""

from __future__ import annotations

import ctypes
import functools
import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Reading = list[dict[str, float]]

# NVML's clock-event reasons that mean the clocks were held down (not idle, not app clocks).
NVML_THROTTLE = {
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}
NVIDIA_SMI_FIELDS = (
    "power.draw",
    "clocks.sm",
    "clocks.mem",
    "utilization.gpu",
    "memory.used",
    "temperature.gpu",
    "clocks_throttle_reasons.active",
)
_ENERGY_UNITS = {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "µJ": 1e-6, "kJ": 1e3}


# -- NVIDIA ----------------------------------------------------------------------------------------
class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class _Memory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


class Nvml:
    """NVML's calls that telemetry needs, through ctypes; a failed call leaves its field out."""

    name = "nvml"

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        if lib.nvmlInit_v2() != 0:
            raise OSError("nvmlInit_v2 failed")
        count = ctypes.c_uint()
        if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            raise OSError("nvmlDeviceGetCount_v2 failed")
        self.handles = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            if lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) == 0:
                self.handles.append(handle)

    @classmethod
    def load(cls) -> Nvml | None:
        try:
            return cls(ctypes.CDLL("libnvidia-ml.so.1"))
        except OSError:
            return None

    def _uint(self, call: Callable[..., int], handle: Any, *args: Any) -> int | None:
        value = ctypes.c_uint()
        return value.value if call(handle, *args, ctypes.byref(value)) == 0 else None

    def read(self) -> Reading:
        lib, out = self.lib, []
        for handle in self.handles:
            dev: dict[str, float] = {}
            power = self._uint(lib.nvmlDeviceGetPowerUsage, handle)
            if power is not None:
                dev["power_w"] = power / 1000.0
            energy = ctypes.c_ulonglong()
            if lib.nvmlDeviceGetTotalEnergyConsumption(handle, ctypes.byref(energy)) == 0:
                dev["energy_j"] = energy.value / 1000.0
            for key, clock in (("sm_clock_mhz", 1), ("mem_clock_mhz", 2)):
                value = self._uint(lib.nvmlDeviceGetClockInfo, handle, clock)
                if value is not None:
                    dev[key] = float(value)
            util = _Utilization()
            if lib.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(util)) == 0:
                dev["util_pct"] = float(util.gpu)
            memory = _Memory()
            if lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) == 0:
                dev["mem_used_mib"] = memory.used / 2**20
            temp = self._uint(lib.nvmlDeviceGetTemperature, handle, 0)
            if temp is not None:
                dev["temp_c"] = float(temp)
            reasons = ctypes.c_ulonglong()
            if lib.nvmlDeviceGetCurrentClocksThrottleReasons(handle, ctypes.byref(reasons)) == 0:
                dev["throttle_mask"] = float(reasons.value & sum(NVML_THROTTLE))
            out.append(dev)
        return out

    def close(self) -> None:
        self.lib.nvmlShutdown()


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(int(text, 16)) if text.startswith("0x") else float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse_nvidia_smi(text: str) -> Reading:
    """`nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits` lines."""
    keys = ("power_w", "sm_clock_mhz", "mem_clock_mhz", "util_pct", "mem_used_mib", "temp_c")
    out = []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(NVIDIA_SMI_FIELDS):
            continue
        dev = {k: v for k, v in zip(keys, map(_number, cells), strict=False) if v is not None}
        mask = _number(cells[-1])
        if mask is not None:
            dev["throttle_mask"] = float(int(mask) & sum(NVML_THROTTLE))
        out.append(dev)
    return out


class Command:
    """A tool run once per sample (nvidia-smi, amd-smi), its output parsed."""

    def __init__(self, name: str, argv: Sequence[str], parse: Callable[[str], Reading]) -> None:
        self.name = name
        self.argv = list(argv)
        self.parse = parse

    def read(self) -> Reading:
        try:
            done = subprocess.run(
                self.argv, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        return self.parse(done.stdout) if done.returncode == 0 else []

    def close(self) -> None:
        pass


# -- AMD -------------------------------------------------------------------------------------------
def _value(node: Any) -> tuple[float | None, str | None]:
    """amd-smi's {"value": v, "unit": u}, a bare number, or "N/A"."""
    unit = None
    if isinstance(node, dict):
        unit = node.get("unit") if isinstance(node.get("unit"), str) else None
        node = node.get("value")
    if isinstance(node, bool) or not isinstance(node, (int, float, str)):
        return None, unit
    try:
        return float(node), unit
    except ValueError:
        return None, unit


def _path(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _amd_device(gpu: dict[str, Any]) -> dict[str, float]:
    dev: dict[str, float] = {}
    fields = {
        "power_w": (("power", "socket_power"),),
        "sm_clock_mhz": (("clock", "gfx_0", "clk"),),
        "mem_clock_mhz": (("clock", "mem_0", "clk"),),
        "util_pct": (("usage", "gfx_activity"),),
        "mem_used_mib": (("mem_usage", "used_vram"),),
        "temp_c": (("temperature", "hotspot"), ("temperature", "edge")),
    }
    for key, paths in fields.items():
        for path in paths:
            value, _ = _value(_path(gpu, *path))
            if value is not None:
                dev[key] = value
                break
    energy, unit = _value(_path(gpu, "energy", "total_energy_consumption"))
    if energy is not None:
        dev["energy_j"] = energy * _ENERGY_UNITS.get(unit or "J", 1.0)
    status = _path(gpu, "power", "throttle_status")
    if isinstance(status, str) and status != "N/A":
        dev["throttle_mask"] = 1.0 if status.upper() == "THROTTLED" else 0.0
    return dev


def parse_amd_smi(text: str) -> Reading:
    """`amd-smi metric --json`: a list of GPUs, or {"gpu_data": [...]} in later releases."""
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return []
    try:
        data = json.loads(text[start:])
    except json.JSONDecodeError:
        return []
    gpus = data.get("gpu_data") if isinstance(data, dict) else data
    if not isinstance(gpus, list):
        return []
    return [_amd_device(g) for g in gpus if isinstance(g, dict)]


# -- the CPU ---------------------------------------------------------------------------------------
RAPL_ROOT = Path("/sys/class/powercap")


def _proc_stat(path: Path) -> tuple[float, float] | None:
    """(busy, total) jiffies of all cores from /proc/stat's first line."""
    try:
        line = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    ticks = [float(x) for x in line.split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0.0)  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


class Cpu:
    """The host's CPU: busy share from /proc/stat, energy from RAPL packages where readable."""

    name = "cpu"

    def __init__(self, proc_stat: Path = Path("/proc/stat"), rapl: Path = RAPL_ROOT) -> None:
        self.proc_stat = proc_stat
        self.packages = []
        for zone in sorted(rapl.glob("intel-rapl:*")):
            if zone.name.count(":") != 1:
                continue  # a package's sub-zones (core, dram) are inside its own count
            energy = zone / "energy_uj"
            try:
                int(energy.read_text())
            except (OSError, ValueError):
                continue  # not readable (root-only on recent kernels)
            limit = zone / "max_energy_range_uj"
            try:
                wrap = float(limit.read_text())
            except (OSError, ValueError):
                wrap = 0.0
            self.packages.append((energy, wrap))
        self._last: tuple[float, float] | None = _proc_stat(proc_stat)
        self._energy = [self._uj(p) for p, _ in self.packages]
        self.energy_j = 0.0  # RAPL energy accumulated across wrap-arounds

    @staticmethod
    def _uj(path: Path) -> float | None:
        try:
            return float(path.read_text())
        except (OSError, ValueError):
            return None

    def read(self) -> Reading:
        dev: dict[str, float] = {}
        now = _proc_stat(self.proc_stat)
        if now is not None and self._last is not None and now[1] > self._last[1]:
            dev["util_pct"] = 100.0 * (now[0] - self._last[0]) / (now[1] - self._last[1])
        self._last = now or self._last
        if self.packages:
            for index, (path, wrap) in enumerate(self.packages):
                value, last = self._uj(path), self._energy[index]
                if value is not None and last is not None:
                    step = value - last if value >= last else value + wrap - last
                    self.energy_j += step / 1e6
                self._energy[index] = value
            dev["energy_j"] = self.energy_j
        return [dev]

    def close(self) -> None:
        pass


@functools.cache
def gpu_source() -> Nvml | Command | None:
    """The GPUs' telemetry source on this host, or None where there is none."""
    nvml = Nvml.load()
    if nvml is not None and nvml.handles:
        return nvml
    smi = shutil.which("nvidia-smi")
    if smi:
        argv = [smi, f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}", "--format=csv,noheader,nounits"]
        return Command("nvidia-smi", argv, parse_nvidia_smi)
    amd = shutil.which("amd-smi")
    if amd:
        return Command("amd-smi", [amd, "metric", "--json"], parse_amd_smi)
    return None


# -- a point's summary ---------------------------------------------------------------------------
def integrate(times: Sequence[float], values: Sequence[float], t0: float, t1: float) -> float:
    """The integral of the piecewise-linear series over [t0, t1] (values held beyond its ends)."""
    if not times or t1 <= t0:
        return 0.0

    def at(t: float) -> float:
        if t <= times[0]:
            return values[0]
        for i in range(1, len(times)):
            if t <= times[i]:
                span = times[i] - times[i - 1]
                w = (t - times[i - 1]) / span if span > 0 else 1.0
                return values[i - 1] + w * (values[i] - values[i - 1])
        return values[-1]

    points = [t0, *[t for t in times if t0 < t < t1], t1]
    return sum(
        (points[i] - points[i - 1]) * (at(points[i]) + at(points[i - 1])) / 2
        for i in range(1, len(points))
    )


def _series(samples: list[tuple[float, Reading]], key: str) -> tuple[list[float], list[float]]:
    """Per sample, the value summed over devices (only samples where every device has it)."""
    times, values = [], []
    for t, reading in samples:
        found = [dev[key] for dev in reading if key in dev]
        if found and len(found) == len(reading):
            times.append(t)
            values.append(sum(found))
    return times, values


def _window(samples: list[tuple[float, Reading]], t0: float, t1: float) -> list[Reading]:
    inside = [reading for t, reading in samples if t0 <= t <= t1]
    return inside or [reading for _, reading in samples]


def summarize(
    prefix: str, samples: list[tuple[float, Reading]], t0: float, t1: float
) -> tuple[dict[str, float], list[str]]:
    """Metrics named <prefix>_... over the window [t0, t1], and throttling warnings."""
    found: dict[str, float] = {}
    warnings: list[str] = []
    seconds = t1 - t0
    if not samples or seconds <= 0:
        return found, warnings
    times, power = _series(samples, "power_w")
    if times:
        inside = [p for t, p in zip(times, power, strict=True) if t0 <= t <= t1] or power
        found[f"{prefix}_power_peak_w"] = max(inside)
        found[f"{prefix}_energy_j"] = integrate(times, power, t0, t1)
    etimes, energy = _series(samples, "energy_j")
    if len(etimes) >= 2 and etimes[0] <= t0 + 1.0 and etimes[-1] >= t1 - 1.0:
        # the device's own counter, read at the window's edges, beats integrating samples
        found[f"{prefix}_energy_j"] = _interp(etimes, energy, t1) - _interp(etimes, energy, t0)
    if f"{prefix}_energy_j" in found:
        found[f"{prefix}_power_mean_w"] = found[f"{prefix}_energy_j"] / seconds
    window = _window(samples, t0, t1)
    for key, stat in (
        ("sm_clock_mhz", "mean"),
        ("mem_clock_mhz", "mean"),
        ("util_pct", "mean"),
        ("mem_used_mib", "max"),
        ("temp_c", "max"),
    ):
        per_sample = [
            sum(d[key] for d in r) / len(r) for r in window if r and all(key in d for d in r)
        ]
        if key == "mem_used_mib":
            per_sample = [sum(d[key] for d in r) for r in window if r and all(key in d for d in r)]
        if per_sample:
            value = max(per_sample) if stat == "max" else sum(per_sample) / len(per_sample)
            found[f"{prefix}_{key.removesuffix('_pct').removesuffix('_c')}_{stat}"] = value
    throttled = _throttled(window)
    if throttled:
        warnings.append(f"{prefix.upper()} throttled during the point: {throttled}")
    return found, warnings


def _interp(times: list[float], values: list[float], t: float) -> float:
    if t <= times[0]:
        return values[0]
    for i in range(1, len(times)):
        if t <= times[i]:
            w = (t - times[i - 1]) / (times[i] - times[i - 1]) if times[i] > times[i - 1] else 1.0
            return values[i - 1] + w * (values[i] - values[i - 1])
    return values[-1]


def _throttled(window: list[Reading]) -> str:
    """Which devices were held down and why, in words ('' when none was)."""
    seen: dict[int, int] = {}
    for reading in window:
        for index, dev in enumerate(reading):
            mask = int(dev.get("throttle_mask", 0))
            if mask:
                seen[index] = seen.get(index, 0) | mask
    parts = []
    for index, mask in sorted(seen.items()):
        why = [text for bit, text in NVML_THROTTLE.items() if mask & bit] or ["throttled"]
        parts.append(f"device {index} ({', '.join(why)})")
    return "; ".join(parts)


def efficiency(metrics: dict[str, float], client: dict[str, Any], prefix: str) -> dict[str, float]:
    """J per output token and output tokens/s per watt, from the window's energy and the client."""
    energy = metrics.get(f"{prefix}_energy_j")
    tokens = client.get("total_output_tokens")
    rate = client.get("output_throughput")
    power = metrics.get(f"{prefix}_power_mean_w")
    found: dict[str, float] = {}
    if energy and isinstance(tokens, int) and tokens > 0:
        found[f"{prefix}_energy_per_output_token_j"] = energy / tokens
    if power and isinstance(rate, (int, float)):
        found[f"{prefix}_output_throughput_per_watt"] = rate / power
    return found
