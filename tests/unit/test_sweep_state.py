"""Sweeps (runner/sweep.py, bench-run --plan/--resume): order, sweep.json's states, resume."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from runner.executors.base import RunOutcome
from runner.executors.local import LocalExecutor
from runner.plan import Plan
from runner.planfile import Configuration
from runner.rundir import EXIT_INTERRUPTED, FAILED, INTERRUPTED, OK, STATUS_FILE
from runner.sweep import (
    RUNNING,
    SWEEP_FILE,
    options_for_points,
    order,
    read_sweep,
    remaining,
    settle,
)
from tests.unit.test_planfile import bench_run

run_cli = importlib.import_module("runner.cli.run")  # the package's `run` is the command

PLAN = """vendor: cpu
executor: local
model: {model}
qps: [1, 3]
input_len: 32
output_len: 8
matrix:
  dtype: [bfloat16, float32, float16]
"""


def test_order_groups_by_image_then_model_keeping_the_matrix_order() -> None:
    def config(image: str, model: str, tp: int) -> Configuration:
        return Configuration({"image": image, "model": model, "tp": tp}, {"tp": tp})

    configurations = [config("b", "m1", 1), config("a", "m2", 2), config("b", "m1", 3),
                      config("a", "m1", 4)]  # fmt: skip
    assert [c.options["tp"] for c in order(configurations)] == [4, 2, 1, 3]


def test_options_for_points_keep_only_what_is_left() -> None:
    options = {"qps": "1,3,5", "scenario": ("serve", "latency")}
    narrowed = options_for_points(options, ["serve-qps5", "latency"])
    assert narrowed["qps"] == "5" and narrowed["scenario"] == ["serve", "latency"]
    assert options_for_points(options, ["latency"])["scenario"] == ["latency"]
    assert options_for_points({"qps": "1"}, ["serve-qps1"])["scenario"] == ["serve"]


def test_settle_and_remaining(tmp_path: Path) -> None:
    write_status(tmp_path / "r1", {"serve-qps1": OK, "serve-qps3": FAILED})
    record: dict[str, Any] = {"configurations": [
        {"points": ["serve-qps1", "serve-qps3"], "state": RUNNING, "runs": [{"run_id": "r1"}]},
        {"points": ["serve-qps1"], "state": "pending", "runs": []},
    ]}  # fmt: skip
    settle(tmp_path, record)
    first, second = record["configurations"]
    assert first["state"] == INTERRUPTED  # `running` found: bench-run was killed
    assert remaining(first) == ["serve-qps3"] and remaining(second) == ["serve-qps1"]
    write_status(tmp_path / "r2", {"serve-qps3": OK})
    first["runs"].append({"run_id": "r2"})
    settle(tmp_path, record)
    assert first["state"] == OK and remaining(first) == []


def write_status(run_dir: Path, verdicts: dict[str, str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    points = [{"id": k, "verdict": v} for k, v in verdicts.items()]
    (run_dir / STATUS_FILE).write_text(json.dumps({"status": OK, "points": points}))


class FakeRuns:
    """Stands in for the agent: each run's points get the verdicts the test scripts."""

    def __init__(self, script: dict[str, tuple[str, ...]]) -> None:
        self.script = script  # configuration index prefix (c0002) -> its points that fail
        self.ran: list[tuple[str, list[str]]] = []
        self.interrupt_at: str | None = None

    def __call__(self, executor: Any, plan: Plan, reporter: Any) -> list[RunOutcome]:
        (run,) = plan.runs
        ids = [p.id for p in run.points()]
        self.ran.append((run.run_id, ids))
        failing = self.script.get(run.run_id[:5], ())
        run_dir = executor.settings.out_root / run.run_id
        write_status(run_dir, {p: FAILED if p in failing else OK for p in ids})
        code = EXIT_INTERRUPTED if run.run_id.startswith(self.interrupt_at or "-") else 0
        return [RunOutcome(run.run_id, run_dir, FAILED if failing else OK, None, code)]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRuns:
    runs = FakeRuns({})
    monkeypatch.setattr(run_cli, "_execute", runs)
    monkeypatch.setattr(run_cli, "show_results", lambda outcomes: None)
    monkeypatch.setattr(LocalExecutor, "preflight", lambda self, plan, note=None: [])
    return runs


