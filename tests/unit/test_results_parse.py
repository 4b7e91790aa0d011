"""Parsing vLLM's raw outputs and run directories into records, and the table made from them."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from results.errors import ResultsError
from results.model.parsers import Parsed, parse_latency, parse_serve, parse_throughput
from results.model.records import records_from_run
from results.model.run_ids import short_run_ids
from results.model.rundir import find_runs, load_run
from results.model.schema import Record
from tests.unit.table_oracle import format_table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-0.32.0-cpu"
OLD = Path(__file__).resolve().parents[1] / "fixtures"
RUN_ID = "20261122-031757-tiny-llama-cpu-abc123"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def make_run(root: Path, run_id: str = RUN_ID) -> Path:
    """A run directory as the agent leaves it: two serve points, latency, throughput."""
    run_dir = root / run_id
    points: list[dict[str, Any]] = [
        {"id": "serve-qps10", "scenario": "serve", "qps": 10, "num_prompts": 20},
        {"id": "serve-qpsinf", "scenario": "serve", "qps": "inf", "num_prompts": 4},
        {"id": "latency", "scenario": "latency", "qps": None, "num_prompts": 4},
        {"id": "throughput", "scenario": "throughput", "qps": None, "num_prompts": 20},
    ]
    write_json(
        run_dir / "run.json",
        {
            "run_id": run_id,
            "vendor": "cpu",
            "model": {"source": "org/tiny-llama", "local_path": "/models/tiny-llama"},
            "engine": {"tp": 1, "dtype": "bfloat16"},
            "scenarios": ["serve", "latency", "throughput"],
            "input_len": 64,
            "output_len": 32,
            "serve": {"qps": [10, "inf"], "dataset": "random"},
            "latency": {"batch_size": 4, "iters": 3, "warmup_iters": 1},
            "throughput": {"num_prompts": 20},
            "points": points,
        },
    )
    write_json(
        run_dir / "status.json",
        {
            "format": 1,
            "run_id": run_id,
            "status": "failed",
            "started": "2026-11-22T03:17:57Z",
            "finished": "2026-11-22T03:21:00Z",
            "reason": None,
            "server": None,
            "points": [
                {
                    "id": p["id"],
                    "scenario": p["scenario"],
                    "verdict": "failed" if p["id"] == "serve-qpsinf" else "ok",
                    "reasons": ["4 of 4 requests failed"] if p["id"] == "serve-qpsinf" else [],
                    "result": f"raw/{p['id']}.json",
                    "log": f"logs/{p['id']}.log",
                }
                for p in points
            ],
        },
    )
    write_json(run_dir / "provenance.json", {"vllm": {"version": "0.32.0"}})
    write_json(run_dir / "raw" / "serve-qps10.json", fixture("serve-ok.json"))
    write_json(run_dir / "raw" / "serve-qpsinf.json", fixture("serve-all-failed.json"))
    write_json(run_dir / "raw" / "latency.json", fixture("latency.json"))
    write_json(run_dir / "raw" / "throughput.json", fixture("throughput.json"))
    return run_dir


# -- serve ------------------------------------------------------------------------------------


def test_parse_serve_ok_fixture() -> None:
    raw = fixture("serve-ok.json")
    parsed = parse_serve(raw)
    metrics = parsed.metrics
    assert parsed.completed == 20
    assert parsed.failed == 0
    assert parsed.num_prompts == 20
    assert parsed.request_rate == 10.0
    assert metrics["duration_s"] == pytest.approx(2.175238441000033)
    assert metrics["request_throughput"] == pytest.approx(9.194394335365507)
    assert metrics["output_throughput"] == pytest.approx(294.2206187316962)
    assert metrics["ttft_mean_ms"] == raw["mean_ttft_ms"] == pytest.approx(25.09598655001355)
    assert metrics["ttft_median_ms"] == pytest.approx(23.168504500006293)
    assert metrics["ttft_p99_ms"] == pytest.approx(65.96030961996229)
    assert metrics["ttft_std_ms"] == pytest.approx(11.78848218515317)
    assert metrics["tpot_mean_ms"] == pytest.approx(6.407242667742065)
    assert metrics["itl_p99_ms"] == pytest.approx(11.070277800024536)
    assert metrics["e2el_mean_ms"] == pytest.approx(223.72050925001759)
    assert metrics["e2el_median_ms"] == pytest.approx(215.91507149997824)
    assert metrics["e2el_p99_ms"] == pytest.approx(299.84255662002164)
    extra = parsed.extra
    assert extra["backend"] == "openai"
    assert extra["burstiness"] == 1.0
    for array in ("ttfts", "itls", "latencies", "generated_texts", "errors", "input_lens"):
        assert array not in extra
    assert "mean_ttft_ms" not in extra
    assert "request_rate" not in extra


def test_parse_serve_all_failed_fixture() -> None:
    parsed = parse_serve(fixture("serve-all-failed.json"))
    assert parsed.completed == 0
    assert parsed.failed == 4
    assert parsed.metrics["request_throughput"] == 0.0
    assert parsed.metrics["ttft_mean_ms"] == 0.0
    # this output has no e2el keys at all: missing, not zero
    assert "e2el_mean_ms" not in parsed.metrics
    assert "e2el_p99_ms" not in parsed.metrics


def test_parse_serve_drifted_keys() -> None:
    raw = fixture("serve-ok.json")
    del raw["mean_ttft_ms"]
    del raw["completed"]
    raw["p99.9_ttft_ms"] = 70.5
    raw["brand_new_metric"] = {"a": 1}
    parsed = parse_serve(raw)
    assert "ttft_mean_ms" not in parsed.metrics
    assert parsed.completed is None
    assert parsed.failed == 0  # reported, so not derived
    assert parsed.metrics["ttft_median_ms"] == pytest.approx(23.168504500006293)
    assert parsed.metrics["ttft_p99.9_ms"] == 70.5
    assert parsed.extra["brand_new_metric"] == {"a": 1}


def test_parse_serve_wrong_types_are_none() -> None:
    parsed = parse_serve({"completed": "20", "failed": True, "mean_ttft_ms": "fast"})
    assert parsed.completed is None
    assert parsed.failed is None
    assert "ttft_mean_ms" not in parsed.metrics
    assert parsed.extra == {"mean_ttft_ms": "fast"}  # a drifted type is kept aside, not dropped
    assert parse_serve({}).metrics == {}


# -- latency and throughput -------------------------------------------------------------------


def test_parse_latency_fixture() -> None:
    raw = fixture("latency.json")
    parsed = parse_latency(raw, batch_size=4, output_len=32)
    metrics = parsed.metrics
    avg = 0.3611884286666509
    assert raw["avg_latency"] == avg
    assert parsed.completed == 4
    assert parsed.num_prompts == 4
    assert metrics["e2el_mean_ms"] == pytest.approx(avg * 1000)
    assert metrics["e2el_median_ms"] == pytest.approx(357.8419909999866)
    assert metrics["e2el_p99_ms"] == pytest.approx(398.45418961997664)
    assert metrics["e2el_p10_ms"] == pytest.approx(raw["percentiles"]["10"] * 1000)
    assert metrics["request_throughput"] == pytest.approx(4 / avg)
    assert metrics["output_throughput"] == pytest.approx(4 * 32 / avg)
    assert metrics["duration_s"] == pytest.approx(sum(raw["latencies"]))
    assert "ttft_mean_ms" not in metrics
    assert parsed.extra == {"model_id": raw["model_id"]}


def test_parse_latency_without_batch_size() -> None:
    parsed = parse_latency(fixture("latency.json"), batch_size=None, output_len=32)
    assert "request_throughput" not in parsed.metrics
    assert "output_throughput" not in parsed.metrics
    assert parsed.metrics["e2el_mean_ms"] == pytest.approx(361.1884286666509)
    assert "e2el_mean_ms" not in parse_latency({}, 4, 32).metrics


def test_parse_throughput_fixture() -> None:
    raw = fixture("throughput.json")
    parsed = parse_throughput(raw, output_len=32)
    elapsed = 0.5189163109999981
    assert parsed.completed == 20
    assert parsed.metrics["duration_s"] == pytest.approx(elapsed)
    assert parsed.metrics["request_throughput"] == pytest.approx(38.54186036561119)
    assert parsed.metrics["output_throughput"] == pytest.approx(20 * 32 / elapsed)
    assert parsed.metrics["total_token_throughput"] == pytest.approx(3703.8727811352355)
    assert parsed.extra["total_num_tokens"] == 1922
    zero = parse_throughput({"elapsed_time": 0, "num_requests": 3}, 32)
    assert "output_throughput" not in zero.metrics


# -- run directories --------------------------------------------------------------------------


def test_load_run(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path))
    assert run.run["run_id"] == RUN_ID
    assert run.status["status"] == "failed"
    assert run.provenance == {"vllm": {"version": "0.32.0"}}


@pytest.mark.parametrize("missing", ["run.json", "status.json"])
def test_load_run_missing_file(tmp_path: Path, missing: str) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / missing).unlink()
    with pytest.raises(ResultsError, match=rf"is not a run directory \(no {missing}\)"):
        load_run(run_dir)


def test_load_run_truncated_json(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    text = (run_dir / "status.json").read_text()
    (run_dir / "status.json").write_text(text[: len(text) // 2])
    with pytest.raises(ResultsError, match=r"status\.json is not valid JSON"):
        load_run(run_dir)


def test_find_runs(tmp_path: Path) -> None:
    first = make_run(tmp_path, "run-a")
    second = make_run(tmp_path, "run-b")
    make_run(tmp_path, ".run-c.partial")
    (tmp_path / "not-a-run").mkdir()
    assert find_runs([tmp_path]) == [first, second]
    assert find_runs([second, tmp_path]) == [second, first]
    assert find_runs([tmp_path / "not-a-run"]) == []
    with pytest.raises(ResultsError, match="does not exist"):
        find_runs([tmp_path / "nowhere"])


def test_records_from_run(tmp_path: Path) -> None:
    records = records_from_run(load_run(make_run(tmp_path)))
    assert [r.point_id for r in records] == ["serve-qps10", "serve-qpsinf", "latency", "throughput"]
    ok, inf, latency, throughput = records
    assert ok.run_id == RUN_ID
    assert ok.vendor == "cpu"
    assert ok.model == "org/tiny-llama"  # the id people know it by, not where it was loaded
    assert ok.qps == 10.0
    assert ok.verdict == "ok"
    assert ok.reasons == ()
    assert (ok.completed, ok.failed) == (20, 0)
    assert ok.metric("ttft_mean_ms") == pytest.approx(25.09598655001355)
    assert ok.achieved_rate == pytest.approx(9.194394335365507)
    assert ok.dtype == "bfloat16"
    assert ok.precision == "bfloat16"
    assert ok.warnings == ()
    assert inf.qps == math.inf
    assert inf.verdict == "failed"
    assert inf.reasons == ("4 of 4 requests failed",)
    assert (inf.completed, inf.failed) == (0, 4)
    assert latency.qps is None
    assert latency.batch_size == 4
    assert latency.metric("e2el_p99_ms") == pytest.approx(398.45418961997664)
    assert latency.metric("output_throughput") == pytest.approx(4 * 32 / 0.3611884286666509)
    assert throughput.metric("output_throughput") == pytest.approx(20 * 32 / 0.5189163109999981)
    assert throughput.dataset == "random"
    assert hash(ok) == hash(ok)


def test_records_missing_and_truncated_raw(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / "raw" / "serve-qpsinf.json").unlink()
    text = (run_dir / "raw" / "latency.json").read_text()
    (run_dir / "raw" / "latency.json").write_text(text[:40])
    status = json.loads((run_dir / "status.json").read_text())
    status["points"] = [p for p in status["points"] if p["id"] != "throughput"]
    write_json(run_dir / "status.json", status)
    run = load_run(run_dir)
    run.run["model"]["local_path"] = None

    inf, latency, throughput = records_from_run(run)[1:]
    assert inf.verdict == "failed"
    assert inf.reasons == ("4 of 4 requests failed",)
    assert inf.completed is None
    assert inf.num_prompts == 4  # from the plan when there is no raw output
    assert inf.model == "org/tiny-llama"
    assert latency.verdict == "failed"
    assert len(latency.reasons) == 1
    assert latency.reasons[0].startswith("raw/latency.json is not valid JSON")
    assert latency.metric("e2el_mean_ms") is None
    assert throughput.verdict == "not-run"
    assert throughput.reasons == ("no entry in status.json",)


def test_records_without_points_is_an_error(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    del run["points"]
    write_json(run_dir / "run.json", run)
    with pytest.raises(ResultsError, match="no 'points' list"):
        records_from_run(load_run(run_dir))


# -- table ------------------------------------------------------------------------------------


def test_format_table_one_run(tmp_path: Path) -> None:
    text = format_table(records_from_run(load_run(make_run(tmp_path))))
    lines = text.splitlines()
    assert "(ms)" in lines[0]
    header = lines[1].split()
    assert header[:5] == ["scenario", "QPS", "done/failed", "req/s", "out"]
    assert "run" not in header
    for label in ("TTFT mean", "TTFT med", "TTFT p99", "TPOT p99", "ITL med", "E2EL p99"):
        assert label in lines[1]
    serve_row = lines[3].split()
    assert serve_row[:6] == ["serve", "10", "20/0", "9.19", "294.22", "25.10"]
    assert serve_row[-1] == "ok"
    inf_row = lines[4].split()
    assert inf_row[:3] == ["serve", "inf", "0/4"]
    assert inf_row[-1] == "failed"
    latency_row = lines[5].split()
    assert latency_row[:4] == ["latency", "-", "4/-", f"{4 / 0.3611884286666509:.2f}"]
    assert latency_row[-4:-1] == ["361.19", "357.84", "398.45"]
    throughput_row = lines[6].split()
    assert throughput_row[:5] == ["throughput", "-", "20/-", "38.54", "1233.34"]
    assert lines[7:] == ["serve-qpsinf: failed: 4 of 4 requests failed"]


def test_format_table_many_runs(tmp_path: Path) -> None:
    other = "20261122-040000-tiny-llama-rocm-def456"
    records = records_from_run(load_run(make_run(tmp_path)))
    records += records_from_run(load_run(make_run(tmp_path, other)))
    lines = format_table(records).splitlines()
    assert lines[1].split()[0] == "run"
    assert lines[3].split()[0] == "cpu-abc123"
    assert lines[-1].split()[0] == "rocm-def456/serve-qpsinf:"


def test_format_table_empty_and_unhappy_verdicts() -> None:
    assert format_table([]) == "no points to show"
    record = Record(
        run_id="r",
        point_id="p",
        scenario="serve",
        vendor="cpu",
        model="m",
        qps=None,
        verdict="not-run",
        reasons=("server never came up", "see server.log"),
    )
    text = format_table([record])
    assert text.splitlines()[-1] == "p: not-run: server never came up; see server.log"


def test_short_run_ids_fall_back_when_ambiguous() -> None:
    ids = ["20261122-031757-a-cpu-abc123", "20261122-031800-b-cpu-abc123", "plain"]
    assert short_run_ids(ids) == {i: i for i in ids}
    assert short_run_ids(ids[:1]) == {ids[0]: "cpu-abc123"}


# -- outputs of older vLLM releases (hand-written to their key sets; see that folder's README) --

OLDER = OLD / "vllm-older-releases"
# read into the record's own fields, not metrics
COUNT_KEYS = {"completed", "failed", "num_prompts", "request_rate", "max_concurrency"}
PER_REQUEST = {"input_lens", "output_lens", "ttfts", "itls", "generated_texts", "errors"}
# every other key that some release names differently from today's metric name
RENAMED = {
    "duration": "duration_s",
    "total_input_tokens": "total_input_tokens",
    "total_output_tokens": "total_output_tokens",
    "request_throughput": "request_throughput",
    "request_inthroughput": "request_throughput",
    "request_goodput:": "request_goodput",
    "input_throughput": "input_throughput",
    "output_throughput": "output_throughput",
    "total_token_throughput": "total_token_throughput",
}
LATENCY_KEY = re.compile(r"(mean|median|std|p\d+)_(ttft|tpot|itl|e2el)_ms")


def older(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((OLDER / name).read_text())
    return data


def expected_metric(key: str) -> str | None:
    """Today's name for an old serve key, worked out here independently of the parser."""
    if key in RENAMED:
        return RENAMED[key]
    match = LATENCY_KEY.fullmatch(key)
    return None if match is None else f"{match[2]}_{match[1]}_ms"


