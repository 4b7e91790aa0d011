"""A comparison's results: both sides, each metric at each point compared, and the gate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from results.analysis.accuracy import AccuracyDelta
from results.analysis.stats import Summary
from results.errors import ResultsError
from results.model.schema import MetricInfo, Record, metric_info
from runner.rundir import OK

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
# a single run cannot tell a change this small from run-to-run noise; shown, not counted
SAME_WITHIN_PCT = 1.0

Verdict = Literal["better", "worse", "same"]

# the fields of Record.point_key, in order, as messages and the JSON output name them
POINT_FIELDS = (
    "scenario",
    "qps",
    "max_concurrency",
    "input_len",
    "output_len",
    "batch_size",
    "dataset",
    "endpoint",
    "prefix_len",
)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its name, where its records came from, and the records."""

    name: str
    source: str
    records: tuple[Record, ...]

    def __post_init__(self) -> None:
        if not self.records:
            raise ResultsError(f"{self.name} {self.source} holds no record: nothing to compare")

    @property
    def ok_records(self) -> list[Record]:
        return [r for r in self.records if r.verdict == OK]

    @property
    def config_label(self) -> str:
        labels = list(dict.fromkeys(r.config_label for r in self.records))
        return labels[0] if len(labels) == 1 else " | ".join(labels)

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.run_id for r in self.records))


@dataclass(frozen=True)
class MetricComparison:
    """One metric at one point: both sides' samples, their ratio, and what it means."""

    name: str
    baseline: Summary
    candidate: Summary
    p_value: float | None
    # why no test was made, when none was
    no_test: str | None = None

    def __post_init__(self) -> None:
        metric_info(self.name)  # an unknown name raises here, not halfway through a table

    @property
    def info(self) -> MetricInfo:
        return metric_info(self.name)

    @property
    def ratio(self) -> float | None:
        """candidate / baseline of the means; None when the baseline is 0 and the candidate not."""
        base, cand = self.baseline.mean, self.candidate.mean
        if base == 0.0:
            return 1.0 if cand == 0.0 else None
        return cand / base

    @property
    def change_pct(self) -> float | None:
        ratio = self.ratio
        return None if ratio is None else (ratio - 1.0) * 100.0

    @property
    def direction(self) -> Literal["higher", "lower", "unchanged"]:
        base, cand = self.baseline.mean, self.candidate.mean
        if cand == base:
            return "unchanged"
        return "higher" if cand > base else "lower"

    @property
    def significant(self) -> bool | None:
        """Whether the difference is significant at ALPHA; None when it could not be tested."""
        return None if self.p_value is None else self.p_value < ALPHA

    @property
    def improved(self) -> bool | None:
        """True if the candidate moved the better way, False the worse way, None if not at all."""
        if self.direction == "unchanged":
            return None
        return (self.direction == "higher") == (self.info.better == "higher")

    @property
    def worse_pct(self) -> float:
        """By how many percent the candidate is worse (negative when better; inf from zero)."""
        change = self.change_pct
        if change is None:
            return math.inf if self.improved is False else -math.inf
        return change if self.info.better == "lower" else -change

    @property
    def verdict(self) -> Verdict:
        change = self.change_pct
        if self.improved is None or (change is not None and abs(change) < SAME_WITHIN_PCT):
            return "same"
        if self.significant is False:
            return "same"
        return "better" if self.improved else "worse"

    @property
    def change_text(self) -> str:
        """The change in words: '3.5x lower', '12% higher', 'unchanged'."""
        if self.direction == "unchanged":
            return "unchanged"
        ratio = self.ratio
        if ratio is None:
            return f"{self.direction} (from 0)"
        if ratio <= 0.0:
            return f"{self.direction} (to 0)"
        factor = ratio if ratio > 1.0 else 1.0 / ratio
        if factor >= 2.0:
            return f"{factor:.3g}x {self.direction}"
        change = abs(ratio - 1.0) * 100.0
        if change < 0.1:
            return f"<0.1% {self.direction}"
        return (
            f"{change:.2g}% {self.direction}" if change < 10 else f"{change:.0f}% {self.direction}"
        )

    @property
    def reading(self) -> str:
        """The change and its meaning: '3.5x lower (better)', '4% higher (not significant)'."""
        if self.direction == "unchanged":
            return "unchanged"
        change = self.change_pct
        noticeable = change is None or abs(change) >= SAME_WITHIN_PCT
        if self.significant is False and noticeable:
            return f"{self.change_text} (not significant)"
        return f"{self.change_text} ({self.verdict})"


