"""The serving scenario's --slo, --find-max-qps and --qps-tolerance flags, read and checked."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from runner.agent.slo import Slo, SloError, parse_slo, percentiles_needed
from runner.errors import PlanError

if TYPE_CHECKING:
    from runner.scenarios.serve import ServeParams


def slo_from(text: str | None) -> Slo:
    """--slo as (metric, limit) pairs; PlanError (exit 2) for what vLLM does not report."""
    if not text:
        return ()
    try:
        return parse_slo(text)
    except SloError as exc:
        raise PlanError(str(exc)) from None


def parse_tolerance(text: str) -> tuple[float, bool]:
    """--qps-tolerance: '5%' (a fraction of the rate) or '0.5' (req/s) -> (value, relative)."""
    item = text.strip()
    relative = item.endswith("%")
    try:
        value = float(item.rstrip("%"))
    except ValueError:
        raise PlanError(
            f"--qps-tolerance {text!r}: give a percentage of the rate (5%) or req/s (0.5)"
        ) from None
    if not (math.isfinite(value) and value > 0) or (relative and value >= 100):
        raise PlanError(f"--qps-tolerance {text!r}: must be positive (and a percentage below 100)")
    return (value / 100, True) if relative else (value, False)


def with_slo_percentiles(percentiles: tuple[float, ...], slo: Slo) -> tuple[float, ...]:
    """The SLO's percentiles are asked of vLLM too (--metric-percentiles), or it has none."""
    missing = [p for p in percentiles_needed(slo) if p not in percentiles]
    return tuple(sorted((*percentiles, *missing))) if missing else percentiles


def check_search(params: ServeParams) -> None:
    """--find-max-qps needs an SLO and two finite rates to search between."""
    if not params.find_max_qps:
        return
    if not params.slo:
        raise PlanError("--find-max-qps searches for the highest rate meeting an SLO: give --slo")
    finite = [q for q in params.qps if math.isfinite(q)]
    if len(finite) < 2:
        raise PlanError(
            "--find-max-qps searches between the lowest and highest --qps rate: give two "
            "finite rates, such as --qps 1,16"
        )
    if params.dataset == "sonnet":
        raise PlanError(
            "--find-max-qps with --dataset sonnet is not supported yet: the prompts are "
            "written per planned point; use random or sharegpt"
        )
    if not (math.isfinite(params.qps_tolerance) and params.qps_tolerance > 0):
        raise PlanError(f"--qps-tolerance {params.qps_tolerance:g}: must be positive")