def assert_nothing_dropped(raw: dict[str, Any], parsed: Parsed, derived: set[str]) -> None:
    """Each key is a record field, a metric under today's name, kept in extra, or an array."""
    names = set()
    for key, value in raw.items():
        name = expected_metric(key)
        if key in COUNT_KEYS:
            assert key not in parsed.extra
        elif key in PER_REQUEST:
            assert key not in parsed.extra  # summarised by the statistics; stays in raw/
        elif name is not None and value is not None:
            assert parsed.metrics[name] == value, key
            names.add(name)
        else:
            assert key in parsed.extra and parsed.extra[key] == value, key
    assert set(parsed.metrics) == names | derived


def test_parse_serve_vllm_0_4_0() -> None:
    raw = older("serve-v0.4.0-qpsinf.json")
    assert "failed" not in raw and "request_throughput" not in raw
    parsed = parse_serve(raw)
    assert_nothing_dropped(raw, parsed, derived={"total_token_throughput"})
    metrics = parsed.metrics
    assert parsed.request_rate == math.inf  # the string "inf"
    # no failed key: the prompts that did not complete failed
    assert (parsed.completed, parsed.failed, parsed.num_prompts) == (197, 3, 200)
    assert metrics["request_throughput"] == raw["request_inthroughput"]
    assert metrics["request_throughput"] == pytest.approx(197 / raw["duration"])
    # derived, so that it compares with releases that report only the total
    assert metrics["total_token_throughput"] == pytest.approx((45311 + 39894) / raw["duration"])
    assert metrics["ttft_p99_ms"] == raw["p99_ttft_ms"]
    assert metrics["tpot_median_ms"] == raw["median_tpot_ms"]
    assert not any(n.startswith(("itl_", "e2el_")) or "_std_" in n for n in metrics)
    assert parsed.extra == {
        "date": "20240412-101503",
        "backend": "vllm",
        "version": "N/A",
        "model_id": "meta-llama/Llama-2-7b-chat-hf",
        "tokenizer_id": "meta-llama/Llama-2-7b-chat-hf",
        "best_of": 1,
        "use_beam_search": False,
    }


