"""Accuracy as text: each point's lm-eval scores (show), and each score's change (compare)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from results.analysis.accuracy import INTERVAL_TEXT, Z95, AccuracyDelta, scores
from results.model.run_ids import short_run_ids
from results.model.schema import Record
from runner.rundir import OK


def _samples(value: int | None) -> str:
    return "-" if value is None else str(value)


def scores_table(records: Sequence[Record], tablefmt: str = "simple") -> str | None:
    """One row per task and metric of each ok accuracy point; None when there is none."""
    runs = short_run_ids([r.run_id for r in records])
    rows = []
    for record in records:
        for (task, metric), score in scores([record]).items():
            rows.append([runs[record.run_id], task, metric, score.text(), _samples(score.samples)])
    if not rows:
        return None
    table = tabulate(
        rows,
        headers=["run", "task", "metric", f"score ± {Z95}·stderr", "samples"],
        tablefmt=tablefmt,
        disable_numparse=True,
    )
    return f"accuracy (lm-eval; ± {Z95} x its standard error, 95%):\n{table}"


def delta_table(deltas: Sequence[AccuracyDelta], tablefmt: str = "simple") -> str:
    """Each score both sides have: baseline, candidate, the change ± its 95% interval."""
    rows = [
        [
            d.task,
            d.metric,
            d.baseline.text(),
            d.candidate.text(),
            d.change_text(),
            d.verdict,
            f"{_samples(d.baseline.samples)}/{_samples(d.candidate.samples)}",
        ]
        for d in deltas
    ]
    table = tabulate(
        rows,
        headers=["task", "metric", "baseline", "candidate", "change ± 95%", "verdict", "samples"],
        tablefmt=tablefmt,
        disable_numparse=True,
    )
    return f"{INTERVAL_TEXT}\n{table}"


def _speed(records: Sequence[Record]) -> tuple[str, str]:
    """Peak output tokens/s and the lowest TPOT median of a configuration's ok serving points."""
    serve = [r for r in records if r.scenario == "serve" and r.verdict == OK]
    peak = [v for r in serve if (v := r.metric("output_throughput")) is not None]
    tpot = [v for r in serve if (v := r.metric("tpot_median_ms")) is not None]
    return (f"{max(peak):.2f}" if peak else "-", f"{min(tpot):.2f}" if tpot else "-")


def accuracy_vs_speed(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Each configuration's scores beside its serving speed, one table per set of tasks scored.

    Grouped by tasks rather than by model name: a quantized checkpoint is a model directory of
    its own, and its row belongs beside the model it was made from.
    """
    configs: dict[tuple[Any, ...], list[Record]] = {}
    for record in records:
        configs.setdefault(record.config_key, []).append(record)
    by_tasks: dict[tuple[str, ...], list[tuple[list[Record], dict[tuple[str, str], Any]]]] = {}
    for recs in sorted(configs.values(), key=lambda rs: (rs[0].model, rs[0].config_label)):
        found = scores(recs)
        if found:
            tasks = tuple(sorted({task for task, _ in found}))
            by_tasks.setdefault(tasks, []).append((recs, found))
    views = []
    for tasks, group in sorted(by_tasks.items()):
        columns = sorted({name for _, found in group for name in found})
        rows = []
        for recs, found in group:
            peak, tpot = _speed(recs)
            cells = [found[c].text() if c in found else "-" for c in columns]
            label = recs[0].config_label
            rows.append({"label": label, "peak": peak, "tpot": tpot, "scores": cells})
        models = sorted({recs[0].model for recs, _ in group})
        views.append(
            {
                "title": ", ".join(tasks),
                "models": ", ".join(models),
                "columns": [f"{t} {m}" for t, m in columns],
                "rows": rows,
            }
        )
    return views
