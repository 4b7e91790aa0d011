"""Accuracy beside speed on real servers: serve + lm-eval in one run (one server), for the BF16
tiny model and its W8A8 INT8 checkpoint (bench-prep's, tests/e2e/conftest.py), then compared."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from click.testing import CliRunner

from results.cli import main as results_main
from runner.cli import main as run_main
from tests.conftest import missing

TASK_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "lm-eval-tasks"
TASK = "bench_tiny_mc"
LIMIT = 12  # documents; 4 choices each: 48 log-likelihood requests


def _run(root: Path, model: Path, *extra: str) -> Path:
    args = [
        "--executor", "local", "--vendor", "cpu", "--model", str(model), "--dtype", "bfloat16",
        "--max-model-len", "2048", "--env", "VLLM_CPU_KVCACHE_SPACE=1",
        "--scenario", "serve", "--scenario", "accuracy",
        "--input-len", "64", "--output-len", "16", "--qps", "4", "--num-prompts", "8",
        "--tasks", TASK, "--task-dir", str(TASK_DIR), "--limit", str(LIMIT), "--num-fewshot", "0",
        "--out", str(root), *extra,
    ]  # fmt: skip
    before = set(root.iterdir()) if root.is_dir() else set()
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (made,) = set(root.iterdir()) - before
    return made


def _results(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(results_main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_serve_and_accuracy_share_a_server_and_compare_side_by_side(
    tmp_path: Path, tiny_model: Path, quantized_model: Path
) -> None:
    if importlib.util.find_spec("lm_eval") is None:
        missing("lm-eval is not installed: make venv (the [eval] extra)")
    root = tmp_path / "runs"
    base = _run(root, tiny_model)
    cand = _run(root, quantized_model)  # what the INT8 weights cost, beside what they gain

    # one server served both points of a run: one start in its events, both points ok
    events = [json.loads(line) for line in (base / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("server_ready") == 1
    status = json.loads((base / "status.json").read_text())
    assert [(p["id"], p["verdict"]) for p in status["points"]] == [
        ("serve-qps4", "ok"),
        ("accuracy", "ok"),
    ]
    raw = json.loads((base / "raw" / "accuracy.json").read_text())
    assert raw["n-samples"][TASK] == {"effective": LIMIT, "original": 30}

    # the record: each score and its stderr, the counts and the task's version
    code, text, _ = _results("show", str(base), "--format", "json", "--scenario", "accuracy")
    (record,) = json.loads(text)
    assert code == 0 and record["verdict"] == "ok" and record["completed"] == LIMIT
    for metric in ("acc", "acc_norm"):
        assert 0.0 <= record["metrics"][f"{TASK}:{metric}"] <= 1.0
        assert record["metrics"][f"{TASK}:{metric}:stderr"] > 0.0
    assert record["extra"]["accuracy"]["tasks"][TASK]["version"] == 1.0

    # speed ratios and accuracy changes, side by side in one comparison
    code, compared, err = _results("compare", str(base), str(cand))
    assert code == 0, err
    assert "serve @ 4 QPS" in compared and "ratio" in compared, compared
    assert "accuracy change = candidate - baseline" in compared
    assert f"{TASK}  acc " in compared and "accuracy: 2 score(s)" in compared, compared
    code, as_json, _ = _results("compare", str(base), str(cand), "--format", "json")
    deltas = json.loads(as_json)["accuracy"]
    assert {d["metric"] for d in deltas} == {"acc", "acc_norm"}
    assert all(d["interval_95"] > 0 for d in deltas)
