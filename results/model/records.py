"""Turn a run directory into records: one per point, with what ran, metrics and validity."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from results.errors import ResultsError
from results.model.fastjson import loads_object
from results.model.parsers import (
    Parsed,
    as_int,
    as_rate,
    parse_latency,
    parse_lmeval,
    parse_serve,
    parse_throughput,
    uses_array,
)
from results.model.probed import probe_fields
from results.model.roofline import achieved_bandwidth
from results.model.rundir import RunDir
from results.model.schema import Record, format_rate
from runner.rundir import FAILED, NOT_RUN, OK, RUN_FILE

# a Poisson arrival process over a few dozen prompts scatters the achieved rate; below this
# fraction of the requested rate the server (or the load generator) could not keep up
ACHIEVED_RATE_WARNING = 0.9


def _model_name(model: Any) -> str:
    if isinstance(model, dict):
        for key in ("source", "local_path"):
            if isinstance(model.get(key), str) and model[key]:
                return str(model[key])
        return ""
    return "" if model is None else str(model)


def _read_raw(
    file: Path, name: str, scenario: str = ""
) -> tuple[dict[str, Any] | None, str | None]:
    """The raw output and None, or None and why it cannot be used (None if simply absent).

    Top-level arrays the scenario's parser does not use are left unread (see uses_array).
    """
    try:
        data = loads_object(file.read_bytes(), functools.partial(uses_array, scenario))
    except (OSError, UnicodeDecodeError):
        # a failed point often has no raw file; its status.json verdict already says why
        return None, None
    except json.JSONDecodeError as exc:
        return None, f"{name} is not valid JSON ({exc}): the file was cut off"
    if not isinstance(data, dict):
        return None, f"{name} is not a JSON object"
    return data, None


def _section(run: dict[str, Any], name: str) -> dict[str, Any]:
    value = run.get(name)
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _replicas(run: dict[str, Any]) -> dict[str, Any]:
    """run.json's replicas ({"count", "spread", "sets"}): absent in a run of one server."""
    found = _section(run, "replicas")
    count = as_int(found.get("count"))
    return {"replicas": count if count and count > 0 else 1, "spread": _str(found.get("spread"))}


def _run_context(rundir: RunDir) -> dict[str, Any]:
    """The Record fields every point of the run shares."""
    run, prov = rundir.run, rundir.provenance
    engine = _section(run, "engine")
    container = _section(prov, "container")
    digests = container.get("image_digests")
    image = _str(container.get("image")) or _str(run.get("image"))
    digest = _str(container.get("image_id"))
    if isinstance(digests, list) and digests and isinstance(digests[0], str):
        digest = digests[0]
    extra_args = engine.get("extra_args")
    tool, executor, host = (
        _section(prov, "tool"),
        _section(prov, "executor"),
        _section(prov, "host"),
    )
    return {
        "vendor": str(run.get("vendor") or prov.get("vendor") or ""),
        "model": _model_name(run.get("model")),
        "started": _str(rundir.status.get("started")) or _str(prov.get("started")),
        "gpu_model": _str(prov.get("gpu_model")),
        "gpu_count": as_int(prov.get("gpu_count")),
        "image": image,
        "image_digest": digest,
        "vllm_version": _str(prov.get("vllm_version")),
        "dtype": _str(engine.get("dtype")),
        # the checkpoint's label (fp8, int8, w4a16, gptq-int4) when run.json has one, else
        # --quantization: a run of old has only the latter
        "quantization": _str(engine.get("precision")) or _str(engine.get("quantization")),
        "kv_cache_dtype": _str(engine.get("kv_cache_dtype")),
        "tp": as_int(engine.get("tp")),
        "engine_args": tuple(str(a) for a in extra_args) if isinstance(extra_args, list) else (),
        "input_len": as_int(run.get("input_len")),
        "output_len": as_int(run.get("output_len")),
        **_replicas(run),
        "partition": _str(prov.get("partition")),  # AMD: the GPUs' modes, "cpx/nps4"
        "provenance": {
            "tool_version": tool.get("version"),
            "git_commit": tool.get("git_commit"),
            "executor": executor.get("name"),
            "host": host.get("hostname"),
            "cpu_model": host.get("cpu_model"),
            "driver": prov.get("driver"),
            "container_id": container.get("id"),
        },
        "run_dir": str(rundir.path),
    }


