"""Parse vLLM's benchmark outputs (serve, latency, throughput) of any release into metrics."""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from results.model.accuracy import ACCURACY, parse_accuracy
from results.model.schema import LATENCIES, latency_name, percentile_stat

# vLLM renamed or added keys between releases; the value is the normalised metric name
_SERVE_ALIASES = {
    "request_throughput": "request_throughput",
    "request_inthroughput": "request_throughput",  # 0.4.0's spelling
    "request_goodput": "request_goodput",
    "request_goodput:": "request_goodput",  # 0.6.x wrote the key with a stray colon
    "output_throughput": "output_throughput",
    "input_throughput": "input_throughput",  # 0.4.x; later releases give total instead
    "total_token_throughput": "total_token_throughput",
    "max_output_tokens_per_s": "max_output_tokens_per_s",
    "max_concurrent_requests": "max_concurrent_requests",
    "duration": "duration_s",
    "total_input_tokens": "total_input_tokens",
    "total_output_tokens": "total_output_tokens",
}
# read into the record's own fields rather than metrics
_SERVE_FIELDS = ("completed", "failed", "num_prompts", "request_rate", "max_concurrency")
_STATS = ("mean", "median", "std")


@dataclass
class Parsed:
    """What one raw output says: metrics by normalised name, counts, and the unknown keys."""

    metrics: dict[str, float] = field(default_factory=dict)
    completed: int | None = None
    failed: int | None = None
    num_prompts: int | None = None
    request_rate: float | None = None
    max_concurrency: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def put(self, name: str, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            self.metrics[name] = value


def as_float(value: Any) -> float | None:
    """A number, or None: a bool or a string is never a measurement."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_rate(value: Any) -> float | None:
    """A request rate as run.json and vLLM write it: a number, or 'inf'."""
    if isinstance(value, str) and value.strip().lower() == "inf":
        return math.inf
    return as_float(value)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


@functools.lru_cache(maxsize=4096)  # the same few dozen keys in every file of a results root
def _latency_key(key: str) -> str | None:
    """'mean_ttft_ms' / 'p99.9_itl_ms' -> the normalised name; None for any other key."""
    if not key.endswith("_ms"):
        return None
    head = key[: -len("_ms")]
    stat, _, family = head.partition("_")
    if family not in LATENCIES:
        return None
    if stat in _STATS:
        return latency_name(family, stat)
    if stat.startswith("p"):
        try:
            return latency_name(family, percentile_stat(stat[1:]))
        except ValueError:
            return None
    return None


def uses_array(scenario: str, key: str) -> bool:
    """Whether the parser of `scenario` needs a top-level array under `key` in the raw output.

    The others (per-request arrays) are dropped by _keep_aside, so a reader may skip them.
    """
    if scenario == "latency":
        return True  # `latencies` gives the duration and the spread
    # a measurement whose type drifted to a list is kept in extra
    return scenario == "serve" and (key in _SERVE_ALIASES or _latency_key(key) is not None)


def _keep_aside(parsed: Parsed, key: str, value: Any) -> None:
    # lists are vLLM's per-request arrays (ttfts, itls, generated_texts, ...): large and
    # already summarised by the statistics, so they stay in the raw file only
    if not isinstance(value, list):
        parsed.extra[key] = value


def parse_serve(raw: dict[str, Any]) -> Parsed:
    """`vllm bench serve --save-result` (or benchmark_serving.py) output of any release."""
    parsed = Parsed(
        completed=as_int(raw.get("completed")),
        failed=as_int(raw.get("failed")),
        num_prompts=as_int(raw.get("num_prompts")),
        request_rate=as_rate(raw.get("request_rate")),
        max_concurrency=as_int(raw.get("max_concurrency")),
    )
    for key, value in raw.items():
        if key in _SERVE_FIELDS:
            continue
        name = _SERVE_ALIASES.get(key) or _latency_key(key)
        if name is None:
            _keep_aside(parsed, key, value)
            continue
        number = as_float(value)
        if number is None:
            parsed.extra[key] = value  # a drifted type is kept, not silently dropped
        else:
            parsed.put(name, number)
    # 0.4.x-0.5.x gave input tokens/s instead of the total later releases give: derive the total
    # so that old and new results compare on the same metric
    metrics = parsed.metrics
    if "total_token_throughput" not in metrics and {"input_throughput", "output_throughput"} <= set(
        metrics
    ):
        metrics["total_token_throughput"] = (
            metrics["input_throughput"] + metrics["output_throughput"]
        )
    # releases before failed= existed: the prompts that did not complete failed
    if parsed.failed is None and parsed.completed is not None and parsed.num_prompts is not None:
        parsed.failed = max(parsed.num_prompts - parsed.completed, 0)
    return parsed


def parse_latency(raw: dict[str, Any], batch_size: int | None, output_len: int | None) -> Parsed:
    """`vllm bench latency --output-json`: seconds per batch, as end-to-end latency in ms."""
    parsed = Parsed(completed=batch_size, num_prompts=batch_size)
    avg = as_float(raw.get("avg_latency"))
    parsed.put("e2el_mean_ms", None if avg is None else avg * 1000.0)
    percentiles = raw.get("percentiles")
    if isinstance(percentiles, dict):
        for key, value in percentiles.items():
            seconds = as_float(value)
            try:
                stat = percentile_stat(key)
            except ValueError:
                parsed.extra[f"percentiles.{key}"] = value
                continue
            if seconds is not None:
                parsed.put(latency_name("e2el", stat), seconds * 1000.0)
        if "e2el_p50_ms" in parsed.metrics:
            parsed.metrics["e2el_median_ms"] = parsed.metrics["e2el_p50_ms"]
    latencies = raw.get("latencies")
    if isinstance(latencies, list) and latencies:
        values = [as_float(v) for v in latencies]
        numbers = [v for v in values if v is not None]
        if len(numbers) == len(values):
            parsed.put("duration_s", sum(numbers))
            if len(numbers) > 1:
                parsed.put("e2el_std_ms", statistics.stdev(numbers) * 1000.0)
    # each iteration is one batch of batch_size prompts: a batch's latency is each request's
    # end-to-end latency
    tokens = None if batch_size is None or output_len is None else batch_size * output_len
    parsed.put("request_throughput", _ratio(None if batch_size is None else batch_size, avg))
    parsed.put("output_throughput", _ratio(None if tokens is None else tokens, avg))
    for key, value in raw.items():
        if key not in ("avg_latency", "percentiles", "latencies"):
            _keep_aside(parsed, key, value)
    return parsed


def parse_throughput(raw: dict[str, Any], output_len: int | None) -> Parsed:
    """`vllm bench throughput --output-json` of any release."""
    num_requests = as_int(raw.get("num_requests"))
    parsed = Parsed(completed=num_requests, num_prompts=num_requests)
    elapsed = as_float(raw.get("elapsed_time"))
    parsed.put("duration_s", elapsed)
    parsed.put("request_throughput", as_float(raw.get("requests_per_second")))
    parsed.put("total_token_throughput", as_float(raw.get("tokens_per_second")))
    output_tokens = as_float(raw.get("total_output_tokens"))
    if output_tokens is None and num_requests is not None and output_len is not None:
        # vLLM reports only total tokens/s here; prompts are random with ignore-eos, so each
        # request emits exactly output_len tokens
        output_tokens = float(num_requests * output_len)
    parsed.put("total_output_tokens", output_tokens)
    parsed.put("output_throughput", _ratio(output_tokens, elapsed))
    known = {
        "num_requests",
        "elapsed_time",
        "requests_per_second",
        "tokens_per_second",
        "total_output_tokens",
    }
    for key, value in raw.items():
        if key not in known:
            _keep_aside(parsed, key, value)
    return parsed


def parse_lmeval(raw: dict[str, Any]) -> Parsed:
    """The accuracy point's lm-eval results JSON: each task's scores and standard errors."""
    found = parse_accuracy(raw)
    parsed = Parsed(completed=found.samples, num_prompts=found.samples)
    for name, value in found.metrics.items():
        parsed.put(name, value)
    parsed.extra[ACCURACY] = found.details
    return parsed
