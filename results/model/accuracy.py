"""lm-eval's results JSON (the accuracy point's raw result) as record metrics, and their names.

A score is the metric `<task>:<metric>` (`mmlu_pro:exact_match@custom-extract`, the filter
after `@` where lm-eval names one), its standard error `<task>:<metric>:stderr`; the counts
and task versions go to the record's extra under "accuracy".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

ACCURACY = "accuracy"  # the scenario's name, and the key of its details in a record's extra
STDERR = "stderr"
_NAME = re.compile(r"^(?P<task>[^:\s]+):(?P<metric>[^:\s]+)(?P<stderr>:stderr)?$")
# lm-eval's metrics where lower is better; every other score is better higher
_LOWER = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "ter")


@dataclass(frozen=True)
class ScoreName:
    """A metric name taken apart: the task, lm-eval's metric (with its filter), stderr or not."""

    task: str
    metric: str
    stderr: bool

    @property
    def base(self) -> str:
        """lm-eval's metric without its filter: `exact_match` of `exact_match@strict-match`."""
        return self.metric.partition("@")[0]

    @property
    def better(self) -> str:
        if self.stderr or self.base in _LOWER:
            return "lower"
        return "higher"


def score_name(task: str, metric: str, *, stderr: bool = False) -> str:
    return f"{task}:{metric}" + (f":{STDERR}" if stderr else "")


def parse_score_name(name: str) -> ScoreName | None:
    """The parts of an accuracy metric's name; None for any other metric."""
    match = _NAME.match(name)
    if match is None:
        return None
    return ScoreName(match["task"], match["metric"], match["stderr"] is not None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _metric_key(key: str) -> tuple[str, bool] | None:
    """lm-eval's 'acc_norm,none' / 'acc_stderr,none' -> ('acc_norm', False) / ('acc', True)."""
    metric, sep, filt = key.partition(",")
    if not sep or not metric or metric == "alias":
        return None
    stderr = metric.endswith("_stderr")
    if stderr:
        metric = metric[: -len("_stderr")]
    return (metric if filt in ("", "none") else f"{metric}@{filt}"), stderr


def _scores(results: dict[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for task, values in results.items():
        if not isinstance(task, str) or not isinstance(values, dict):
            continue
        for key, value in values.items():
            parsed = _metric_key(str(key))
            number = _number(value)  # lm-eval writes "N/A" for a stderr it could not compute
            if parsed is not None and number is not None:
                metric, stderr = parsed
                metrics[score_name(task, metric, stderr=stderr)] = number
    return metrics


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _task_details(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    versions, samples = _dict(raw.get("versions")), _dict(raw.get("n-samples"))
    shots = _dict(raw.get("n-shot"))
    details: dict[str, dict[str, Any]] = {}
    for task in _dict(raw.get("results")):
        counts = _dict(samples.get(task))
        details[str(task)] = {
            "version": versions.get(task),
            "samples": counts.get("effective"),
            "documents": counts.get("original"),
            "num_fewshot": shots.get(task),
        }
    return details


@dataclass(frozen=True)
class AccuracyResult:
    """What the parser takes from lm-eval's JSON."""

    metrics: dict[str, float]
    details: dict[str, Any]  # the record's extra["accuracy"]
    samples: int | None  # documents scored, over every task


def parse_accuracy(raw: dict[str, Any]) -> AccuracyResult:
    """lm-eval's aggregated results (results, versions, n-samples, n-shot, config)."""
    results = raw.get("results")
    metrics = _scores(results) if isinstance(results, dict) else {}
    tasks = _task_details(raw)
    counts = [d["samples"] for d in tasks.values() if isinstance(d.get("samples"), int)]
    config = _dict(raw.get("config"))
    details = {
        "tasks": tasks,
        "lm_eval_version": raw.get("lm_eval_version"),
        "model": config.get("model"),
        "limit": config.get("limit"),
    }
    return AccuracyResult(metrics, details, sum(counts) if counts else None)
