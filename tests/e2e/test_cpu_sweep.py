"""End to end on a real vLLM server on the CPU, through the CLI, with the offline tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from results.cli import main as results_main
from runner.cli import main as run_main

BENCH_RUN = str(Path(sys.executable).parent / "bench-run")
COMMON = [
    "--executor", "local", "--vendor", "cpu", "--dtype", "bfloat16", "--max-model-len", "2048",
    "--env", "VLLM_CPU_KVCACHE_SPACE=1", "--input-len", "64", "--output-len", "16",
]  # fmt: skip


def _only_run_dir(out: Path) -> Path:
    dirs = [p for p in out.iterdir() if p.is_dir()]
    assert len(dirs) == 1, f"expected one run directory in {out}, found {dirs}"
    assert not dirs[0].name.startswith("."), "the run directory was left unfinished"
    return dirs[0]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _wait_for_event(out: Path, name: str, deadline_s: float) -> dict[str, Any]:
    """Follow the unfinished run directory's events.jsonl until `name` appears."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for events in out.glob(".*.partial/events.jsonl"):
            for line in events.read_text(encoding="utf-8").splitlines():
                event = json.loads(line)
                if event["event"] == name:
                    return dict(event)
        time.sleep(0.5)
    raise AssertionError(f"no {name} event within {deadline_s} s")


