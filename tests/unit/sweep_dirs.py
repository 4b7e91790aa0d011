"""Small sweep directories for results' tests: the fixture run copied once per configuration,
sweep.json written as runner/sweep.py writes it (imported here, in tests only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from runner.planfile import expand, parse_plan
from runner.sweep import run_name, settle, sweep_record, write_sweep

FIXTURE = Path(__file__).parents[1] / "fixtures/runs/20261122-054648-tiny-llama-cpu-d56769"
SWEEP_NAME = "sweep-20261202-053000-1a2b3c"
PLAN = """vendor: cpu
model: org/tiny
qps: [2, 4, 8]
matrix:
  tp: [1, 2]
  dtype: [bfloat16, float16]
"""
POINTS = ["serve-qps2", "serve-qps4", "serve-qps8", "latency", "throughput"]


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _copy_run(target: Path, varying: dict[str, Any], keep: list[str] | None = None) -> None:
    shutil.copytree(FIXTURE, target)

    def run(data: dict[str, Any]) -> None:
        data["run_id"] = target.name
        data["engine"].update(varying)
        if keep is not None:
            data["points"] = [p for p in data["points"] if p["id"] in keep]

    def status(data: dict[str, Any]) -> None:
        data["run_id"] = target.name
        if keep is not None:
            data["points"] = [p for p in data["points"] if p["id"] in keep]

    _edit(target / "run.json", run)
    _edit(target / "status.json", status)


def fail_point(run_dir: Path, point_id: str) -> None:
    def status(data: dict[str, Any]) -> None:
        for point in data["points"]:
            if point["id"] == point_id:
                point["verdict"], point["reasons"] = "failed", ["server exited"]

    _edit(run_dir / "status.json", status)


def make_sweep(root: Path, *, resumed: bool = True) -> Path:
    """A sweep of 4 configurations (tp x dtype); with `resumed`, the first configuration's
    serve-qps4 failed in its first run and was re-run, ok, in a second (`-r2`)."""
    root.mkdir(parents=True, exist_ok=True)
    plan_file = root / "plan.yaml"
    plan_file.write_text(PLAN)
    plan = parse_plan(plan_file, PLAN)
    configurations = expand(plan, {})
    sweep = root / SWEEP_NAME
    sweep.mkdir(parents=True)
    record = sweep_record(plan, {}, configurations, [POINTS] * len(configurations))
    for entry, configuration in zip(record["configurations"], configurations, strict=True):
        name = run_name(entry["index"], configuration)
        _copy_run(sweep / name, dict(configuration.varying))
        entry["runs"].append({"run_id": name})
        entry["state"] = "ok"
    if resumed:
        first = record["configurations"][0]
        fail_point(sweep / first["runs"][0]["run_id"], "serve-qps4")
        name = run_name(1, configurations[0], attempt=2)
        _copy_run(sweep / name, dict(configurations[0].varying), keep=["serve-qps4"])
        first["runs"].append({"run_id": name})
    settle(sweep, record)
    write_sweep(sweep, record)
    return sweep
