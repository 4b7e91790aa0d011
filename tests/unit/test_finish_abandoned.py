"""A run whose agent died (SIGKILL, OOM, a killed container) is finished by the host, not lost."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from results.model.rundir import load_run
from runner.executors.docker import image_event_line
from runner.executors.docker_transport import container_end_reason
from runner.executors.local import LocalTransport
from runner.executors.supervisor import Supervisor
from runner.plan import EngineConfig, ModelRef, Run
from runner.rundir import (
    FAILED,
    NOT_RUN,
    OK,
    Job,
    RunDirError,
    atomic_write_json,
    finish_abandoned,
    partial_dir,
)
from runner.scenarios.latency import LatencyParams

ROOT = Path(__file__).resolve().parents[2]
LATENCY_OUTPUT = ROOT / "tests" / "fixtures" / "vllm-0.32.0-cpu" / "latency.json"
RUN_ID = "20261122-031500-tiny-llama-cpu-abc123"


def make_run() -> Run:
    return Run(
        run_id=RUN_ID,
        vendor="cpu",
        model=ModelRef(source="org/model"),
        engine=EngineConfig(),
        scenarios=("latency", "throughput"),
        params={"latency": LatencyParams(batch_size=1)},
    )


def point(point_id: str, scenario: str, verdict: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": point_id,
        "scenario": scenario,
        "verdict": verdict,
        "reasons": [] if verdict == OK else ["not started"],
        "result": f"raw/{point_id}.json",
        "log": f"logs/{point_id}.log",
        **extra,
    }


def abandoned_dir(out: Path) -> Path:
    """What a SIGKILLed agent leaves: serve-qps1 judged ok, serve-qps3 running, one not started."""
    work = partial_dir(out, RUN_ID)
    (work / "raw").mkdir(parents=True)
    atomic_write_json(work / "run.json", make_run().to_dict())
    status = {
        "format": 1,
        "run_id": RUN_ID,
        "status": "running",
        "started": "2026-11-22T03:15:00.000+00:00",
        "finished": None,
        "reason": None,
        "server": {"started": "2026-11-22T03:15:01.000+00:00", "ready_s": 40.0},
        "points": [
            point("serve-qps1", "serve", OK, seconds=6.1),
            point("serve-qps3", "serve", NOT_RUN),
            point("serve-qps5", "serve", NOT_RUN),
        ],
    }
    atomic_write_json(work / "status.json", status)
    atomic_write_json(work / "provenance.json", {"format": 1, "run_id": RUN_ID})
    (work / "server.log").write_text("INFO engine started\nINFO POST /v1/completions 200\n")
    return work


def test_unjudged_points_fail_with_the_reason_and_the_dir_gets_its_name(tmp_path: Path) -> None:
    work = abandoned_dir(tmp_path)
    tail = ["agent line 1", "Killed"]
    final = finish_abandoned(work, "the container was killed (SIGKILL, exit status 137)", tail)
    assert final == tmp_path / RUN_ID
    assert not work.exists()
    status = json.loads((final / "status.json").read_text())
    assert status["status"] == "failed"
    assert status["reason"] == "the container was killed (SIGKILL, exit status 137)"
    assert status["finished"] and status["finished_by"] == "executor"
    first, second, third = status["points"]
    assert first["verdict"] == OK and first["reasons"] == [] and "log_tail" not in first
    for entry in (second, third):
        assert entry["verdict"] == FAILED
        assert entry["reasons"] == ["the container was killed (SIGKILL, exit status 137)"]
        assert entry["log_tail"] == [
            "agent line 1", "Killed", "--- server.log ---",
            "INFO engine started", "INFO POST /v1/completions 200",
        ]  # fmt: skip
    assert json.loads((final / "provenance.json").read_text())["finished"] == status["finished"]
    # results/ reads it like any other run directory
    assert load_run(final).status["status"] == "failed"


def test_an_interrupted_run_keeps_its_unrun_points_not_run(tmp_path: Path) -> None:
    final = finish_abandoned(abandoned_dir(tmp_path), "killed after Ctrl-C", interrupted=True)
    assert final is not None
    status = json.loads((final / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert [p["verdict"] for p in status["points"]] == [OK, NOT_RUN, NOT_RUN]
    assert status["points"][1]["reasons"] == ["killed after Ctrl-C"]


def test_killed_before_the_first_status_the_points_come_from_run_json(tmp_path: Path) -> None:
    work = abandoned_dir(tmp_path)
    (work / "status.json").unlink()
    final = finish_abandoned(work, "the agent was killed by SIGKILL before it finished the run")
    assert final is not None
    status = json.loads((final / "status.json").read_text())
    assert [(p["id"], p["verdict"]) for p in status["points"]] == [
        ("latency", FAILED),
        ("throughput", FAILED),
    ]
    assert status["status"] == "failed" and status["run_id"] == RUN_ID


def test_nothing_to_finish_and_a_name_already_taken(tmp_path: Path) -> None:
    assert finish_abandoned(partial_dir(tmp_path, RUN_ID), "gone") is None
    with pytest.raises(ValueError, match="not an unfinished run directory"):
        finish_abandoned(tmp_path / RUN_ID, "gone")
    work = abandoned_dir(tmp_path)
    (tmp_path / RUN_ID).mkdir()
    with pytest.raises(RunDirError, match="already exists"):
        finish_abandoned(work, "gone")
    assert json.loads((work / "status.json").read_text())["status"] == "running"


def test_local_executor_finishes_the_run_of_a_sigkilled_agent(tmp_path: Path) -> None:
    """A real agent, SIGKILLed (as the OOM killer would) by its second point's command."""
    run = make_run()
    copy = f"import shutil; shutil.copy({str(LATENCY_OUTPUT)!r}, 'raw/latency.json')"
    kill_agent = "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"
    job = {
        "job_schema": 1,
        "tool": {"name": "vllm-bench", "version": "test"},
        "executor": {"name": "local"},
        "run": run.to_dict(),
        "vllm": sys.executable,
        "env": {},
        "server": None,
        "points": [
            {"id": "latency", "scenario": "latency", "argv": [sys.executable, "-c", copy],
             "result": "raw/latency.json", "expected": 1, "needs_server": False},
            {"id": "throughput", "scenario": "throughput",
             "argv": [sys.executable, "-c", kill_agent], "result": "raw/throughput.json",
             "expected": 1000, "needs_server": False},
        ],
    }  # fmt: skip
    events: list[dict[str, Any]] = []
    transport = LocalTransport.start(Job.from_dict(job), tmp_path)
    outcome = Supervisor(tmp_path).supervise(run.run_id, transport, events.append)

    reason = "the agent was killed by SIGKILL before it finished the run"
    assert outcome.exit_code == -signal.SIGKILL
    assert (outcome.status, outcome.reason) == ("failed", reason)
    assert outcome.run_dir == tmp_path / RUN_ID
    assert not partial_dir(tmp_path, RUN_ID).exists()
    status = json.loads((outcome.run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["reason"] == reason
    latency, throughput = status["points"]
    assert latency["verdict"] == OK, latency
    assert throughput["verdict"] == FAILED and throughput["reasons"] == [reason]
    finished = [e for e in events if e.get("event") == "run_finished"]
    assert finished == [
        {"event": "run_finished", "run_id": RUN_ID, "status": "failed", "reason": reason,
         "run_dir": str(outcome.run_dir)},
    ]  # fmt: skip


def test_container_end_reasons() -> None:
    assert container_end_reason({"OOMKilled": True}, 137) == (
        "the container ran out of memory and was killed (OOMKilled, exit status 137) "
        "before the agent finished the run"
    )
    assert container_end_reason({"OOMKilled": False}, 137) == (
        "the container was killed (SIGKILL, exit status 137) before the agent finished the run"
    )
    assert container_end_reason({}, 3, interrupted=True) == (
        "the container exited with status 3 after Ctrl-C before the agent finished the run"
    )
    assert container_end_reason({"Error": "cannot\n mount"}, 255) == (
        "the container exited with status 255 (engine: cannot mount) "
        "before the agent finished the run"
    )


def test_image_event_lines() -> None:
    build = {"event": "image_build", "image": "x:1", "step": "Step 1/2 : FROM b", "line": "ok"}
    assert image_event_line(build) == "  ok"
    layer = {"event": "image_pull", "image": "x:1", "layer": "ab12", "status": "Downloading"}
    assert image_event_line(layer) is None
    done = {**layer, "status": "Pull complete"}
    assert image_event_line(done) == "  pull x:1 ab12: Pull complete"
    ready = {"event": "image_ready", "image": "x:1", "id": "sha256:1", "how": "built"}
    assert image_event_line(ready) == "image x:1 ready (built, sha256:1)"
