"""--find-max-qps: the highest request rate whose point meets the SLO, by bounded bisection."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..rundir import PointJob, raw_result

NONE = "none"  # even the lowest rate misses the SLO
ABOVE_RANGE = "above the range"  # even the highest rate meets it
FOUND = "found"
MAX_STEPS = 12  # bisection steps at most, whatever the tolerance


@dataclass(frozen=True)
class SearchSpec:
    """The range, the tolerance (a fraction of the rate, or req/s) and the prompts per probe."""

    low: float
    high: float
    tolerance: float
    relative: bool = True
    num_prompts: int | None = None  # fixed prompts per probe, else seconds_per_point x rate
    seconds_per_point: float | None = None

    def __post_init__(self) -> None:
        if not (0 < self.low < self.high and math.isfinite(self.high)):
            raise ValueError(f"the search range {self.low:g}..{self.high:g} is not low < high")
        if not self.tolerance > 0:
            raise ValueError("the tolerance must be positive")

    @property
    def max_probes(self) -> int:
        """Both ends, then as many halvings as the tolerance needs (at most MAX_STEPS)."""
        step = self.tolerance * self.low if self.relative else self.tolerance
        steps = max(0, math.ceil(math.log2((self.high - self.low) / step)))
        return 2 + min(MAX_STEPS, steps)

    def close_enough(self, met: float, missed: float) -> bool:
        gap = missed - met
        return gap <= (self.tolerance * met if self.relative else self.tolerance)

    def prompts_for(self, rate: float) -> int:
        if self.num_prompts is not None:
            return self.num_prompts
        return max(1, round((self.seconds_per_point or 120.0) * rate))

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "tolerance": self.tolerance,
            "relative": self.relative,
            "num_prompts": self.num_prompts,
            "seconds_per_point": self.seconds_per_point,
            "max_probes": self.max_probes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpec:
        prompts, seconds = data.get("num_prompts"), data.get("seconds_per_point")
        return cls(
            low=float(data["low"]),
            high=float(data["high"]),
            tolerance=float(data["tolerance"]),
            relative=bool(data.get("relative", True)),
            num_prompts=None if prompts is None else int(prompts),
            seconds_per_point=None if seconds is None else float(seconds),
        )


Probe = tuple[float, bool]  # (rate, met the SLO)


def _bracket(probes: Sequence[Probe]) -> tuple[float | None, float | None]:
    """The highest rate that met and the lowest that missed, of those probed."""
    met = [rate for rate, ok in probes if ok]
    missed = [rate for rate, ok in probes if not ok]
    return (max(met) if met else None), (min(missed) if missed else None)


def next_rate(spec: SearchSpec, probes: Sequence[Probe]) -> float | None:
    """The next rate to probe, or None when the search is over."""
    if len(probes) >= spec.max_probes:
        return None
    if not probes:
        return spec.low
    if len(probes) == 1:
        return spec.high if probes[0][1] else None  # the lowest misses: nothing will meet
    met, missed = _bracket(probes)
    if missed is None or met is None or met >= missed or spec.close_enough(met, missed):
        return None
    return round((met + missed) / 2, 3)


def outcome(spec: SearchSpec, probes: Sequence[Probe]) -> dict[str, Any]:
    """The answer: the highest rate that met (found / above the range), or none."""
    met, missed = _bracket(probes)
    if met is None:
        result, max_qps = NONE, None
    elif missed is None:
        result, max_qps = ABOVE_RANGE, met
    else:
        result, max_qps = FOUND, met
    return {
        "result": result,
        "max_qps": max_qps,
        "lowest_missed": missed,
        "probe_count": len(probes),
        "within_tolerance": (
            met is not None and missed is not None and spec.close_enough(met, missed)
        ),
    }


def search(spec: SearchSpec, measure: Callable[[float], bool]) -> dict[str, Any]:
    """Probe rates until the answer is within the tolerance or the budget is spent."""
    probes: list[Probe] = []
    rate = next_rate(spec, probes)
    while rate is not None:
        probes.append((rate, measure(rate)))
        rate = next_rate(spec, probes)
    return {**outcome(spec, probes), "rates": [rate for rate, _ in probes]}


def probe_id(index: int, rate: float) -> str:
    return f"search-{index}-qps{rate:g}"


def _set(argv: list[str], flag: str, value: str) -> None:
    argv[argv.index(flag) + 1] = value


def probe_point(template: PointJob, index: int, rate: float, prompts: int) -> PointJob:
    """The template's command at another rate and prompt count, under the probe's own name."""
    point = probe_id(index, rate)
    argv = list(template.argv)
    _set(argv, "--request-rate", f"{rate:g}")
    _set(argv, "--num-prompts", str(prompts))
    _set(argv, "--result-filename", f"{point}.json")
    argv = [f"point={point}" if a == f"point={template.id}" else a for a in argv]
    return replace(template, id=point, argv=tuple(argv), result=raw_result(point), expected=prompts)


def spec_from_serve(serve: Mapping[str, Any]) -> SearchSpec | None:
    """run.json's serve section -> the search it asks for (None without --find-max-qps)."""
    if not serve.get("find_max_qps"):
        return None
    rates = [float(q) for q in serve.get("qps") or [] if q != "inf" and math.isfinite(float(q))]
    return SearchSpec(
        low=min(rates),
        high=max(rates),
        tolerance=float(serve.get("qps_tolerance") or 0.05),
        relative=bool(serve.get("qps_tolerance_relative", True)),
        num_prompts=serve.get("num_prompts"),
        seconds_per_point=serve.get("seconds_per_point"),
    )


def run(
    spec: SearchSpec,
    first: PointJob,
    measure: Callable[[PointJob], bool],
    state: dict[str, Any],
) -> dict[str, Any]:
    """Probe from the planned first point on; `state` (status.json's "search") stays current."""
    state.update(spec=spec.to_dict(), probes=[], result=None, max_qps=None)
    made: list[Probe] = []
    rate = next_rate(spec, made)
    while rate is not None:
        index = len(made) + 1
        point = first if index == 1 else probe_point(first, index, rate, spec.prompts_for(rate))
        met = measure(point)
        made.append((rate, met))
        state["probes"].append(
            {
                "id": point.id,
                "scenario": "serve",
                "qps": rate,
                "num_prompts": point.expected,
                "met": met,
            }
        )
        rate = next_rate(spec, made)
    state.update(outcome(spec, made))
    return state


def rate_of(point: PointJob) -> float:
    """The request rate a point's command asks for."""
    return float(point.argv[list(point.argv).index("--request-rate") + 1])


def summary(state: Mapping[str, Any]) -> dict[str, Any]:
    """What the search_finished event says."""
    keys = ("result", "max_qps", "lowest_missed", "probe_count")
    return {key: state.get(key) for key in keys}


def describe(spec: SearchSpec) -> str:
    """The search in words, for --dry-run: what the agent will probe after the planned point."""
    tolerance = (
        f"{spec.tolerance * 100:g}% of the rate" if spec.relative else f"{spec.tolerance:g} req/s"
    )
    return (
        f"--find-max-qps: the point above probes {spec.low:g} req/s; if it meets the SLO the agent "
        f"probes {spec.high:g}, then bisects between the highest rate that met and the lowest "
        f"that missed to within {tolerance}, at most {spec.max_probes} probes in all, each "
        "search-<n>-qps<rate>: this command at its rate"
    )
