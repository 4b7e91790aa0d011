"""The bench-results command line, run in-process with click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from results.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-0.32.0-cpu"
RUN_ID = "20261122-031757-tiny-llama-cpu-abc123"


def make_run(root: Path, run_id: str = RUN_ID) -> Path:
    """A finished run with one ok serve point and one ok latency point."""
    run_dir = root / run_id
    (run_dir / "raw").mkdir(parents=True)
    points: list[dict[str, Any]] = [
        {"id": "serve-qps10", "scenario": "serve", "qps": 10, "num_prompts": 20},
        {"id": "latency", "scenario": "latency", "qps": None, "num_prompts": 4},
    ]
    run = {
        "run_id": run_id,
        "vendor": "cpu",
        "model": {"source": "org/tiny-llama", "local_path": None},
        "output_len": 32,
        "latency": {"batch_size": 4, "iters": 3, "warmup_iters": 1},
        "points": points,
    }
    status = {
        "format": 1,
        "run_id": run_id,
        "status": "ok",
        "points": [
            {
                "id": p["id"],
                "scenario": p["scenario"],
                "verdict": "ok",
                "reasons": [],
                "result": f"raw/{p['id']}.json",
                "log": f"logs/{p['id']}.log",
            }
            for p in points
        ],
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    (run_dir / "status.json").write_text(json.dumps(status))
    (run_dir / "provenance.json").write_text("{}")
    for point, name in (("serve-qps10", "serve-ok.json"), ("latency", "latency.json")):
        (run_dir / "raw" / f"{point}.json").write_text((FIXTURES / name).read_text())
    return run_dir


def show(*paths: Path) -> Result:
    # catch_exceptions=False: a traceback must fail the test, not hide in result.exception
    return CliRunner().invoke(main, ["show", *map(str, paths)], catch_exceptions=False)


def test_show_good_run(tmp_path: Path) -> None:
    result = show(make_run(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "(ms)" in lines[0]
    assert lines[3].split()[:6] == ["serve", "10", "20/0", "9.19", "294.22", "25.10"]
    assert lines[4].split()[:2] == ["latency", "-"]
    assert len(lines) == 5  # every point ok: nothing listed below the table


def test_show_folder_of_runs_skips_partial(tmp_path: Path) -> None:
    make_run(tmp_path)
    make_run(tmp_path, "20261122-040000-tiny-llama-rocm-def456")
    (tmp_path / ".20261122-050000-tiny-llama-cuda-000000.partial").mkdir()
    result = show(tmp_path)
    assert result.exit_code == 0, result.output
    column = [line.split()[0] for line in result.stdout.splitlines()[3:]]
    assert column == ["cpu-abc123", "cpu-abc123", "rocm-def456", "rocm-def456"]


def test_show_without_run_json(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / "run.json").unlink()
    result = show(run_dir)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
    assert "is not a run directory (no run.json)" in result.stderr


def test_show_empty_dir(tmp_path: Path) -> None:
    result = show(tmp_path)
    assert result.exit_code == 1
    assert result.stderr == f"error: no run directory found under {tmp_path}: " + (
        "give a directory holding run.json, or a folder of them\n"
    )


def test_show_truncated_raw(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    raw = run_dir / "raw" / "serve-qps10.json"
    raw.write_text(raw.read_text()[:500])
    result = show(run_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[3].split()[0] == "serve"
    assert lines[3].split()[-1] == "failed"
    assert lines[-1].startswith("serve-qps10: failed: raw/serve-qps10.json is not valid JSON")


def test_show_truncated_status_json(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / "status.json").write_text('{"format": 1, "po')
    result = show(run_dir)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "status.json is not valid JSON" in result.stderr