def _serve_load(run: dict[str, Any], serve: dict[str, Any], dataset: str) -> dict[str, Any]:
    """What a serving point sent: the endpoint, the shared prefix, and the prompts' lengths."""
    input_len, output_len = as_int(run.get("input_len")), as_int(run.get("output_len"))
    if dataset == "sharegpt":
        input_len = None  # the conversations' own: --input-len was never used
        if "sharegpt_output_len" in serve:  # a run.json of old always passed --output-len
            output_len = as_int(serve.get("sharegpt_output_len"))  # None: the dataset's own
    return {
        # before --endpoint every run used the completions API
        "endpoint": _str(serve.get("endpoint")) or "completions",
        # before --prefix-len sonnet prompts shared only the instruction
        "prefix_len": as_int(serve.get("prefix_len", 0)) if dataset == "sonnet" else None,
        "lengths": _str(serve.get("lengths")),
        "input_len": input_len,
        "output_len": output_len,
    }


def _warnings(record: Record) -> tuple[str, ...]:
    """What makes an ok point's numbers doubtful, without failing it."""
    found: list[str] = []
    if record.failed:
        found.append(f"{record.failed} request(s) failed")
    qps = record.qps
    achieved = record.achieved_rate
    if (
        record.scenario == "serve"
        and qps is not None
        and not math.isinf(qps)
        and achieved is not None
        and achieved < ACHIEVED_RATE_WARNING * qps
    ):
        found.append(
            f"achieved {achieved:.3g} req/s of {format_rate(qps)} requested: the server or the "
            "load generator could not keep up"
        )
    return tuple(found)


def _per_gpu(parsed: Parsed, gpus: int | None) -> None:
    if not gpus:
        return
    for name in ("output_throughput", "total_token_throughput"):
        value = parsed.metrics.get(name)
        if value is not None:
            parsed.metrics[f"{name}_per_gpu"] = value / gpus


def _judged(entry: dict[str, Any] | None) -> tuple[str, tuple[str, ...]]:
    """A point's verdict and reasons from its status.json entry (not run, without one)."""
    if entry is None:
        return NOT_RUN, ("no entry in status.json",)
    raw_reasons = entry.get("reasons")
    reasons = tuple(str(r) for r in raw_reasons) if isinstance(raw_reasons, list) else ()
    return str(entry.get("verdict") or NOT_RUN), reasons


def _parse(
    raw: dict[str, Any],
    scenario: str,
    batch_size: int | None,
    output_len: int | None,
    dataset: str,
) -> Parsed:
    """The raw output of one point, read by its scenario's parser (nothing for an unknown one)."""
    if scenario == "serve":
        return parse_serve(raw)
    if scenario == "latency":
        return parse_latency(raw, batch_size, output_len)
    if scenario == "throughput":
        # output tokens are known exactly only when every request emits output_len
        return parse_throughput(raw, output_len if dataset == "random" else None)
    if scenario == "accuracy":
        return parse_lmeval(raw)
    return Parsed()


def _planned_and_probed(points: list[Any], by_id: dict[str, dict[str, Any]]) -> list[Any]:
    """run.json's points, then the points the agent added as it ran (--find-max-qps probes)."""
    planned = {p.get("id") for p in points if isinstance(p, dict)}
    added = [
        {"id": pid, "scenario": entry.get("scenario"), "qps": entry.get("qps")}
        for pid, entry in by_id.items()
        if pid not in planned
    ]
    return [*points, *added]


def _search(status: dict[str, Any], serve: dict[str, Any]) -> dict[str, Any]:
    """The run's --find-max-qps answer (status.json's search, less its probes' details)."""
    found = status.get("search")
    if not isinstance(found, dict):
        return {}
    probes = found.get("probes")
    keys = ("result", "max_qps", "lowest_missed", "probe_count", "within_tolerance")
    return {
        **{key: found.get(key) for key in keys},
        "probes": [p.get("id") for p in probes if isinstance(p, dict)]
        if isinstance(probes, list)
        else [],
        "slo": serve.get("slo") or [],
    }