def test_parse_serve_vllm_0_5_4() -> None:
    raw = older("serve-v0.5.4-qpsinf.json")
    assert "failed" not in raw and "total_token_throughput" not in raw
    parsed = parse_serve(raw)
    assert_nothing_dropped(raw, parsed, derived={"total_token_throughput"})
    metrics = parsed.metrics
    assert parsed.request_rate == math.inf
    assert (parsed.completed, parsed.failed, parsed.num_prompts) == (8, 0, 8)
    assert metrics["total_token_throughput"] == pytest.approx(
        raw["input_throughput"] + raw["output_throughput"]
    )
    assert metrics["ttft_std_ms"] == raw["std_ttft_ms"]
    assert metrics["itl_p99_ms"] == raw["p99_itl_ms"]
    assert not any(n.startswith("e2el_") for n in metrics)
    assert set(parsed.extra) == {
        "date",
        "backend",
        "model_id",
        "tokenizer_id",
        "best_of",
        "use_beam_search",
    }


def test_parse_serve_vllm_0_8_3() -> None:
    raw = older("serve-v0.8.3-qps2.json")
    ok = parse_serve(raw)
    assert_nothing_dropped(raw, ok, derived=set())
    assert ok.request_rate == 2.0
    assert ok.max_concurrency is None
    assert (ok.completed, ok.failed, ok.num_prompts) == (24, 0, 24)
    # the stray colon of that release's key, read under today's name
    assert ok.metrics["request_goodput"] == raw["request_goodput:"]
    assert ok.metrics["request_goodput"] == pytest.approx(17 / raw["duration"])
    assert ok.metrics["total_token_throughput"] == raw["total_token_throughput"]
    for stat in ("mean", "median", "std", "p50", "p90", "p99"):
        assert ok.metrics[f"e2el_{stat}_ms"] == raw[f"{stat}_e2el_ms"]
    assert ok.extra == {
        "date": "20250416-093027",
        "backend": "vllm",
        "model_id": "Qwen/Qwen2.5-7B-Instruct",
        "tokenizer_id": "Qwen/Qwen2.5-7B-Instruct",
        "hardware": "1xH100-SXM",  # a --metadata key of that run
        "burstiness": 1.0,
    }

    raw = older("serve-v0.8.3-qpsinf.json")
    overload = parse_serve(raw)
    assert_nothing_dropped(raw, overload, derived=set())
    assert overload.request_rate == math.inf
    # 0.8.x wrote no failed count: 9 of 64 requests never completed
    assert (overload.completed, overload.failed, overload.num_prompts) == (55, 9, 64)
    assert "request_goodput" not in overload.metrics  # null: not measured (no --goodput)
    assert overload.extra["request_goodput:"] is None
    assert overload.metrics["ttft_p99_ms"] == raw["p99_ttft_ms"]
    assert not any(n.startswith("e2el_") for n in overload.metrics)


