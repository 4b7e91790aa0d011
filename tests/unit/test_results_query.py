"""The record schema (names, units, keys, round trips) and key=value filters over records."""

from __future__ import annotations

import math

import pytest

from results.analysis.query import Filter
from results.errors import ResultsError
from results.model.schema import (
    SCHEMA_VERSION,
    Record,
    format_rate,
    latency_name,
    metric_info,
    percentile_stat,
)


def record(**fields: object) -> Record:
    values: dict[str, object] = {
        "run_id": "20261122-054648-llama-8b-nvidia-0a0001",
        "point_id": "serve-qps4",
        "scenario": "serve",
        "vendor": "nvidia",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "gpu_model": "NVIDIA H100 80GB HBM3",
        "gpu_count": 8,
        "dtype": "bfloat16",
        "tp": 2,
        "qps": 4.0,
        "input_len": 1024,
        "output_len": 128,
        "dataset": "random",
        "verdict": "ok",
        "metrics": {"tpot_median_ms": 12.5, "output_throughput": 900.0},
    }
    values.update(fields)
    return Record(**values)  # type: ignore[arg-type]


# -- schema -----------------------------------------------------------------------------------


def test_metric_names_units_and_directions() -> None:
    tpot = metric_info("tpot_p99_ms")
    assert (tpot.label, tpot.unit, tpot.better) == ("TPOT p99", "ms", "lower")
    assert metric_info("ttft_median_ms").label == "TTFT median"
    assert metric_info("itl_p99.9_ms").unit == "ms"
    per_gpu = metric_info("output_throughput_per_gpu")
    assert (per_gpu.unit, per_gpu.better) == ("tok/s/GPU", "higher")
    assert metric_info("request_throughput").unit == "req/s"
    assert metric_info("duration_s").better == "lower"
    for bad in ("tpot_p99", "speed", "ttft_p99_s", "latency_mean_ms"):
        with pytest.raises(ResultsError, match="unknown metric"):
            metric_info(bad)


def test_name_helpers() -> None:
    assert latency_name("e2el", "p99") == "e2el_p99_ms"
    assert percentile_stat(99) == "p99"
    assert percentile_stat("99.9") == "p99.9"
    assert percentile_stat(50.0) == "p50"
    assert [format_rate(q) for q in (None, 4.0, 0.5, math.inf)] == ["-", "4", "0.5", "inf"]


def test_record_round_trip() -> None:
    rec = record(qps=math.inf, engine_args=("--max-num-seqs", "64"), reasons=("slow",))
    data = rec.to_dict()
    assert data["qps"] == "inf"
    assert data["engine_args"] == ["--max-num-seqs", "64"]
    assert data["schema"] == SCHEMA_VERSION
    assert Record.from_dict(data) == rec
    with pytest.raises(ResultsError, match=r"fields this version does not know \(colour\)"):
        Record.from_dict({**data, "colour": "red"})
    with pytest.raises(ResultsError, match=f"record schema 99 is not {SCHEMA_VERSION}"):
        Record.from_dict({**data, "schema": 99})


def test_derived_fields() -> None:
    rec = record()
    assert rec.precision == "bfloat16"
    assert record(quantization="fp8").precision == "fp8"
    assert record(dtype=None).precision == "auto"
    assert rec.gpus_used == 2
    assert record(engine_args=("--pipeline-parallel-size", "2")).gpus_used == 4
    assert record(engine_args=("-dp=2",)).gpus_used == 4
    assert record(gpu_count=0, vendor="cpu", gpu_model=None).gpus_used is None
    assert rec.config_label == "Llama-3.1-8B-Instruct bfloat16 tp2 @ 2x NVIDIA H100 80GB HBM3"
    assert record(kv_cache_dtype="fp8").config_label.startswith("Llama-3.1-8B-Instruct bfloat16 kv")
    assert rec.point_label == "serve @ 4 QPS"
    assert record(scenario="latency", qps=None, batch_size=8).point_label == "latency batch 8"
    # repeats of a configuration share a config key; other loads do not change it
    assert record(run_id="other", qps=8.0).config_key == rec.config_key
    assert record(quantization="fp8").config_key != rec.config_key
    # the same load on another configuration shares a point key
    assert record(quantization="fp8", vendor="amd").point_key == rec.point_key
    assert record(qps=8.0).point_key != rec.point_key
    assert record(qps=math.inf).point_key == record(qps=float("inf")).point_key
    assert rec.metric("tpot_median_ms") == 12.5
    assert rec.metric("ttft_p99_ms") is None
    assert hash(rec) == hash(record())


# -- filters ----------------------------------------------------------------------------------


def test_parse() -> None:
    selection = Filter.parse(["model=llama,precision=fp8,bfloat16", "Max-Concurrency=8|16"])
    assert selection.terms == (
        ("model", ("llama",)),
        ("precision", ("fp8", "bfloat16")),
        ("max_concurrency", ("8", "16")),
    )
    assert str(selection) == "model=llama,precision=fp8|bfloat16,max_concurrency=8|16"
    assert bool(selection)
    assert not Filter.parse([])
    assert Filter.parse(["", " , "]).terms == ()


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("model", "filter 'model' is not key=value"),
        ("=x", "is not key=value"),
        ("model=", "is not key=value"),
        ("colour=red", "unknown filter key 'colour': use one of run, point, scenario"),
    ],
)
def test_parse_errors(expression: str, message: str) -> None:
    with pytest.raises(ResultsError, match=message):
        Filter.parse([expression])


@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        ("model=Llama-3.1-8B-Instruct", True),  # the name's last part, any case
        ("model=meta-llama/llama-3.1-8b-instruct", True),
        ("model=8B-Instruct", False),  # a suffix of the whole name only after a slash
        ("run=20261122", True),  # the run id's beginning
        ("run=054648", False),
        ("qps=4", True),
        ("qps=4.0", False),  # as people write rates: 4, 0.5, inf
        ("tp=2,vendor=nvidia|amd", True),
        ("tp=2,vendor=amd", False),
        ("gpu=nvidia h100 80gb hbm3", True),
        ("quantization=fp8", False),  # None never matches
        ("config=Llama-3.1-8B-Instruct bfloat16 tp2 @ 2x NVIDIA H100 80GB HBM3", True),
    ],
)
def test_matches(expression: str, matches: bool) -> None:
    assert Filter.parse([expression]).matches(record()) is matches


def test_select_keeps_order() -> None:
    records = [record(qps=q) for q in (1.0, math.inf, 4.0, 8.0)]
    assert Filter.parse(["qps=inf|4"]).select(records) == [records[1], records[2]]
    assert Filter().select(records) == records
