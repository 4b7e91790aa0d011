"""Accuracy beside speed: each side's lm-eval scores, and the candidate's change with its interval.

The change of a score is candidate - baseline, with a 95% interval of +- 1.96 x the combined
standard error sqrt(se_b^2 + se_c^2), lm-eval's stderr of each side taken as independent. On
the same documents the two are correlated, so this interval is conservative (wider than a
paired one). Repeated runs of one side pool: the mean score, its stderr sqrt(sum se^2) / k.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from results.model.accuracy import ACCURACY, parse_score_name, score_name
from results.model.schema import Record
from runner.rundir import OK

Z95 = 1.96
INTERVAL_TEXT = (
    "accuracy change = candidate - baseline ± 1.96 x sqrt(se_b² + se_c²) (95%, lm-eval's standard "
    "errors taken as independent: conservative on the same documents)"
)
AccVerdict = Literal["better", "worse", "same", "untested"]


@dataclass(frozen=True)
class Score:
    """One side's estimate of one task's metric."""

    value: float
    stderr: float | None
    runs: int
    samples: int | None  # documents scored, from the first run

    def text(self) -> str:
        if self.stderr is None:
            return f"{self.value:.4f}"
        return f"{self.value:.4f} ± {Z95 * self.stderr:.4f}"


@dataclass(frozen=True)
class AccuracyDelta:
    """A task's metric on both sides: the change and its 95% interval."""

    task: str
    metric: str
    baseline: Score
    candidate: Score
    higher_is_better: bool

    @property
    def change(self) -> float:
        return self.candidate.value - self.baseline.value

    @property
    def half_width(self) -> float | None:
        """1.96 x the combined standard error; None when a side has no stderr."""
        base, cand = self.baseline.stderr, self.candidate.stderr
        if base is None or cand is None:
            return None
        return Z95 * math.sqrt(base * base + cand * cand)

    @property
    def verdict(self) -> AccVerdict:
        """Better or worse only when the interval excludes no change."""
        width = self.half_width
        if width is None:
            return "untested"
        if abs(self.change) <= width:
            return "same"
        return "better" if (self.change > 0) == self.higher_is_better else "worse"

    def change_text(self) -> str:
        width = self.half_width
        text = f"{self.change:+.4f}"
        return text if width is None else f"{text} ± {width:.4f}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metric": self.metric,
            "baseline": _score_dict(self.baseline),
            "candidate": _score_dict(self.candidate),
            "change": self.change,
            "interval_95": self.half_width,
            "verdict": self.verdict,
        }


def _score_dict(score: Score) -> dict[str, Any]:
    return {
        "value": score.value,
        "stderr": score.stderr,
        "runs": score.runs,
        "samples": score.samples,
    }


def _samples(record: Record, task: str) -> int | None:
    details = record.extra.get(ACCURACY)
    tasks = details.get("tasks") if isinstance(details, dict) else None
    entry = tasks.get(task) if isinstance(tasks, dict) else None
    value = entry.get("samples") if isinstance(entry, dict) else None
    return value if isinstance(value, int) else None


def scores(records: Iterable[Record]) -> dict[tuple[str, str], Score]:
    """Every task's score of these records (ok accuracy points), repeats pooled."""
    values: dict[tuple[str, str], list[tuple[float, float | None, int | None]]] = {}
    for record in records:
        if record.scenario != ACCURACY or record.verdict != OK:
            continue
        for name, value in record.metrics.items():
            parts = parse_score_name(name)
            if parts is None or parts.stderr:
                continue
            stderr = record.metrics.get(score_name(parts.task, parts.metric, stderr=True))
            key = (parts.task, parts.metric)
            values.setdefault(key, []).append((value, stderr, _samples(record, parts.task)))
    pooled: dict[tuple[str, str], Score] = {}
    for key, found in values.items():
        runs = len(found)
        errors = [e for _, e, _ in found]
        stderr = (
            None
            if any(e is None for e in errors)
            else math.sqrt(sum(e * e for e in errors if e is not None)) / runs
        )
        pooled[key] = Score(sum(v for v, _, _ in found) / runs, stderr, runs, found[0][2])
    return dict(sorted(pooled.items()))


def accuracy_deltas(
    baseline: Sequence[Record], candidate: Sequence[Record]
) -> tuple[AccuracyDelta, ...]:
    """The change of every task's metric both sides scored."""
    base, cand = scores(baseline), scores(candidate)
    deltas = []
    for key in sorted(set(base) & set(cand)):
        task, metric = key
        parts = parse_score_name(score_name(task, metric))
        higher = parts is None or parts.better == "higher"
        deltas.append(AccuracyDelta(task, metric, base[key], cand[key], higher))
    return tuple(deltas)