def test_parse_serve_vllm_0_4_0_spelling() -> None:
    # vLLM 0.4.0's benchmark_serving.py wrote request throughput as "request_inthroughput"
    parsed = parse_serve({"request_inthroughput": 3.5, "input_throughput": 700.0})
    assert parsed.metrics["request_throughput"] == 3.5
    assert "total_token_throughput" not in parsed.metrics  # no output_throughput to add
    assert parsed.extra == {}


def test_parse_latency_and_throughput_vllm_0_5_4() -> None:
    raw = older("latency-v0.5.4.json")
    latency = parse_latency(raw, batch_size=8, output_len=128)
    avg = raw["avg_latency"]
    assert latency.metrics["e2el_mean_ms"] == pytest.approx(avg * 1000)
    for key, seconds in raw["percentiles"].items():
        assert latency.metrics[f"e2el_p{key}_ms"] == pytest.approx(seconds * 1000)
    assert latency.metrics["e2el_median_ms"] == latency.metrics["e2el_p50_ms"]
    assert latency.metrics["duration_s"] == pytest.approx(sum(raw["latencies"]))
    assert latency.metrics["request_throughput"] == pytest.approx(8 / avg)
    assert latency.metrics["output_throughput"] == pytest.approx(8 * 128 / avg)
    assert latency.extra == {}

    raw = older("throughput-v0.5.4.json")
    throughput = parse_throughput(raw, output_len=128)
    assert (throughput.completed, throughput.num_prompts) == (1000, 1000)
    assert throughput.metrics["request_throughput"] == raw["requests_per_second"]
    assert throughput.metrics["total_token_throughput"] == raw["tokens_per_second"]
    # only total tokens were reported: output tokens are prompts x --output-len
    assert throughput.metrics["output_throughput"] == pytest.approx(
        1000 * 128 / raw["elapsed_time"]
    )
    assert throughput.extra == {"total_num_tokens": 256000}