def _group_gone(pgid: int, within_s: float = 30.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


def test_sweep_latency_and_throughput(tmp_path: Path, tiny_model: Path) -> None:
    # No KV-cache size and no --gpu-memory-utilization: the CPU works out of the box.
    out = tmp_path / "runs"
    common = [f for f in COMMON if f not in ("--env", "VLLM_CPU_KVCACHE_SPACE=1")]
    args = [
        "--model", str(tiny_model), *common, "--qps", "4,inf", "--num-prompts", "12",
        "--scenario", "serve", "--scenario", "latency", "--scenario", "throughput",
        "--batch-size", "2", "--iters", "2", "--warmup-iters", "1", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = _only_run_dir(out)
    for name in ("run.json", "status.json", "provenance.json", "events.jsonl", "server.log"):
        assert (run_dir / name).is_file(), name
    status = _json(run_dir / "status.json")
    assert status["status"] == "ok"
    assert [p["id"] for p in status["points"]] == [
        "serve-qps4", "serve-qpsinf", "latency", "throughput"
    ]  # fmt: skip
    assert all(p["verdict"] == "ok" for p in status["points"])
    assert status["server"]["ready_s"] > 0
    for point in ("serve-qps4", "serve-qpsinf"):
        raw = _json(run_dir / "raw" / f"{point}.json")
        assert raw["completed"] == 12 and raw["failed"] == 0, point
    assert _json(run_dir / "raw" / "latency.json")["avg_latency"] > 0
    assert _json(run_dir / "raw" / "throughput.json")["num_requests"] == 12
    # Each serving point has the server's own counters, and an honest client agrees with them.
    for entry in status["points"][:2]:
        seen = entry["probe"]["metrics"]
        assert seen["server_requests"] >= 12 and seen["server_generation_tokens"] > 0, entry
        for name in ("kv_cache_usage_max", "num_preemptions", "server_output_throughput"):
            assert name in seen, (name, entry["id"])
        assert "client_cpu_cores" in seen and "cpu_util_mean" in seen, entry["id"]
        assert entry["probe"]["warnings"] == [], entry["probe"]["warnings"]
    assert "probe" not in status["points"][2], "no server counters for the latency scenario"
    prov = _json(run_dir / "provenance.json")
    assert prov["vllm_version"].startswith("0.32")
    assert "VLLM_CPU_KVCACHE_SPACE" in prov["decided_env"], "the KV size chosen is recorded"
    assert "VLLM_CPU_KVCACHE_SPACE=" in result.stderr, "and said"
    assert status["client"]["mode"] == "persistent" and status["client"]["ready_s"] > 0
    assert prov["commands"]["server"][1] == "serve"
    assert prov["host"]["cpu_count"] >= 1 and prov["finished"]
    events = [json.loads(x)["event"] for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    # The table: one row per point, every prompt done, nothing failed.
    table = result.stdout
    for row_start, done in (("serve", "12/0"), ("latency", "2/-"), ("throughput", "12/-")):
        rows = [line for line in table.splitlines() if line.startswith(row_start)]
        assert rows and all(done in r and r.rstrip().endswith("ok") for r in rows), table
    # bench-results reads the same table back from the run directory alone.
    shown = CliRunner().invoke(results_main, ["show", str(run_dir)], catch_exceptions=False)
    assert shown.exit_code == 0
    assert shown.stdout.strip() == table.strip()


def test_flag_vllm_rejects_stops_before_anything_starts(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "runs"
    args = ["--model", str(tiny_model), *COMMON, "--num-prompts", "4", "--qps", "2",
            "--engine-arg", "no-such-flag=1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert "vLLM rejects the engine flags" in lines[0] and "--no-such-flag" in lines[0]
    assert not [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert not out.exists() or not any(out.iterdir())


def test_server_that_exits_fails_fast_with_its_error(tmp_path: Path, tiny_model: Path) -> None:
    # 4096 passes the flag parser but the engine refuses it: the model allows 2048 positions.
    out = tmp_path / "runs"
    common = list(COMMON)
    common[common.index("--max-model-len") + 1] = "4096"
    args = ["--model", str(tiny_model), *common,
            "--num-prompts", "4", "--qps", "2,4", "--out", str(out)]  # fmt: skip
    started = time.monotonic()
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 1
    assert time.monotonic() - started < 300, "the failure was not fast"
    run_dir = _only_run_dir(out)
    status = _json(run_dir / "status.json")
    assert status["status"] == "failed"
    assert status["server"]["ready_s"] is None
    for point in status["points"]:
        assert point["verdict"] == "failed"
        assert "exited with status" in point["reasons"][0]
        assert point["log_tail"], "the server log's tail is kept with the failure"
    assert "max_model_len" in status["server"]["error"] or "4096" in status["server"]["error"]


def test_server_killed_mid_sweep_fails_the_rest(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "runs"
    # process mode: one `vllm bench serve` per point, the other client mode, through the CLI
    argv = [BENCH_RUN, "--model", str(tiny_model), *COMMON, "--num-prompts", "8",
            "--qps", "4,8,16", "--client-mode", "process", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server = _wait_for_event(out, "server_starting", 120)
        _wait_for_event(out, "point_finished", 400)
        os.killpg(server["pid"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: run ")
    run_dir = _only_run_dir(out)
    status = _json(run_dir / "status.json")
    assert status["status"] == "failed"
    verdicts = {p["id"]: p for p in status["points"]}
    assert verdicts["serve-qps4"]["verdict"] == "ok"
    assert verdicts["serve-qps16"]["verdict"] == "failed"
    assert verdicts["serve-qps16"]["log_tail"]
    assert status["client"] == {"mode": "process"}
    assert "serve-qps16" in stdout  # the table still shows every point


def test_ctrl_c_stops_the_server_and_marks_the_run_interrupted(
    tmp_path: Path, tiny_model: Path
) -> None:
    out = tmp_path / "runs"
    argv = [BENCH_RUN, "--model", str(tiny_model), *COMMON, "--num-prompts", "4",
            "--qps", "2", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server = _wait_for_event(out, "server_starting", 120)
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert _group_gone(server["pid"]), "the server's process group outlived the run"
    status = _json(_only_run_dir(out) / "status.json")
    assert status["status"] == "interrupted"
    assert status["points"][0]["verdict"] == "not-run"
    assert "interrupted" in stderr.strip().splitlines()[-1]
