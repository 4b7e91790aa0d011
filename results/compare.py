"""Compare a baseline's records with a candidate's, point by point and metric by metric."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tabulate import tabulate

from results.errors import ResultsError
from results.formats import short_run_ids
from results.query import Filter, field_text, load_records
from results.schema import (
    HEADLINE_METRICS,
    LATENCIES,
    OK,
    MetricInfo,
    Record,
    format_rate,
    latency_name,
    metric_info,
)
from results.stats import Summary, welch_test

HEADLINE_STATS = ("mean", "median", "p99")
CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
# a single run cannot tell a change this small from run-to-run noise; shown, not counted
SAME_WITHIN_PCT = 1.0
FORMATS = ("table", "json", "markdown")

Verdict = Literal["better", "worse", "same"]
SCENARIO_ORDER = {"serve": 0, "latency": 1, "throughput": 2}

# the fields of Record.config_key and Record.point_key, in order, as messages name them
_CONFIG_FIELDS = (
    "vendor",
    "gpu",
    "model",
    "image",
    "vllm",
    "dtype",
    "quantization",
    "kv_cache_dtype",
    "tp",
    "engine_args",
)
_POINT_FIELDS = (
    "scenario",
    "qps",
    "max_concurrency",
    "input_len",
    "output_len",
    "batch_size",
    "dataset",
)


def parse_metrics(text: str | None) -> tuple[str, ...] | None:
    """The metrics a comparison looks at: None for every one, the headline set by default.

    `text` is a comma list of normalised names (tpot_median_ms), latency families (tpot:
    its mean, median and p99), `headline`, or `all`.
    """
    if text is None or text.strip() in ("", "headline"):
        return HEADLINE_METRICS
    if text.strip() == "all":
        return None
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name == "headline":
            names += HEADLINE_METRICS
        elif name in LATENCIES:
            names += [latency_name(name, stat) for stat in HEADLINE_STATS]
        else:
            metric_info(name)  # raises, naming the metrics there are
            names.append(name)
    if not names:
        raise ResultsError("--metrics names no metric: give e.g. tpot,output_throughput or all")
    return tuple(dict.fromkeys(names))


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.name,
            "label": self.info.label,
            "unit": self.info.unit,
            "better": self.info.better,
            "baseline": _summary_dict(self.baseline),
            "candidate": _summary_dict(self.candidate),
            "ratio": self.ratio,
            "change_pct": self.change_pct,
            "direction": self.direction,
            "change": self.change_text,
            "verdict": self.verdict,
            "p_value": self.p_value,
            "significant": self.significant,
            "no_test": self.no_test,
        }


def _summary_dict(summary: Summary) -> dict[str, Any]:
    interval = summary.interval
    return {
        "n": summary.n,
        "mean": summary.mean,
        "std": summary.std,
        "ci_low": None if interval is None else interval[0],
        "ci_high": None if interval is None else interval[1],
        "values": list(summary.values),
    }


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "run_id": self.run_id,
            "point_id": self.point_id,
            "point": self.label,
            "verdict": self.verdict,
            "reason": self.reason,
        }


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "fail_if_worse_pct": self.threshold_pct,
            "checked": self.checked,
            "points": self.points,
            "metrics": list(self.metrics),
            "passed": self.passed,
            "offenders": list(self.offenders),
        }

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": _side_dict(self.baseline),
            "candidate": _side_dict(self.candidate),
            "confidence": CONFIDENCE,
            "alpha": ALPHA,
            "same_within_pct": SAME_WITHIN_PCT,
            "metrics": list(self.metric_names) if self.metric_names is not None else "all",
            "points": [
                {
                    "point": point.label,
                    "key": dict(zip(_POINT_FIELDS, point.key, strict=True)),
                    "baseline_runs": list(point.baseline_runs),
                    "candidate_runs": list(point.candidate_runs),
                    "repeats": point.repeats,
                    "metrics": [m.to_dict() for m in point.metrics],
                }
                for point in self.points
            ],
            "skipped": [s.to_dict() for s in self.skipped],
            "only_baseline": list(self.only_baseline),
            "only_candidate": list(self.only_candidate),
            "summary": {**self.counts(), "points": len(self.points), "text": self.summary},
        }


def _side_dict(side: Side) -> dict[str, Any]:
    return {
        "source": side.source,
        "config": side.config_label,
        "runs": list(side.run_ids),
        "records": len(side.records),
    }


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"


def _offender_line(point: PointComparison, metric: MetricComparison) -> str:
    unit = f" {metric.info.unit}" if metric.info.unit in ("ms", "s") else ""
    line = (
        f"{point.label}: {metric.info.label} {metric.change_text} (worse): "
        f"{_number(metric.baseline.mean)} -> {_number(metric.candidate.mean)}{unit}"
    )
    if metric.p_value is not None:
        line += f", p={_p_text(metric.p_value)}"
    return line


def _p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _config_fields(record: Record) -> dict[str, Any]:
    return dict(zip(_CONFIG_FIELDS, record.config_key, strict=True))


def _value_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return " ".join(value) if value else "(none)"
    if isinstance(value, float):
        return format_rate(value)
    return str(value)


def _differences(
    groups: Sequence[Iterable[dict[str, Any]]], fields: Sequence[str], sep: str
) -> list[str]:
    """'dtype (bfloat16, float16)' for each field whose values differ between the groups."""
    found: list[str] = []
    for name in fields:
        per_group = [
            sorted({_value_text(row[name]) for row in group}, key=_natural) for group in groups
        ]
        if len(groups) == 1:
            if len(per_group[0]) > 1:
                found.append(f"{name} ({', '.join(per_group[0])})")
        elif per_group[0] != per_group[1]:
            found.append(f"{name} ({sep.join(','.join(values) for values in per_group)})")
    return found


def _natural(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _check_one_configuration(side: Side) -> None:
    configs = {r.config_key: r for r in side.records}
    if len(configs) < 2:
        return
    differing = _differences([[_config_fields(r) for r in configs.values()]], _CONFIG_FIELDS, "")
    raise ResultsError(
        f"{side.name} {side.source} mixes {len(configs)} configurations that differ in "
        f"{'; '.join(differing)}: narrow it to one with a filter or --where "
        "(e.g. precision=fp8), so repeats of one configuration pool together"
    )


def _point_text(record: Record) -> str:
    """The load in words, with its prompt lengths: 'serve @ 4 QPS, 128/32 tokens'."""
    label = record.point_label
    if record.input_len is not None or record.output_len is not None:
        label += f", {_value_text(record.input_len)}/{_value_text(record.output_len)} tokens"
    if record.dataset and record.dataset != "random":
        label += f", {record.dataset}"
    return label


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    scenario, qps = key[0], key[1]
    rate = math.inf if qps == "inf" else (qps if isinstance(qps, float | int) else -1.0)
    rest = tuple(_value_text(v) for v in key[2:])
    return (SCENARIO_ORDER.get(scenario, 9), scenario, rate, rest)


def _by_point(records: Iterable[Record]) -> dict[tuple[Any, ...], list[Record]]:
    groups: dict[tuple[Any, ...], list[Record]] = {}
    for record in records:
        groups.setdefault(record.point_key, []).append(record)
    return groups


def _side_loads(records: Sequence[Record]) -> str:
    """Every load of a side in words: 'serve @ 2,4,8 QPS with 128/32 tokens; latency batch 4'."""
    groups: dict[tuple[Any, ...], list[Record]] = {}
    for record in sorted(records, key=lambda r: _sort_key(r.point_key)):
        rest = (record.scenario, *record.point_key[2:])
        groups.setdefault(rest, []).append(record)
    parts: list[str] = []
    for group in groups.values():
        first = group[0]
        if first.scenario == "serve":
            rates = ",".join(dict.fromkeys(format_rate(r.qps) for r in group))
            text = f"serve @ {rates} QPS"
            if first.max_concurrency:
                text += f", concurrency {first.max_concurrency}"
        else:
            text = first.point_label
        text += f" with {_value_text(first.input_len)}/{_value_text(first.output_len)} tokens"
        if first.dataset and first.dataset != "random":
            text += f" ({first.dataset})"
        parts.append(text)
    return "; ".join(parts)


def _no_match_message(baseline: Side, candidate: Side) -> str:
    base, cand = baseline.ok_records, candidate.ok_records
    for side, ok in ((baseline, base), (candidate, cand)):
        if not ok:
            first = side.records[0]
            why = "; ".join(first.reasons) or "no reason recorded"
            return (
                f"{side.name} {side.source} has no ok point ({len(side.records)} point(s), "
                f"e.g. {first.run_id}/{first.point_id} {first.verdict}: {why}): "
                "nothing to compare; re-run it"
            )
    rows = [
        [dict(zip(_POINT_FIELDS, r.point_key, strict=True)) for r in recs] for recs in (base, cand)
    ]
    differing = _differences(rows, _POINT_FIELDS, " vs ")
    return (
        f"no point in common: baseline has {_side_loads(base)}; candidate has "
        f"{_side_loads(cand)}; they differ in {', '.join(differing) or 'nothing visible'}: "
        "compare runs of the same load (scenario, QPS, concurrency, input/output lengths, "
        "batch size, dataset)"
    )


def _compare_metric(
    name: str, base: Sequence[Record], cand: Sequence[Record]
) -> MetricComparison | None:
    base_values = tuple(v for r in base if (v := r.metric(name)) is not None)
    cand_values = tuple(v for r in cand if (v := r.metric(name)) is not None)
    if not base_values or not cand_values:
        return None
    p_value: float | None = None
    no_test: str | None = None
    if len(base_values) > 1 and len(cand_values) > 1:
        p_value = welch_test(base_values, cand_values).p_value
    else:
        no_test = f"{len(base_values)} vs {len(cand_values)} run(s): no significance test"
    return MetricComparison(
        name=name,
        baseline=Summary(base_values, CONFIDENCE),
        candidate=Summary(cand_values, CONFIDENCE),
        p_value=p_value,
        no_test=no_test,
    )


def _metric_order(names: Iterable[str]) -> list[str]:
    rank = {name: index for index, name in enumerate(HEADLINE_METRICS)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def compare(
    baseline: Side, candidate: Side, metrics: Sequence[str] | None = HEADLINE_METRICS
) -> Comparison:
    """Compare at every load both sides ran ok; `metrics` None compares every metric."""
    for side in (baseline, candidate):
        _check_one_configuration(side)
    skipped = tuple(
        Skipped(
            side.name,
            r.run_id,
            r.point_id,
            _point_text(r),
            r.verdict,
            "; ".join(r.reasons) or "no reason recorded",
            r.point_key,
        )
        for side in (baseline, candidate)
        for r in side.records
        if r.verdict != OK
    )
    base_points = _by_point(baseline.ok_records)
    cand_points = _by_point(candidate.ok_records)
    shared = sorted(set(base_points) & set(cand_points), key=_sort_key)
    if not shared:
        raise ResultsError(_no_match_message(baseline, candidate))

    points: list[PointComparison] = []
    for key in shared:
        base, cand = base_points[key], cand_points[key]
        if metrics is None:
            names = _metric_order(
                {n for r in base for n in r.metrics} & {n for r in cand for n in r.metrics}
            )
        else:
            names = list(metrics)
        compared = tuple(
            m for name in names if (m := _compare_metric(name, base, cand)) is not None
        )
        points.append(
            PointComparison(
                label=_point_text(base[0]),
                key=key,
                baseline_runs=tuple(dict.fromkeys(r.run_id for r in base)),
                candidate_runs=tuple(dict.fromkeys(r.run_id for r in cand)),
                metrics=compared,
            )
        )
    if metrics is not None:
        seen = {m.name for p in points for m in p.metrics}
        unseen = [name for name in metrics if name not in seen]
        # a gate over a metric neither side reported would pass without checking anything;
        # the headline set is only a default (a latency run has no TTFT), names asked for are not
        if unseen and metrics != HEADLINE_METRICS:
            raise ResultsError(
                f"metric(s) {', '.join(unseen)} reported by both sides at no shared point: "
                "choose from the metrics the points report (--metrics all lists them)"
            )
        if not seen:
            raise ResultsError(
                "no headline metric is reported by both sides at any shared point: "
                "use --metrics all"
            )

    def only(mine: dict[tuple[Any, ...], list[Record]], other: dict[Any, Any]) -> tuple[str, ...]:
        return tuple(_point_text(mine[k][0]) for k in sorted(set(mine) - set(other), key=_sort_key))

    return Comparison(
        baseline=baseline,
        candidate=candidate,
        metric_names=tuple(metrics) if metrics is not None else None,
        points=tuple(points),
        skipped=skipped,
        only_baseline=only(base_points, cand_points),
        only_candidate=only(cand_points, base_points),
    )


# --- the sides, from paths or filters --------------------------------------------------------


def _present(records: Iterable[Record], keys: Iterable[str]) -> str:
    parts = []
    for key in dict.fromkeys(keys):
        values = sorted({field_text(r, key) or "-" for r in records}, key=_natural)
        parts.append(f"{key} values present: {', '.join(values)}")
    return "; ".join(parts)


def looks_like_filter(spec: str) -> bool:
    """'precision=fp8' or 'model=x,precision=fp8|bfloat16'; a path is tried first."""
    return "=" in spec.split(",", 1)[0]


def load_sides(
    baseline: str,
    candidate: str,
    *,
    root: Path,
    where: Sequence[str] = (),
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
) -> tuple[Side, Side]:
    """Each side from an existing path (a run directory or a folder of them) or a filter over
    the run directories under `root`; `where` narrows both sides."""
    common = Filter.parse(where)
    from_root: list[Record] | None = None
    sides: list[Side] = []
    for name, spec in (("baseline", baseline), ("candidate", candidate)):
        path = Path(spec)
        if path.exists():
            records = load_records([path], strict=strict, warn=warn)
            source, keys = str(path), [k for k, _ in common.terms]
        elif looks_like_filter(spec):
            chosen = Filter.parse([spec])
            if from_root is None:
                if not root.is_dir():
                    raise ResultsError(
                        f"{name} {spec} is a filter over --root {root}, which is not a "
                        "directory: give --root DIR, or run directories as the sides"
                    )
                from_root = load_records([root], strict=strict, warn=warn)
            records = chosen.select(from_root)
            source = f"{chosen} under {root}"
            keys = [k for k, _ in (*chosen.terms, *common.terms)]
            if not records:
                raise ResultsError(
                    f"{name} filter {chosen} matched no record under {root}; "
                    f"{_present(from_root, (k for k, _ in chosen.terms))}"
                )
        else:
            raise ResultsError(
                f"{name} {spec!r} is neither an existing path nor a filter: give a run "
                "directory, a folder of them, or key=value (e.g. precision=fp8)"
            )
        selected = common.select(records)
        if not selected:
            raise ResultsError(
                f"--where {common} leaves the {name} ({source}) no record; "
                f"{_present(records, keys)}"
            )
        if common:
            source += f", where {common}"
        sides.append(Side(name, source, tuple(selected)))
    return sides[0], sides[1]


# --- rendering ---------------------------------------------------------------------------------


def _metric_label(info: MetricInfo) -> str:
    """The label with its unit, unless the label already says it ('output tokens/s')."""
    words = info.label.split()
    if "/s" in info.label or words[-1] == info.unit:
        return info.label
    return f"{info.label} ({info.unit})"


def _cell(summary: Summary) -> str:
    half = summary.half_width
    text = _number(summary.mean)
    return text if half is None else f"{text} ± {_number(half)}"


def _point_table(point: PointComparison, tablefmt: str) -> str:
    tested = any(m.p_value is not None for m in point.metrics)
    headers = ["metric", "baseline", "candidate", "ratio", "change"]
    if tested:
        headers.append("p")
    rows: list[list[str]] = []
    for metric in point.metrics:
        ratio = metric.ratio
        row = [
            _metric_label(metric.info),
            _cell(metric.baseline),
            _cell(metric.candidate),
            "-" if ratio is None else f"{ratio:.3f}",
            metric.reading,
        ]
        if tested:
            row.append("-" if metric.p_value is None else _p_text(metric.p_value))
        rows.append(row)
    colalign = ["left", "right", "right", "right", "left", "right"][: len(headers)]
    return tabulate(
        rows, headers=headers, tablefmt=tablefmt, colalign=colalign, disable_numparse=True
    )


def _runs_text(runs: Sequence[str], short: dict[str, str]) -> str:
    return ", ".join(short[r] for r in runs)


def format_comparison(
    comparison: Comparison, fmt: str = "table", gate: GateResult | None = None
) -> str:
    """The comparison as a plain table, a Markdown document, or JSON (with the gate's result;
    the other formats leave the gate to its own lines on stderr)."""
    if fmt == "json":
        data = comparison.to_dict()
        if gate is not None:
            data["gate"] = gate.to_dict()
        return json.dumps(data, indent=2, allow_nan=False)
    if fmt not in FORMATS:
        raise ResultsError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    markdown = fmt == "markdown"
    tablefmt = "github" if markdown else "simple"
    short = short_run_ids([*comparison.baseline.run_ids, *comparison.candidate.run_ids])
    lines: list[str] = []
    for side in (comparison.baseline, comparison.candidate):
        runs = side.run_ids
        what = f"{side.name}: {side.config_label} ({side.source}: {len(runs)} run(s))"
        lines.append(f"- {what}" if markdown else what)
    if markdown:
        lines.append("")
    lines.append(
        f"ratio = candidate / baseline; with repeated runs: mean ± {CONFIDENCE:.0%} confidence "
        f"interval, p from Welch's t-test (significant below {ALPHA:.2g}); changes within "
        f"{SAME_WITHIN_PCT:g}% count as the same"
    )
    for point in comparison.points:
        lines.append("")
        heading = f"{point.label}: {point.repeats}"
        if len(point.baseline_runs) > 1 or len(point.candidate_runs) > 1:
            heading += (
                f" (baseline {_runs_text(point.baseline_runs, short)}; "
                f"candidate {_runs_text(point.candidate_runs, short)})"
            )
        lines.append(f"### {heading}" if markdown else heading)
        if markdown:
            lines.append("")
        lines.append(_point_table(point, tablefmt))
    notes = [
        f"skipped: {s.side} {s.label} ({short.get(s.run_id, s.run_id)}/{s.point_id}): "
        f"{s.verdict}: {s.reason}"
        for s in comparison.skipped
    ]
    notes += [f"only in baseline: {label}" for label in comparison.only_baseline]
    notes += [f"only in candidate: {label}" for label in comparison.only_candidate]
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes] if markdown else notes
    lines.append("")
    lines.append(f"summary: {comparison.summary}")
    return "\n".join(lines)


def gate_lines(gate: GateResult) -> list[str]:
    """Each offending point and metric on one line, then what the gate checked."""
    return [*(f"worse: {offender}" for offender in gate.offenders), gate.description]