def percentile(values: list[float], p: float) -> float:
    """numpy.percentile's default (linear interpolation), as vLLM computes it."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@pytest.mark.parametrize(
    "name",
    [
        "serve-v0.4.0-qpsinf.json",
        "serve-v0.5.4-qpsinf.json",
        "serve-v0.8.3-qps2.json",
        "serve-v0.8.3-qpsinf.json",
    ],
)
def test_older_serve_fixtures_are_self_consistent(name: str) -> None:
    raw = older(name)
    duration = raw["duration"]
    rate = raw.get("request_throughput", raw.get("request_inthroughput"))
    assert rate == pytest.approx(raw["completed"] / duration)
    assert raw["output_throughput"] == pytest.approx(raw["total_output_tokens"] / duration)
    tokens = raw["total_input_tokens"] + raw["total_output_tokens"]
    if "total_token_throughput" in raw:
        assert raw["total_token_throughput"] == pytest.approx(tokens / duration)
    else:
        assert raw["input_throughput"] == pytest.approx(raw["total_input_tokens"] / duration)
    if "errors" not in raw:
        return
    assert {len(raw[key]) for key in PER_REQUEST} == {raw["num_prompts"]}
    done = [i for i, error in enumerate(raw["errors"]) if not error]
    assert len(done) == raw["completed"]
    assert sum(raw["input_lens"][i] for i in done) == raw["total_input_tokens"]
    assert sum(raw["output_lens"][i] for i in done) == raw["total_output_tokens"]
    ttfts = [raw["ttfts"][i] * 1000 for i in done]
    assert raw["mean_ttft_ms"] == pytest.approx(sum(ttfts) / len(ttfts))
    assert raw["p99_ttft_ms"] == pytest.approx(percentile(ttfts, 99))
    itls = [gap * 1000 for i in done for gap in raw["itls"][i]]
    assert raw["median_itl_ms"] == pytest.approx(percentile(itls, 50))
    if "mean_e2el_ms" in raw:
        e2els = [(raw["ttfts"][i] + sum(raw["itls"][i])) * 1000 for i in done]
        assert raw["p90_e2el_ms"] == pytest.approx(percentile(e2els, 90))


def test_older_latency_and_throughput_fixtures_are_self_consistent() -> None:
    latency = older("latency-v0.5.4.json")
    seconds = latency["latencies"]
    assert latency["avg_latency"] == pytest.approx(sum(seconds) / len(seconds))
    for key, value in latency["percentiles"].items():
        assert value == pytest.approx(percentile(seconds, float(key)))
    counts = older("throughput-v0.5.4.json")
    elapsed = counts["elapsed_time"]
    assert counts["requests_per_second"] == pytest.approx(counts["num_requests"] / elapsed)
    assert counts["tokens_per_second"] == pytest.approx(counts["total_num_tokens"] / elapsed)


def test_old_release_run_gives_normalised_records(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    raw = older("serve-v0.8.3-qpsinf.json")
    write_json(run_dir / "raw" / "serve-qps10.json", raw)
    record = records_from_run(load_run(run_dir))[0]
    assert record.verdict == "ok"  # the verdict is status.json's; the numbers say more:
    assert (record.completed, record.failed) == (55, 9)
    assert record.warnings[0] == "9 request(s) failed"
    assert record.metric("output_throughput") == raw["output_throughput"]
    assert record.metric("request_goodput") is None
    assert record.extra["request_goodput:"] is None


def test_real_cpu_sweep_fixture() -> None:
    fixture_run = OLD / "runs" / "20261122-054648-tiny-llama-cpu-d56769"
    records = records_from_run(load_run(fixture_run))
    assert [r.point_id for r in records] == [
        "serve-qps2",
        "serve-qps4",
        "serve-qps8",
        "latency",
        "throughput",
    ]
    assert {r.verdict for r in records} == {"ok"}
    assert records[0].vllm_version == "0.32.0+cpu"
    assert records[0].gpus_used is None  # the CPU: no per-GPU figures
    assert "output_throughput_per_gpu" not in records[0].metrics
    assert records[2].metric("tpot_median_ms") == pytest.approx(6.07, abs=0.01)
