"""--slo with --find-max-qps on the CPU: one server, a few probes, each a real recorded point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_cpu_sweep import BENCH_RUN, COMMON, _json, _only_run_dir

BENCH_RESULTS = str(Path(sys.executable).parent / "bench-results")
# limits loose enough that the low rate meets them on a busy host and tight enough that the
# answer may fall anywhere: the test asserts the structure, not a rate
SLO = "ttft_p99_ms=3000,tpot_p99_ms=300"


def test_find_max_qps_records_its_probes_and_its_answer(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "runs"
    argv = [
        BENCH_RUN, *COMMON, "--model", str(tiny_model), "--out", str(out),
        "--qps", "1,8", "--num-prompts", "8", "--slo", SLO,
        "--find-max-qps", "--qps-tolerance", "3",  # req/s: 1, 8, then at most 2 halvings
    ]  # fmt: skip
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = _only_run_dir(out)
    run, status = _json(run_dir / "run.json"), _json(run_dir / "status.json")
    assert run["serve"]["slo"] == [["ttft_p99_ms", 3000.0], ["tpot_p99_ms", 300.0]]
    assert run["serve"]["find_max_qps"] is True
    assert [p["id"] for p in run["points"]] == ["search-1-qps1"]
    assert status["server"]["exit_status"] is not None  # one server, stopped once
    found = status["search"]
    assert found["result"] in ("found", "none", "above the range")
    probes = found["probes"]
    assert 1 <= len(probes) <= found["spec"]["max_probes"] == 4
    assert probes[0]["qps"] == 1.0
    points = {p["id"]: p for p in status["points"]}
    assert list(points) == [p["id"] for p in probes]
    for index, probe in enumerate(probes, start=1):
        assert probe["id"] == f"search-{index}-qps{probe['qps']:g}"
        entry = points[probe["id"]]
        assert entry["verdict"] == "ok", entry
        assert entry["slo"]["met"] is probe["met"]
        assert [c["metric"] for c in entry["slo"]["checks"]] == ["ttft_p99_ms", "tpot_p99_ms"]
        raw = _json(run_dir / "raw" / f"{probe['id']}.json")
        assert raw["completed"] == 8 and raw["request_goodput"] is not None  # vLLM's --goodput
        assert raw["request_rate"] == probe["qps"]
    met = [p["qps"] for p in probes if p["met"]]
    assert found["max_qps"] == (max(met) if met else None)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("server_ready") == 1

    shown = subprocess.run(
        [BENCH_RESULTS, "show", str(run_dir)], check=True, capture_output=True, text=True
    )
    assert "max QPS under SLO (ttft_p99_ms <= 3000 ms, tpot_p99_ms <= 300 ms): " in shown.stdout
    records = json.loads(
        subprocess.run(
            [BENCH_RESULTS, "show", str(run_dir), "--format", "json"],
            check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    assert [r["point_id"] for r in records] == [p["id"] for p in probes]
    assert all(r["search"]["result"] == found["result"] for r in records)
    assert [r["slo_met"] for r in records] == [p["met"] for p in probes]
