"""A disk that fills up mid-run: one clear line, every result written before intact, no temp files.

The disk is real: a tiny tmpfs mounted for the test (root needed; without it the test skips, and
fails under CI=true like every missing prerequisite).
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.executors.local import LocalTransport
from runner.executors.supervisor import Supervisor
from runner.plan import EngineConfig, ModelRef, Run
from runner.rundir import OK, Job, atomic_write_json, partial_dir, write_error_reason
from runner.scenarios.latency import LatencyParams
from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
LATENCY_OUTPUT = ROOT / "tests" / "fixtures" / "vllm-0.32.0-cpu" / "latency.json"
RUN_ID = "20261122-031500-tiny-llama-cpu-d15c00"
# Writes into the current directory until the filesystem refuses: a disk filling up for real.
FILL = (
    "f = open('filler', 'wb')\n"
    "try:\n"
    "    while True:\n"
    "        f.write(b'0' * 65536)\n"
    "        f.flush()\n"
    "except OSError:\n"
    "    pass\n"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: room for a run directory's JSON files, and quickly full."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        missing(f"cannot mount a tmpfs to fill (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def fill(directory: Path) -> None:
    subprocess.run([sys.executable, "-c", FILL], cwd=directory, check=True, timeout=60)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_a_full_disk_keeps_the_file_it_would_have_replaced(small_disk: Path) -> None:
    status = small_disk / "status.json"
    atomic_write_json(status, {"status": "running", "points": [{"id": "p1", "verdict": OK}]})
    fill(small_disk)
    with pytest.raises(OSError) as info:
        atomic_write_json(status, {"status": "ok", "points": ["x" * 100_000]})
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(status)
    assert json.loads(status.read_text()) == {
        "status": "running",
        "points": [{"id": "p1", "verdict": OK}],
    }
    assert temp_files(small_disk) == []
    assert write_error_reason(info.value, small_disk) == (
        f"no space left on tmpfs ({small_disk}) while writing {status}: free space and re-run"
    )


def test_a_run_that_fills_the_disk_ends_in_one_line(small_disk: Path) -> None:
    """A real agent whose second point fills the disk: it cannot record that point."""
    run = Run(
        run_id=RUN_ID,
        vendor="cpu",
        model=ModelRef(source="org/model"),
        engine=EngineConfig(),
        scenarios=("latency", "throughput"),
        params={"latency": LatencyParams(batch_size=1)},
    )
    copy = f"import shutil; shutil.copy({str(LATENCY_OUTPUT)!r}, 'raw/latency.json')"
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
            {"id": "throughput", "scenario": "throughput", "argv": [sys.executable, "-c", FILL],
             "result": "raw/throughput.json", "expected": 1000, "needs_server": False},
        ],
    }  # fmt: skip
    events: list[dict[str, Any]] = []
    transport = LocalTransport.start(Job.from_dict(job), small_disk)
    outcome = Supervisor(small_disk).supervise(run.run_id, transport, events.append)

    work = partial_dir(small_disk, RUN_ID)
    line = (
        f"no space left on tmpfs ({small_disk}) while writing {work / 'status.json'}: "
        "free space and re-run"
    )
    # The agent said it, and the executor, finding the disk still full, could not finish either.
    assert [e["reason"] for e in events if e.get("event") == "run_error"] == [line]
    assert (outcome.status, outcome.reason, outcome.exit_code) == ("failed", line, 1)
    assert outcome.run_dir == work
    assert [e["reason"] for e in events if e.get("event") == "run_finished"] == [line]
    # What was written before the disk filled is whole: the first point's verdict is there.
    status = json.loads((work / "status.json").read_text())
    assert status["status"] == "running"
    assert [(p["id"], p["verdict"]) for p in status["points"]] == [
        ("latency", OK),
        ("throughput", "not-run"),
    ]
    assert json.loads((work / "raw" / "latency.json").read_text())["avg_latency"] > 0
    assert not (small_disk / RUN_ID).exists(), "an unfinished run must not look finished"
    assert temp_files(small_disk) == []
