"""Parsing vLLM's raw outputs and run directories into records, and the table made from them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from results.errors import ResultsError
from results.records import (
    PointRecord,
    parse_latency,
    parse_serve,
    parse_throughput,
    records_from_run,
)
from results.rundir import find_runs, load_run
from results.table import format_table, short_run_ids

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-0.32.0-cpu"
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
    fields = parse_serve(raw)
    assert fields["completed"] == 20
    assert fields["failed"] == 0
    assert fields["num_prompts"] == 20
    assert fields["duration_s"] == pytest.approx(2.175238441000033)
    assert fields["request_throughput"] == pytest.approx(9.194394335365507)
    assert fields["output_throughput"] == pytest.approx(294.2206187316962)
    assert fields["ttft_mean_ms"] == raw["mean_ttft_ms"] == pytest.approx(25.09598655001355)
    assert fields["ttft_median_ms"] == pytest.approx(23.168504500006293)
    assert fields["ttft_p99_ms"] == pytest.approx(65.96030961996229)
    assert fields["tpot_mean_ms"] == pytest.approx(6.407242667742065)
    assert fields["itl_p99_ms"] == pytest.approx(11.070277800024536)
    assert fields["e2el_mean_ms"] == pytest.approx(223.72050925001759)
    assert fields["e2el_median_ms"] == pytest.approx(215.91507149997824)
    assert fields["e2el_p99_ms"] == pytest.approx(299.84255662002164)
    extra = fields["extra"]
    assert extra["std_ttft_ms"] == pytest.approx(11.78848218515317)
    assert extra["request_rate"] == 10.0
    for array in ("ttfts", "itls", "latencies", "generated_texts", "errors", "input_lens"):
        assert array not in extra
    assert "mean_ttft_ms" not in extra


def test_parse_serve_all_failed_fixture() -> None:
    fields = parse_serve(fixture("serve-all-failed.json"))
    assert fields["completed"] == 0
    assert fields["failed"] == 4
    assert fields["request_throughput"] == 0.0
    assert fields["ttft_mean_ms"] == 0.0
    # this output has no e2el keys at all: missing, not zero
    assert fields["e2el_mean_ms"] is None
    assert fields["e2el_p99_ms"] is None


def test_parse_serve_drifted_keys() -> None:
    raw = fixture("serve-ok.json")
    del raw["mean_ttft_ms"]
    del raw["completed"]
    raw["p99.9_ttft_ms"] = 70.5
    raw["brand_new_metric"] = {"a": 1}
    fields = parse_serve(raw)
    assert fields["ttft_mean_ms"] is None
    assert fields["completed"] is None
    assert fields["ttft_median_ms"] == pytest.approx(23.168504500006293)
    assert fields["extra"]["brand_new_metric"] == {"a": 1}
    assert fields["extra"]["p99.9_ttft_ms"] == 70.5


def test_parse_serve_wrong_types_are_none() -> None:
    fields = parse_serve({"completed": "20", "failed": True, "mean_ttft_ms": "fast"})
    assert fields["completed"] is None
    assert fields["failed"] is None
    assert fields["ttft_mean_ms"] is None
    assert parse_serve({})["duration_s"] is None


# -- latency and throughput -------------------------------------------------------------------


def test_parse_latency_fixture() -> None:
    raw = fixture("latency.json")
    fields = parse_latency(raw, batch_size=4, output_len=32)
    avg = 0.3611884286666509
    assert raw["avg_latency"] == avg
    assert fields["completed"] == 4
    assert fields["num_prompts"] == 4
    assert fields["e2el_mean_ms"] == pytest.approx(avg * 1000)
    assert fields["e2el_median_ms"] == pytest.approx(357.8419909999866)
    assert fields["e2el_p99_ms"] == pytest.approx(398.45418961997664)
    assert fields["request_throughput"] == pytest.approx(4 / avg)
    assert fields["output_throughput"] == pytest.approx(4 * 32 / avg)
    assert fields["duration_s"] == pytest.approx(sum(raw["latencies"]))
    assert "ttft_mean_ms" not in fields
    assert fields["extra"] == {"model_id": raw["model_id"]}


def test_parse_latency_without_batch_size() -> None:
    fields = parse_latency(fixture("latency.json"), batch_size=None, output_len=32)
    assert fields["request_throughput"] is None
    assert fields["output_throughput"] is None
    assert fields["e2el_mean_ms"] == pytest.approx(361.1884286666509)
    assert parse_latency({}, 4, 32)["e2el_mean_ms"] is None


def test_parse_throughput_fixture() -> None:
    raw = fixture("throughput.json")
    fields = parse_throughput(raw, output_len=32)
    elapsed = 0.5189163109999981
    assert fields["completed"] == 20
    assert fields["duration_s"] == pytest.approx(elapsed)
    assert fields["request_throughput"] == pytest.approx(38.54186036561119)
    assert fields["output_throughput"] == pytest.approx(20 * 32 / elapsed)
    assert fields["extra"]["total_num_tokens"] == 1922
    assert fields["extra"]["tokens_per_second"] == pytest.approx(3703.8727811352355)
    assert parse_throughput({"elapsed_time": 0, "num_requests": 3}, 32)["output_throughput"] is None


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
    assert ok.model == "/models/tiny-llama"
    assert ok.qps == 10.0
    assert ok.verdict == "ok"
    assert ok.reasons == ()
    assert (ok.completed, ok.failed) == (20, 0)
    assert ok.ttft_mean_ms == pytest.approx(25.09598655001355)
    assert inf.qps == math.inf
    assert inf.verdict == "failed"
    assert inf.reasons == ("4 of 4 requests failed",)
    assert (inf.completed, inf.failed) == (0, 4)
    assert latency.qps is None
    assert latency.e2el_p99_ms == pytest.approx(398.45418961997664)
    assert latency.output_throughput == pytest.approx(4 * 32 / 0.3611884286666509)
    assert throughput.output_throughput == pytest.approx(20 * 32 / 0.5189163109999981)
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
    assert latency.e2el_mean_ms is None
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
    record = PointRecord(
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
