"""A detached sweep's collect settles sweep.json from every run of a configuration."""

from __future__ import annotations

import json
from pathlib import Path

from runner.executors.k8s_detached import _settle_sweep
from runner.sweep import SWEEP_SCHEMA, read_sweep, write_sweep


def _run(folder: Path, run_id: str, ok: list[str], failed: list[str]) -> None:
    points = [{"id": p, "verdict": "ok"} for p in ok]
    points += [{"id": p, "verdict": "failed"} for p in failed]
    (folder / run_id).mkdir()
    (folder / run_id / "status.json").write_text(json.dumps({"points": points}))


def _sweep(folder: Path, runs: list[str]) -> None:
    entry = {"points": ["a", "b", "c"], "state": "running", "runs": [{"run_id": r} for r in runs]}
    write_sweep(folder, {"schema": SWEEP_SCHEMA, "configurations": [entry]})


def test_a_resumed_configuration_is_ok_when_its_runs_together_did_every_point(
    tmp_path: Path,
) -> None:
    _run(tmp_path, "c1", ["a", "b"], ["c"])
    _run(tmp_path, "c1-r2", ["c"], [])  # the resume ran only what was left
    _sweep(tmp_path, ["c1", "c1-r2"])
    _settle_sweep(tmp_path)
    [entry] = read_sweep(tmp_path)["configurations"]
    assert entry["state"] == "ok"
    assert [r["ok_points"] for r in entry["runs"]] == [["a", "b"], ["c"]]


def test_a_point_no_run_did_is_a_failed_configuration(tmp_path: Path) -> None:
    _run(tmp_path, "c1", ["a"], ["b", "c"])
    _sweep(tmp_path, ["c1"])
    _settle_sweep(tmp_path)
    assert read_sweep(tmp_path)["configurations"][0]["state"] == "failed"


def test_a_configuration_with_nothing_collected_keeps_its_state(tmp_path: Path) -> None:
    _sweep(tmp_path, ["c1"])  # its pod still runs: no run directory here yet
    _settle_sweep(tmp_path)
    [entry] = read_sweep(tmp_path)["configurations"]
    assert entry["state"] == "running" and "ok_points" not in entry["runs"][0]
