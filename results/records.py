"""Turn a run directory's raw vLLM outputs into one flat, comparable record per point."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from results.errors import ResultsError
from results.rundir import RUN_FILE, RunDir

METRICS = ("ttft", "tpot", "itl", "e2el")
STATS = ("mean", "median", "p99")

NOT_RUN = "not-run"
FAILED = "failed"


@dataclass(frozen=True)
class PointRecord:
    """One point of one run: what was asked, the verdict, and the headline metrics."""

    run_id: str
    point_id: str
    scenario: str
    vendor: str
    model: str
    qps: float | None
    verdict: str
    reasons: tuple[str, ...] = ()
    completed: int | None = None
    failed: int | None = None
    num_prompts: int | None = None
    request_throughput: float | None = None
    output_throughput: float | None = None
    duration_s: float | None = None
    ttft_mean_ms: float | None = None
    ttft_median_ms: float | None = None
    ttft_p99_ms: float | None = None
    tpot_mean_ms: float | None = None
    tpot_median_ms: float | None = None
    tpot_p99_ms: float | None = None
    itl_mean_ms: float | None = None
    itl_median_ms: float | None = None
    itl_p99_ms: float | None = None
    e2el_mean_ms: float | None = None
    e2el_median_ms: float | None = None
    e2el_p99_ms: float | None = None
    # hash=False keeps records hashable although the raw leftovers are a dict
    extra: dict[str, Any] = field(default_factory=dict, hash=False)


def _float(value: Any) -> float | None:
    # bool is an int subclass, but a true/false is never a measurement
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _rate(value: Any) -> float | None:
    """A request rate as run.json and vLLM write it: a number, or the string 'inf'."""
    if isinstance(value, str) and value.strip().lower() == "inf":
        return math.inf
    return _float(value)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _extra(raw: dict[str, Any], used: set[str]) -> dict[str, Any]:
    # lists are vLLM's per-request arrays (ttfts, itls, generated_texts...): large and
    # already summarised by the statistics, so they stay in the raw file only
    return {k: v for k, v in raw.items() if k not in used and not isinstance(v, list)}


def parse_serve(raw: dict[str, Any]) -> dict[str, Any]:
    """Record fields from `vllm bench serve --save-result` output; missing keys give None."""
    fields: dict[str, Any] = {
        "completed": _int(raw.get("completed")),
        "failed": _int(raw.get("failed")),
        "num_prompts": _int(raw.get("num_prompts")),
        "request_throughput": _float(raw.get("request_throughput")),
        "output_throughput": _float(raw.get("output_throughput")),
        "duration_s": _float(raw.get("duration")),
    }
    used = {
        "completed",
        "failed",
        "num_prompts",
        "request_throughput",
        "output_throughput",
        "duration",
    }
    for metric in METRICS:
        for stat in STATS:
            key = f"{stat}_{metric}_ms"
            fields[f"{metric}_{stat}_ms"] = _float(raw.get(key))
            used.add(key)
    fields["extra"] = _extra(raw, used)
    return fields


def parse_latency(
    raw: dict[str, Any], batch_size: int | None, output_len: int | None
) -> dict[str, Any]:
    """Record fields from `vllm bench latency --output-json` (seconds per batch)."""
    avg = _float(raw.get("avg_latency"))
    percentiles = raw.get("percentiles")
    if not isinstance(percentiles, dict):
        percentiles = {}
    latencies = raw.get("latencies")
    duration = None
    if isinstance(latencies, list) and latencies:
        values = [_float(v) for v in latencies]
        duration = None if None in values else sum(v for v in values if v is not None)
    tokens = None if batch_size is None or output_len is None else batch_size * output_len
    # each iteration is one batch of batch_size prompts, so a batch's latency is each
    # request's end-to-end latency
    return {
        "completed": batch_size,
        "failed": None,
        "num_prompts": batch_size,
        "request_throughput": _ratio(None if batch_size is None else float(batch_size), avg),
        "output_throughput": _ratio(None if tokens is None else float(tokens), avg),
        "duration_s": duration,
        "e2el_mean_ms": _ms(avg),
        "e2el_median_ms": _ms(_float(percentiles.get("50"))),
        "e2el_p99_ms": _ms(_float(percentiles.get("99"))),
        "extra": _extra(raw, {"avg_latency", "percentiles", "latencies"}),
    }


def parse_throughput(raw: dict[str, Any], output_len: int | None) -> dict[str, Any]:
    """Record fields from `vllm bench throughput --output-json`."""
    elapsed = _float(raw.get("elapsed_time"))
    num_requests = _int(raw.get("num_requests"))
    # vLLM reports only total (input + output) tokens/s; the prompts are random with
    # ignore-eos, so every request emits exactly output_len tokens and output tokens/s is
    # num_requests * output_len / elapsed_time
    tokens = None if num_requests is None or output_len is None else num_requests * output_len
    return {
        "completed": num_requests,
        "failed": None,
        "num_prompts": num_requests,
        "request_throughput": _float(raw.get("requests_per_second")),
        "output_throughput": _ratio(None if tokens is None else float(tokens), elapsed),
        "duration_s": elapsed,
        "extra": _extra(raw, {"elapsed_time", "num_requests", "requests_per_second"}),
    }


def _model_name(model: Any) -> str:
    if isinstance(model, dict):
        for key in ("local_path", "source"):
            if isinstance(model.get(key), str) and model[key]:
                return str(model[key])
        return ""
    return "" if model is None else str(model)


def _read_raw(file: Path, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """The raw output and None, or None and why it cannot be used (None if simply absent)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        # a failed point often has no raw file; its status.json verdict already says why
        return None, None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{name} is not valid JSON: {exc}"
    if not isinstance(data, dict):
        return None, f"{name} is not a JSON object"
    return data, None


