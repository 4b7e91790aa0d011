"""Merge the per-request results of concurrent `vllm bench serve` clients into one record.

Standard library only (the agent's). Each client wrote vLLM's `--save-result --save-detailed`
JSON: its summary keys and its per-request arrays (input_lens, output_lens, ttfts, itls,
latencies, start_times, errors; times in seconds). The merged file has the same shape, its
statistics recomputed over ALL requests exactly as vLLM computes them (numpy's linear
percentiles, population standard deviation), never averaged from the clients' statistics.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

# the per-request arrays vLLM writes with --save-detailed, concatenated in client order
ARRAYS = (
    "input_lens",
    "output_lens",
    "ttfts",
    "itls",
    "latencies",
    "start_times",
    "queue_times",
    "generated_texts",
    "errors",
)
_SUMMED = ("num_prompts", "completed", "failed", "total_input_tokens", "total_output_tokens")
# audio's real-time factor: not recomputed from the arrays, left out of the merge
_DROPPED = ("rtfx",)


class MergeError(Exception):
    """A client's result lacks what the merge needs: one line."""


def percentile(values: Sequence[float], pct: float) -> float:
    """numpy.percentile's default (linear interpolation between closest ranks)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _stats(name: str, seconds: Sequence[float], percentiles: Sequence[float]) -> dict[str, float]:
    values = list(seconds) or [0.0]  # vLLM: np.mean(values or 0)
    out = {
        f"mean_{name}_ms": statistics.fmean(values) * 1000.0,
        f"median_{name}_ms": percentile(values, 50.0) * 1000.0,
        f"std_{name}_ms": statistics.pstdev(values) * 1000.0,
    }
    for pct in percentiles:
        out[f"p{pct:g}_{name}_ms"] = percentile(values, pct) * 1000.0
    return out


def _percentiles_of(raw: Mapping[str, Any]) -> list[float]:
    """The percentiles the client was asked for, read back from its keys (p99_ttft_ms -> 99)."""
    found: list[float] = []
    for key in raw:
        if key.startswith("p") and key.endswith("_ttft_ms"):
            try:
                found.append(float(key[1 : -len("_ttft_ms")]))
            except ValueError:
                continue
    return sorted(found)


def _succeeded(raw: Mapping[str, Any]) -> list[int]:
    errors = raw.get("errors") or [""] * len(raw["ttfts"])
    return [i for i, error in enumerate(errors) if not error]


def per_request(raws: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """The successful requests' ttft, tpot, itl and e2el (seconds) over every client."""
    ttfts: list[float] = []
    tpots: list[float] = []
    all_tpots: list[float] = []  # aligned with ttfts: 0.0 for a one-token output (vLLM's)
    itls: list[float] = []
    e2els: list[float] = []
    for raw in raws:
        for i in _succeeded(raw):
            out_len = int(raw["output_lens"][i]) or 1
            latency, ttft = float(raw["latencies"][i]), float(raw["ttfts"][i])
            tpot = (latency - ttft) / (out_len - 1) if out_len > 1 else 0.0
            if out_len > 1:
                tpots.append(tpot)
            all_tpots.append(tpot)
            itls += [float(x) for x in raw["itls"][i]]
            ttfts.append(ttft)
            e2els.append(latency)
    return {"ttft": ttfts, "tpot": tpots, "itl": itls, "e2el": e2els, "all_tpot": all_tpots}


def _peaks(raws: Sequence[Mapping[str, Any]]) -> tuple[float, int]:
    """vLLM's max_output_tokens_per_s and max_concurrent_requests, over every client's
    successful requests: per one-second bucket from the first start (one clock, perf_counter)."""
    done = [(raw, i) for raw in raws for i in _succeeded(raw)]
    if not done:
        return 0.0, 0
    starts = [float(raw["start_times"][i]) for raw, i in done]
    first = min(starts)
    ends = [s + float(raw["latencies"][i]) for s, (raw, i) in zip(starts, done, strict=True)]
    buckets = math.ceil(max(ends) - first) + 1
    tokens = [0] * buckets
    running = [0] * buckets
    for start, end, (raw, i) in zip(starts, ends, done, strict=True):
        moment = start + float(raw["ttfts"][i])
        times = [moment]
        for gap in raw["itls"][i]:
            moment += float(gap)
            times.append(moment)
        for when in times:
            if 0 <= int(when - first) < buckets:
                tokens[int(when - first)] += 1
        for second in range(int(start - first), int(end - first) + 1):
            running[second] += 1
    return float(max(tokens)), max(running)


def _check(raws: Sequence[Mapping[str, Any]]) -> None:
    if not raws:
        raise MergeError("no client results to merge")
    for k, raw in enumerate(raws):
        for key in ("ttfts", "itls", "latencies", "output_lens", "input_lens"):
            if not isinstance(raw.get(key), list):
                raise MergeError(
                    f"client {k}'s result has no per-request {key!r}: run it with --save-detailed"
                )


def merge(
    raws: Sequence[Mapping[str, Any]], goodput: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """One result in vLLM's shape from the clients' results (see the module's docstring).

    duration: the longest client's (they ran side by side); throughputs over it.
    goodput: {"ttft"|"tpot"|"e2el": ms} as given to the clients' --goodput, recounted.
    """
    _check(raws)
    merged: dict[str, Any] = {
        k: v for k, v in raws[0].items() if not isinstance(v, list) and k not in _DROPPED
    }
    for key in _SUMMED:
        merged[key] = sum(int(raw.get(key) or 0) for raw in raws)
    for key in ARRAYS:
        if all(isinstance(raw.get(key), list) for raw in raws):
            merged[key] = [item for raw in raws for item in raw[key]]
    rates = [raw.get("request_rate") for raw in raws]
    numeric = [float(r) for r in rates if isinstance(r, int | float)]
    merged["request_rate"] = sum(numeric) if len(numeric) == len(rates) else "inf"
    duration = max(float(raw.get("duration") or 0.0) for raw in raws)
    merged["duration"] = duration
    completed, outputs = merged["completed"], merged["total_output_tokens"]
    if duration > 0:
        merged["request_throughput"] = completed / duration
        merged["output_throughput"] = outputs / duration
        merged["total_token_throughput"] = (merged["total_input_tokens"] + outputs) / duration
    samples = per_request(raws)
    if goodput:
        good = _good_count(samples, goodput)
        merged["request_goodput"] = good / duration if duration > 0 else None
    merged["max_output_tokens_per_s"], merged["max_concurrent_requests"] = _peaks(raws)
    for name in ("ttft", "tpot", "itl", "e2el"):
        seconds = samples[name]
        merged.update(_stats(name, seconds, _percentiles_of(raws[0])))
    merged["clients"] = len(raws)
    return merged


def _good_count(samples: Mapping[str, list[float]], goodput: Mapping[str, float]) -> int:
    """vLLM's goodput: requests meeting every given bound (tpot 0 for one-token outputs)."""
    tpots = samples["all_tpot"]
    good = 0
    for i in range(len(samples["ttft"])):
        checks = []
        if "ttft" in goodput:
            checks.append(samples["ttft"][i] * 1000.0 <= goodput["ttft"])
        if "e2el" in goodput:
            checks.append(samples["e2el"][i] * 1000.0 <= goodput["e2el"])
        if "tpot" in goodput:
            checks.append(tpots[i] * 1000.0 <= goodput["tpot"])
        good += all(checks)
    return good
