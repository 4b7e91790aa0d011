"""Synthetic run directories for results tests: the real CPU sweep fixture, copied and rescaled."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FIXTURE_RUN = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "runs"
    / "20261122-054648-tiny-llama-cpu-d56769"
)
FIXTURE_QPS = (2.0, 4.0, 8.0)

# serve keys that are rates (scaled by `throughput`); every *_ms key and `duration` is a time
_SERVE_RATES = (
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "max_output_tokens_per_s",
)


def _rate_id(qps: float) -> str:
    return f"serve-qps{qps:g}"


def _scale_list(value: Any, factor: float) -> Any:
    if isinstance(value, list):
        return [_scale_list(v, factor) for v in value]
    return value * factor if isinstance(value, int | float) else value


def _serve(raw: dict[str, Any], qps: float, latency: float, throughput: float) -> dict[str, Any]:
    out = dict(raw)
    out["request_rate"] = qps
    for key, value in raw.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            if key in ("ttfts", "itls", "latencies"):
                out[key] = _scale_list(value, latency)
            continue
        if key.endswith("_ms") or key == "duration":
            out[key] = value * latency
        elif key in _SERVE_RATES:
            out[key] = value * throughput
    return out


def _latency(raw: dict[str, Any], latency: float) -> dict[str, Any]:
    out = dict(raw)
    out["avg_latency"] = raw["avg_latency"] * latency
    out["latencies"] = _scale_list(raw["latencies"], latency)
    out["percentiles"] = {k: v * latency for k, v in raw["percentiles"].items()}
    return out


def _throughput(raw: dict[str, Any], throughput: float) -> dict[str, Any]:
    out = dict(raw)
    out["elapsed_time"] = raw["elapsed_time"] / throughput
    out["requests_per_second"] = raw["requests_per_second"] * throughput
    out["tokens_per_second"] = raw["tokens_per_second"] * throughput
    return out


def make_run(
    root: Path,
    run_id: str,
    *,
    latency: float = 1.0,
    throughput: float = 1.0,
    dtype: str = "bfloat16",
    quantization: str | None = None,
    qps: Sequence[float] = FIXTURE_QPS,
    scenarios: Sequence[str] = ("serve", "latency", "throughput"),
    input_len: int = 128,
    output_len: int = 32,
    failed: Sequence[str] = (),
) -> Path:
    """A finished run directory in bench-run's format, from the real CPU sweep.

    Every latency of vLLM's raw outputs is multiplied by `latency` and every rate by
    `throughput`; a QPS the fixture lacks reuses its 2-QPS output. Points named in `failed`
    are failed as the agent fails them: every request failed, verdict and reason in
    status.json. `run_id` should look like bench-run's: 20261122-054648-tiny-llama-cpu-0a1b2c.
    """
    source = FIXTURE_RUN
    run_dir = root / run_id
    (run_dir / "raw").mkdir(parents=True)
    run: dict[str, Any] = json.loads((source / "run.json").read_text())
    status: dict[str, Any] = json.loads((source / "status.json").read_text())
    shutil.copy(source / "provenance.json", run_dir / "provenance.json")

    points: list[dict[str, Any]] = []
    if "serve" in scenarios:
        points += [
            {"id": _rate_id(q), "scenario": "serve", "qps": q, "num_prompts": 20} for q in qps
        ]
    points += [p for p in run["points"] if p["scenario"] in scenarios and p["scenario"] != "serve"]
    run.update(run_id=run_id, points=points, input_len=input_len, output_len=output_len)
    run["engine"].update(dtype=dtype, quantization=quantization)
    run["serve"]["qps"] = list(qps)
    run["scenarios"] = list(scenarios)

    template = {p["id"]: p for p in status["points"]}
    entries: list[dict[str, Any]] = []
    for point in points:
        point_id, scenario = point["id"], point["scenario"]
        if scenario == "serve":
            known = _rate_id(point["qps"]) if point["qps"] in FIXTURE_QPS else "serve-qps2"
            raw = json.loads((source / "raw" / f"{known}.json").read_text())
            raw = _serve(raw, point["qps"], latency, throughput)
            entry = dict(template[known], id=point_id, result=f"raw/{point_id}.json")
        else:
            raw = json.loads((source / "raw" / f"{point_id}.json").read_text())
            raw = _latency(raw, latency) if scenario == "latency" else _throughput(raw, throughput)
            entry = dict(template[point_id])
        if point_id in failed:
            if scenario == "serve":
                raw.update(completed=0, failed=raw["num_prompts"])
            prompts = point["num_prompts"]
            entry.update(verdict="failed", reasons=[f"{prompts} of {prompts} requests failed"])
        (run_dir / "raw" / f"{point_id}.json").write_text(json.dumps(raw))
        entries.append(entry)
    status.update(run_id=run_id, points=entries, status="failed" if failed else "ok")
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    (run_dir / "status.json").write_text(json.dumps(status, indent=2))
    return run_dir
