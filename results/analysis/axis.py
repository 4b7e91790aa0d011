"""Two values of one matrix axis within a sweep: the configurations that differ only in that
axis, paired, each pair two comparison sides."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from results.analysis.comparison import Side
from results.errors import ResultsError
from results.model.schema import Record
from results.model.sweeps import Sweep


@dataclass(frozen=True)
class AxisPair:
    """The configurations with `key` at the baseline and the candidate value, the rest equal."""

    others: dict[str, Any]
    baseline: Side
    candidate: Side

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.baseline, self.candidate

    @property
    def label(self) -> str:
        return (
            ", ".join(f"{k}={value_text(v)}" for k, v in self.others.items()) or "(no other axis)"
        )


def value_text(value: Any) -> str:
    """A matrix value as a flag would give it: none for unset, inf, 1, fp8."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    if isinstance(value, list):
        return ",".join(value_text(v) for v in value)
    return str(value)


def _same(value: Any, given: str) -> bool:
    return value_text(value).lower() == given.strip().lower()


def matrix_key(matrix: dict[str, Any]) -> str:
    """Matrix values as one comparable text."""
    return json.dumps(matrix, sort_keys=True, default=str)


def axis_pairs(
    sweep: Sweep, records: Iterable[Record], key: str, values: Sequence[str]
) -> list[AxisPair]:
    """Each pair of configurations of `sweep` that differ only in `key`, baseline at values[0]
    and candidate at values[1], with their records; ResultsError if there is none."""
    axes = sweep.axes()
    if key not in axes:
        raise ResultsError(
            f"{key!r} is not a matrix axis of {sweep.name}: its axes are "
            f"{', '.join(axes) or '(none)'}"
        )
    present = ", ".join(value_text(v) for v in axes[key])
    for given in values:
        if not any(_same(v, given) for v in axes[key]):
            raise ResultsError(f"{sweep.name} has no {key}={given}: its values are {present}")
    by_matrix: dict[str, list[Record]] = {}
    for record in records:
        if record.sweep == sweep.name:
            by_matrix.setdefault(matrix_key(record.matrix), []).append(record)
    configs = [dict(e["varying"]) for e in sweep.configurations]
    pairs = []
    for base in configs:
        if not _same(base.get(key), values[0]):
            continue
        others = {k: v for k, v in base.items() if k != key}
        for cand in configs:
            if (
                _same(cand.get(key), values[1])
                and {k: v for k, v in cand.items() if k != key} == others
            ):
                pairs.append(_pair(key, values, others, by_matrix, base, cand))
    found = [p for p in pairs if p is not None]
    if not found:
        raise ResultsError(
            f"no configurations of {sweep.name} with {key}={values[0]} and {key}={values[1]} "
            "that differ only in it and both have records"
        )
    return found


def _pair(
    key: str,
    values: Sequence[str],
    others: dict[str, Any],
    by_matrix: dict[str, list[Record]],
    base: dict[str, Any],
    cand: dict[str, Any],
) -> AxisPair | None:
    base_records, cand_records = by_matrix.get(matrix_key(base)), by_matrix.get(matrix_key(cand))
    if not base_records or not cand_records:
        return None
    where = ", ".join(f"{k}={value_text(v)}" for k, v in others.items())
    suffix = f" ({where})" if where else ""
    return AxisPair(
        others,
        Side("baseline", f"{key}={values[0]}{suffix}", tuple(base_records)),
        Side("candidate", f"{key}={values[1]}{suffix}", tuple(cand_records)),
    )
