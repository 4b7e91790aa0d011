"""Compare a baseline's records with a candidate's: match their points, then each metric."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from results.analysis.accuracy import accuracy_deltas
from results.analysis.comparison import (
    CONFIDENCE,
    POINT_FIELDS,
    Comparison,
    MetricComparison,
    PointComparison,
    Side,
    Skipped,
)
from results.analysis.stats import Summary, welch_test
from results.errors import ResultsError
from results.model.accuracy import ACCURACY
from results.model.probed import VIEWS
from results.model.schema import (
    HEADLINE_METRICS,
    LATENCIES,
    Record,
    format_rate,
    latency_name,
    metric_info,
)
from runner.rundir import OK

HEADLINE_STATS = ("mean", "median", "p99")
SCENARIO_ORDER = {"serve": 0, "latency": 1, "throughput": 2}

# the fields of Record.config_key, in order, as messages name them
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
    "replicas",
    "spread",
    "partition",
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
        elif name in VIEWS:  # energy (per watt, per token), server (its own counters)
            names += VIEWS[name]
        else:
            metric_info(name)  # raises, naming the metrics there are
            names.append(name)
    if not names:
        raise ResultsError("--metrics names no metric: give e.g. tpot,output_throughput or all")
    return tuple(dict.fromkeys(names))


def config_fields(record: Record) -> dict[str, Any]:
    """Record.config_key by the names messages give its fields."""
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
            sorted({_value_text(row[name]) for row in group}, key=natural_key) for group in groups
        ]
        if len(groups) == 1:
            if len(per_group[0]) > 1:
                found.append(f"{name} ({', '.join(per_group[0])})")
        elif per_group[0] != per_group[1]:
            found.append(f"{name} ({sep.join(','.join(values) for values in per_group)})")
    return found


def natural_key(text: str) -> tuple[int, float, str]:
    """Sorts values as people read them: numbers by value, before words."""
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _check_one_configuration(side: Side) -> None:
    configs = {r.config_key: r for r in side.records}
    if len(configs) < 2:
        return
    differing = _differences([[config_fields(r) for r in configs.values()]], _CONFIG_FIELDS, "")
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
        [dict(zip(POINT_FIELDS, r.point_key, strict=True)) for r in recs] for recs in (base, cand)
    ]
    differing = _differences(rows, POINT_FIELDS, " vs ")
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
    # accuracy points have scores, not speeds: compared as changes with intervals, not ratios
    accuracy = accuracy_deltas(baseline.ok_records, candidate.ok_records)
    shared = [key for key in shared if key[0] != ACCURACY]

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
        if not seen and not accuracy:
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
        accuracy=accuracy,
    )