def _slo_fields(entry: dict[str, Any] | None, search: dict[str, Any]) -> dict[str, Any]:
    """A serving point's SLO result (status.json's slo) and its run's search."""
    slo = entry.get("slo") if entry is not None else None
    fields: dict[str, Any] = {"search": search} if search else {}
    if isinstance(slo, dict):
        fields.update(slo=slo, slo_met=bool(slo.get("met")))
    return fields


def records_from_run(rundir: RunDir) -> list[Record]:
    """One record per point of the run, in run.json's order."""
    run, status = rundir.run, rundir.status
    points = run.get("points")
    if not isinstance(points, list):
        raise ResultsError(
            f"{rundir.path / RUN_FILE} has no 'points' list: it was not written by bench-run"
        )
    run_id = str(run.get("run_id") or status.get("run_id") or rundir.path.name)
    context = _run_context(rundir)
    serve, latency = _section(run, "serve"), _section(run, "latency")
    dataset = _str(serve.get("dataset")) or "random"
    serve_context = {**context, **_serve_load(run, serve, dataset)}
    batch_size = as_int(latency.get("batch_size"))
    status_points = status.get("points")
    by_id = {
        p["id"]: p
        for p in (status_points if isinstance(status_points, list) else [])
        if isinstance(p, dict) and isinstance(p.get("id"), str)
    }

    search = _search(status, serve)
    records: list[Record] = []
    for index, point in enumerate(_planned_and_probed(points, by_id)):
        if not isinstance(point, dict) or not isinstance(point.get("id"), str):
            raise ResultsError(
                f"{rundir.path / RUN_FILE}: point {index} has no id; the file is damaged"
            )
        point_id: str = point["id"]
        scenario = str(point.get("scenario") or "")
        entry = by_id.get(point_id)
        verdict, reasons = _judged(entry)
        result = entry.get("result") if entry is not None else None
        name = result if isinstance(result, str) and result else f"raw/{point_id}.json"
        raw, problem = _read_raw(rundir.path / name, name, scenario)
        if problem is not None:
            verdict, reasons = FAILED, (*reasons, problem)

        parsed = (
            Parsed()
            if raw is None
            else _parse(raw, scenario, batch_size, context["output_len"], dataset)
        )
        probed, probe_warnings = probe_fields(entry)  # server counters, telemetry (probe.py)
        parsed.metrics.update(probed)
        qps = as_rate(point.get("qps"))
        if qps is None and scenario == "serve":
            qps = parsed.request_rate
        record = Record(
            run_id=run_id,
            point_id=point_id,
            scenario=scenario,
            qps=qps if scenario == "serve" else None,
            max_concurrency=(
                as_int(serve.get("max_concurrency")) or parsed.max_concurrency
                if scenario == "serve"
                else None
            ),
            batch_size=batch_size if scenario == "latency" else None,
            dataset=dataset if scenario not in ("latency", "accuracy") else None,
            num_prompts=parsed.num_prompts or as_int(point.get("num_prompts")),
            verdict=verdict,
            reasons=reasons,
            completed=parsed.completed,
            failed=parsed.failed,
            achieved_rate=parsed.metrics.get("request_throughput"),
            metrics=parsed.metrics,
            extra=parsed.extra,
            **(serve_context if scenario == "serve" else context),
            **(_slo_fields(entry, search) if scenario == "serve" else {}),
        )
        _per_gpu(parsed, record.gpus_used)
        if scenario == "serve":  # decode-heavy points: achieved vs peak memory bandwidth
            parsed.metrics.update(achieved_bandwidth(parsed.metrics, record.gpu_model))
        if verdict == OK:
            warnings = (*_warnings(record), *probe_warnings)
            if warnings:
                record = replace(record, warnings=warnings)
        records.append(record)
    return records