def start_sweep(tmp_path: Path, model: Path) -> tuple[Path, Path, int]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(model=model))
    result = bench_run("--plan", str(plan), "--out", str(tmp_path / "runs"))
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    return plan, sweep_dir, result.exit_code


def states(sweep_dir: Path) -> list[str]:
    return [c["state"] for c in read_sweep(sweep_dir)["configurations"]]


def test_a_sweep_runs_then_resumes_only_what_is_not_ok(
    tmp_path: Path, model_dir: Path, fake: FakeRuns
) -> None:
    fake.script = {"c0002": ("serve-qps3",)}
    fake.interrupt_at = "c0003"
    fake.script["c0003"] = ("serve-qps3",)
    plan, sweep_dir, code = start_sweep(tmp_path, model_dir)
    assert code == EXIT_INTERRUPTED
    assert states(sweep_dir) == [OK, FAILED, INTERRUPTED]
    record = read_sweep(sweep_dir)
    assert record["plan_text"] == plan.read_text() and record["plan_file"] == str(plan.resolve())
    assert record["configurations"][0]["varying"] == {"dtype": "bfloat16"}
    fake.ran.clear()
    fake.script, fake.interrupt_at = {}, None
    result = bench_run("--resume", str(sweep_dir))
    assert result.exit_code == 0, result.stderr
    # the ok configuration is not run again; the others run only their failed point, in a new
    # run directory recorded beside the first
    assert [(rid[:5], rid.endswith("-r2"), ids) for rid, ids in fake.ran] == [
        ("c0002", True, ["serve-qps3"]),
        ("c0003", True, ["serve-qps3"]),
    ]
    assert states(sweep_dir) == [OK, OK, OK]
    second = read_sweep(sweep_dir)["configurations"][1]
    assert [r["ok_points"] for r in second["runs"]] == [["serve-qps1"], ["serve-qps3"]]
    fake.ran.clear()
    result = bench_run("--resume", str(sweep_dir))
    assert result.exit_code == 0 and "nothing to resume" in result.stderr and not fake.ran


def test_a_killed_bench_run_leaves_running_which_resume_treats_as_interrupted(
    tmp_path: Path, model_dir: Path, fake: FakeRuns
) -> None:
    _, sweep_dir, _ = start_sweep(tmp_path, model_dir)
    record = read_sweep(sweep_dir)
    entry = record["configurations"][2]
    entry["state"], entry["runs"] = RUNNING, [{"run_id": "c0003-gone", "points": entry["points"]}]
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(record))
    fake.ran.clear()
    (sweep_dir / ".c0003-gone.partial").mkdir()  # its agent may be still writing it
    result = bench_run("--resume", str(sweep_dir))
    assert result.exit_code == 1 and "still being written" in result.stderr and not fake.ran
    (sweep_dir / ".c0003-gone.partial").rmdir()
    assert bench_run("--resume", str(sweep_dir)).exit_code == 0
    assert [(rid[:5], ids) for rid, ids in fake.ran] == [("c0003", ["serve-qps1", "serve-qps3"])]


def test_resume_refuses_a_changed_plan_and_a_directory_that_is_no_sweep(
    tmp_path: Path, model_dir: Path, fake: FakeRuns
) -> None:
    fake.script = {"c0001": ("serve-qps1",)}
    plan, sweep_dir, _ = start_sweep(tmp_path, model_dir)
    plan.write_text(plan.read_text().replace("qps: [1, 3]", "qps: [1, 5]"))
    result = bench_run("--resume", str(sweep_dir))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "line 4: 'qps: [1, 3]' is now 'qps: [1, 5]'" in result.stderr
    result = bench_run("--resume", str(tmp_path))
    assert result.exit_code == 2 and "not a sweep directory" in result.stderr
    result = bench_run("--resume", str(sweep_dir), "--dry-run", "--tp", "2")
    assert result.exit_code == 2 and "drop --dry-run, --tp" in result.stderr
