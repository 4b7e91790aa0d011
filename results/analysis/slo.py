"""--find-max-qps answers, one per run that searched: the highest rate meeting its SLO."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from results.model.schema import Record

FOUND, NONE, ABOVE_RANGE = "found", "none", "above the range"  # the agent's search results


@dataclass(frozen=True)
class SearchAnswer:
    """A run's search: its configuration, SLO, answer and how many probes it took."""

    run_id: str
    config_label: str
    slo: str  # "ttft_p99_ms <= 500, tpot_p99_ms <= 50"
    result: str | None  # FOUND, NONE, ABOVE_RANGE; None for a search that did not finish
    max_qps: float | None
    lowest_missed: float | None
    probes: int

    @property
    def cell(self) -> str:
        """The answer in a table cell: '4.5', 'none', '>= 9' or '?'."""
        if self.result == NONE:
            return "none"
        if self.max_qps is None:
            return "?"
        return f">= {self.max_qps:g}" if self.result == ABOVE_RANGE else f"{self.max_qps:g}"

    def describe(self) -> str:
        """One line: 'max QPS under SLO (ttft_p99_ms <= 500 ms): 4.5 req/s ...'."""
        head = f"max QPS under SLO ({self.slo}): "
        if self.result == NONE:
            rate = "" if self.lowest_missed is None else f" ({self.lowest_missed:g} req/s)"
            body = f"none: even the lowest rate{rate} misses it"
        elif self.result == ABOVE_RANGE and self.max_qps is not None:
            body = f"above the range: the highest rate, {self.max_qps:g} req/s, meets it"
        elif self.result == FOUND and self.max_qps is not None:
            missed = "" if self.lowest_missed is None else f", {self.lowest_missed:g} misses"
            body = f"{self.max_qps:g} req/s{missed}"
        else:
            body = "the search did not finish"
        return f"{head}{body} ({self.probes} probes; {self.config_label}, run {self.run_id})"


def _slo_text(slo: Any) -> str:
    if not isinstance(slo, list):
        return "?"
    pairs = [p for p in slo if isinstance(p, list | tuple) and len(p) == 2]
    return ", ".join(f"{name} <= {float(limit):g} ms" for name, limit in pairs) or "?"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def search_answers(records: Iterable[Record]) -> list[SearchAnswer]:
    """One answer per run whose records carry a search, in the records' order."""
    answers: dict[str, SearchAnswer] = {}
    for rec in records:
        found = rec.search
        if not found or rec.run_id in answers:
            continue
        probes = found.get("probes")
        answers[rec.run_id] = SearchAnswer(
            run_id=rec.run_id,
            config_label=rec.config_label,
            slo=_slo_text(found.get("slo")),
            result=found.get("result") if isinstance(found.get("result"), str) else None,
            max_qps=_number(found.get("max_qps")),
            lowest_missed=_number(found.get("lowest_missed")),
            probes=len(probes) if isinstance(probes, list) else 0,
        )
    return list(answers.values())
