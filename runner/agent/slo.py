"""Service-level objectives on vLLM's latency statistics: parsing, --goodput, judging a point."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FAMILIES = ("ttft", "tpot", "itl", "e2el")
# vLLM's --goodput takes per-request thresholds for these families only (not itl)
GOODPUT_FAMILIES = ("ttft", "tpot", "e2el")
_NAME = re.compile(r"^(ttft|tpot|itl|e2el)_(mean|median|p(\d+(?:\.\d+)?))_ms$")

Slo = tuple[tuple[str, float], ...]  # (metric, limit in ms), in the order given


class SloError(ValueError):
    """A --slo that names something vLLM does not report, or a limit that is not one."""


def _stat_percentile(stat: str) -> float | None:
    return float(stat[1:]) if stat.startswith("p") else None


def parse_slo(text: str) -> Slo:
    """'ttft_p99_ms=500,tpot_p99_ms=50' -> (('ttft_p99_ms', 500.0), ('tpot_p99_ms', 50.0))."""
    items: list[tuple[str, float]] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        match = _NAME.match(name)
        if not sep or match is None:
            raise SloError(
                f"--slo: {item!r} is not METRIC=MS; METRIC is a family "
                f"({', '.join(FAMILIES)}), a stat (mean, median, pNN) and _ms, e.g. ttft_p99_ms=500"
            )
        percentile = _stat_percentile(match.group(2))
        if percentile is not None and not 0 < percentile < 100:
            raise SloError(f"--slo: {name}: the percentile must be between 0 and 100")
        try:
            limit = float(value)
        except ValueError:
            raise SloError(f"--slo: {name}={value!r}: the limit must be milliseconds") from None
        if not math.isfinite(limit) or limit <= 0:
            raise SloError(f"--slo: {name}={value}: the limit must be a positive number of ms")
        if any(name == seen for seen, _ in items):
            raise SloError(f"--slo: {name} is given twice")
        items.append((name, limit))
    if not items:
        raise SloError("--slo: give at least one METRIC=MS, such as ttft_p99_ms=500")
    return tuple(items)


def percentiles_needed(slo: Iterable[Sequence[Any]]) -> tuple[float, ...]:
    """The percentiles vLLM must be asked for (--metric-percentiles) to report the SLO's stats."""
    found: list[float] = []
    for name, _ in slo:
        match = _NAME.match(str(name))
        percentile = _stat_percentile(match.group(2)) if match else None
        if percentile is not None and percentile not in found:
            found.append(percentile)
    return tuple(found)


def goodput_args(slo: Iterable[Sequence[Any]]) -> list[str]:
    """vLLM's --goodput: per-request thresholds, the tightest limit given for each family."""
    limits: dict[str, float] = {}
    for name, limit in slo:
        family = str(name).split("_", 1)[0]
        if family in GOODPUT_FAMILIES:
            limits[family] = min(float(limit), limits.get(family, math.inf))
    if not limits:
        return []
    return [
        "--goodput",
        *(f"{family}:{limits[family]:g}" for family in GOODPUT_FAMILIES if family in limits),
    ]


def vllm_key(name: str) -> str:
    """The record's name (ttft_p99_ms) as vLLM's JSON spells it (p99_ttft_ms)."""
    match = _NAME.match(name)
    if match is None:
        return name
    family, stat = match.group(1), match.group(2)
    percentile = _stat_percentile(stat)
    if percentile is not None:
        stat = f"p{int(percentile)}" if int(percentile) == percentile else f"p{percentile}"
    return f"{stat}_{family}_ms"


def judge_slo(data: Mapping[str, Any] | None, slo: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """{"met": bool, "checks": [...]}: a metric vLLM did not report misses its limit."""
    checks: list[dict[str, Any]] = []
    for name, limit in slo:
        value = None if data is None else data.get(vllm_key(str(name)))
        number = float(value) if isinstance(value, (int, float)) else None
        met = number is not None and math.isfinite(number) and number <= float(limit)
        check: dict[str, Any] = {"metric": name, "limit": float(limit), "value": number, "met": met}
        if number is None:
            check["reason"] = "not in vLLM's result"
        checks.append(check)
    return {"met": bool(checks) and all(c["met"] for c in checks), "checks": checks}