def _section_int(run: dict[str, Any], section: str, key: str) -> int | None:
    value = run.get(section)
    return _int(value.get(key)) if isinstance(value, dict) else None


def records_from_run(rundir: RunDir) -> list[PointRecord]:
    """One record per point of the run, in run.json's order."""
    run, status = rundir.run, rundir.status
    points = run.get("points")
    if not isinstance(points, list):
        raise ResultsError(
            f"{rundir.path / RUN_FILE} has no 'points' list: it was not written by bench-run"
        )
    run_id = str(run.get("run_id") or status.get("run_id") or rundir.path.name)
    vendor = str(run.get("vendor") or "")
    model = _model_name(run.get("model"))
    output_len = _int(run.get("output_len"))
    batch_size = _section_int(run, "latency", "batch_size")
    status_points = status.get("points")
    by_id = {
        p["id"]: p
        for p in (status_points if isinstance(status_points, list) else [])
        if isinstance(p, dict) and isinstance(p.get("id"), str)
    }

    records: list[PointRecord] = []
    for index, point in enumerate(points):
        if not isinstance(point, dict) or not isinstance(point.get("id"), str):
            raise ResultsError(
                f"{rundir.path / RUN_FILE}: point {index} has no id; the file is damaged"
            )
        point_id: str = point["id"]
        scenario = str(point.get("scenario") or "")
        entry = by_id.get(point_id)
        reasons: tuple[str, ...]
        if entry is None:
            verdict, reasons = NOT_RUN, ("no entry in status.json",)
        else:
            verdict = str(entry.get("verdict") or NOT_RUN)
            raw_reasons = entry.get("reasons")
            reasons = tuple(str(r) for r in raw_reasons) if isinstance(raw_reasons, list) else ()
        result = entry.get("result") if entry is not None else None
        name = result if isinstance(result, str) and result else f"raw/{point_id}.json"
        raw, problem = _read_raw(rundir.path / name, name)
        if problem is not None:
            verdict, reasons = FAILED, (*reasons, problem)

        fields: dict[str, Any] = {}
        if raw is not None:
            if scenario == "serve":
                fields = parse_serve(raw)
            elif scenario == "latency":
                fields = parse_latency(raw, batch_size, output_len)
            elif scenario == "throughput":
                fields = parse_throughput(raw, output_len)
        qps = _rate(point.get("qps"))
        if qps is None and scenario == "serve" and raw is not None:
            qps = _rate(raw.get("request_rate"))
        if fields.get("num_prompts") is None:
            fields["num_prompts"] = _int(point.get("num_prompts"))
        records.append(
            PointRecord(
                run_id=run_id,
                point_id=point_id,
                scenario=scenario,
                vendor=vendor,
                model=model,
                qps=qps,
                verdict=verdict,
                reasons=reasons,
                **fields,
            )
        )
    return records