@dataclass(frozen=True)
class PointComparison:
    """Every compared metric at one load both sides ran."""

    label: str
    key: tuple[Any, ...]
    baseline_runs: tuple[str, ...]
    candidate_runs: tuple[str, ...]
    metrics: tuple[MetricComparison, ...]

    @property
    def repeats(self) -> str:
        """How many runs each side has here, and what that allows."""
        nb, nc = len(self.baseline_runs), len(self.candidate_runs)
        if nb == nc == 1:
            return "1 run each: no significance test"
        if nb < 2 or nc < 2:
            few = "baseline" if nb < 2 else "candidate"
            return f"{nb} vs {nc} runs: no significance test ({few} has 1 run)"
        return f"{nb} vs {nc} runs: mean ± {CONFIDENCE:.0%} CI, Welch's t-test"


@dataclass(frozen=True)
class Skipped:
    """A point of one side left out of the comparison, and why."""

    side: str
    run_id: str
    point_id: str
    label: str
    verdict: str
    reason: str
    key: tuple[Any, ...]


@dataclass(frozen=True)
class GateResult:
    """What `--fail-if-worse PCT` checked and what failed it."""

    threshold_pct: float
    checked: int
    points: int
    metrics: tuple[str, ...]
    offenders: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.offenders

    @property
    def description(self) -> str:
        outcome = "passed" if self.passed else f"{len(self.offenders)} regression(s)"
        return (
            f"gate --fail-if-worse {self.threshold_pct:g}%: {outcome}; checked "
            f"{self.checked} comparison(s) of {len(self.metrics)} metric(s) at {self.points} "
            f"point(s) ({', '.join(self.metrics)}) and the candidate's failed points"
        )


@dataclass(frozen=True)
class Comparison:
    """A baseline and a candidate compared at every load both ran."""

    baseline: Side
    candidate: Side
    metric_names: tuple[str, ...] | None
    points: tuple[PointComparison, ...]
    skipped: tuple[Skipped, ...]
    only_baseline: tuple[str, ...]
    only_candidate: tuple[str, ...]
    # accuracy points (lm-eval) both sides ran: each score's change with its interval
    accuracy: tuple[AccuracyDelta, ...] = ()

    def counts(self) -> dict[str, int]:
        found = {"better": 0, "worse": 0, "same": 0}
        for point in self.points:
            for metric in point.metrics:
                found[metric.verdict] += 1
        return found

    @property
    def summary(self) -> str:
        counts = self.counts()
        total = sum(counts.values())
        line = (
            f"{len(self.points)} point(s) compared, {total} metric comparison(s): "
            f"{counts['better']} better, {counts['worse']} worse, {counts['same']} same"
        )
        if self.accuracy:
            moved = [d.verdict for d in self.accuracy]
            line += (
                f"; accuracy: {len(moved)} score(s), {moved.count('better')} better, "
                f"{moved.count('worse')} worse, {moved.count('same')} same within the interval"
            )
        if self.skipped:
            line += f"; {len(self.skipped)} point(s) skipped"
        if self.only_baseline or self.only_candidate:
            line += f"; {len(self.only_baseline) + len(self.only_candidate)} point(s) unmatched"
        return line

    def gate(self, threshold_pct: float) -> GateResult:
        """Every compared metric worse by more than threshold_pct (significantly, if tested).

        A point the candidate failed at a load the baseline ran ok also fails the gate: a
        failed point is the worst regression there is.
        """
        if threshold_pct < 0 or math.isnan(threshold_pct):
            raise ResultsError(
                f"--fail-if-worse {threshold_pct:g} is negative: give a percentage such as 5"
            )
        offenders: list[str] = []
        checked = 0
        names: dict[str, None] = {}
        for point in self.points:
            for metric in point.metrics:
                checked += 1
                names[metric.name] = None
                if metric.worse_pct > threshold_pct and metric.significant is not False:
                    offenders.append(_offender_line(point, metric))
        base_ok = {r.point_key for r in self.baseline.ok_records}
        offenders += [
            f"{s.label}: the candidate's point {s.run_id}/{s.point_id} {s.verdict}, the "
            f"baseline's passed: {s.reason}"
            for s in self.skipped
            if s.side == "candidate" and s.key in base_ok
        ]
        return GateResult(threshold_pct, checked, len(self.points), tuple(names), tuple(offenders))


def number_text(value: float) -> str:
    """A mean or a half-width as tables and gate lines show it."""
    return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"


def _offender_line(point: PointComparison, metric: MetricComparison) -> str:
    unit = f" {metric.info.unit}" if metric.info.unit in ("ms", "s") else ""
    line = (
        f"{point.label}: {metric.info.label} {metric.change_text} (worse): "
        f"{number_text(metric.baseline.mean)} -> {number_text(metric.candidate.mean)}{unit}"
    )
    if metric.p_value is not None:
        line += f", p={p_text(metric.p_value)}"
    return line


def p_text(p: float) -> str:
    """A p-value as tables and gate lines show it."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"
