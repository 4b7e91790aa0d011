"""The SQLite index of a results root: built, refreshed, rebuilt, shared, damaged, and bypassed."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from results.analysis import index
from results.analysis.query import Filter, load_records
from results.cli import main
from results.errors import ResultsError
from tests.unit.synthetic_runs import make_run

RUNS = (
    "20261122-054648-tiny-llama-cpu-0a0001",
    "20261122-060000-tiny-llama-cpu-0a0002",
    "20261122-070000-other-model-rocm-0a0003",
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    results_root = tmp_path / "runs"
    results_root.mkdir()
    make_run(results_root, RUNS[0])
    make_run(results_root, RUNS[1], latency=1.5, dtype="float16")
    make_run(results_root, RUNS[2], quantization="fp8", qps=(1.0, 2.0), failed=("serve-qps2",))
    return results_root


def direct(root: Path) -> list[object]:
    return list(load_records([root], use_index=False))


def test_index_gives_the_records_parsing_gives(root: Path) -> None:
    summary = index.refresh(root)
    assert (summary.runs, summary.records, summary.parsed, summary.removed) == (3, 14, 3, 0)
    assert summary.rebuilt  # a new file
    assert summary.problems == ()
    assert summary.index == root / ".index.sqlite"
    from_index = load_records([root])
    assert from_index == direct(root)
    assert [r.run_id for r in from_index][::5] == [RUNS[0], RUNS[1], RUNS[2]]
    # what is stored is the documented schema: Record.to_dict() as JSON
    with sqlite3.connect(root / ".index.sqlite") as conn:
        data = json.loads(conn.execute("SELECT data FROM records LIMIT 1").fetchone()[0])
    assert data == from_index[0].to_dict()


def test_refresh_reads_only_what_changed(root: Path) -> None:
    index.refresh(root)
    assert index.refresh(root).parsed == 0

    raw = root / RUNS[1] / "raw" / "serve-qps4.json"
    data = json.loads(raw.read_text())
    data["mean_tpot_ms"] = 123.0
    raw.write_text(json.dumps(data))
    summary = index.refresh(root)
    assert (summary.parsed, summary.removed, summary.records) == (1, 0, 14)
    (changed,) = [r for r in load_records([root]) if r.run_id == RUNS[1] and r.qps == 4.0]
    assert changed.metric("tpot_mean_ms") == 123.0

    # same size, new mtime: still read again
    stat = raw.stat()
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert index.refresh(root).parsed == 1

    shutil.rmtree(root / RUNS[0])
    make_run(root, "20261122-080000-tiny-llama-cpu-0a0004", qps=(8.0,))
    summary = index.refresh(root)
    assert (summary.runs, summary.parsed, summary.removed, summary.records) == (3, 1, 1, 12)
    assert RUNS[0] not in {r.run_id for r in load_records([root])}


def test_new_index_version_or_schema_rebuilds(root: Path) -> None:
    index.refresh(root)
    for key in ("index_version", "record_schema"):
        with sqlite3.connect(root / ".index.sqlite") as conn:
            conn.execute("UPDATE meta SET value = '0' WHERE key = ?", (key,))
        summary = index.refresh(root)
        assert summary.rebuilt
        assert summary.parsed == 3
        assert not index.refresh(root).rebuilt


def test_rebuild_reads_everything(root: Path) -> None:
    index.refresh(root)
    summary = index.refresh(root, rebuild=True)
    assert (summary.rebuilt, summary.parsed, summary.records) == (True, 3, 14)


def test_damaged_index_is_rebuilt_with_a_warning(root: Path) -> None:
    index.refresh(root)
    (root / ".index.sqlite").write_bytes(b"this is not a database" * 100)
    warnings: list[str] = []
    records = load_records([root], warn=warnings.append)
    assert records == direct(root)
    assert len(warnings) == 1
    assert "is damaged" in warnings[0]
    assert "rebuilding it from the run directories" in warnings[0]
    assert index.refresh(root).parsed == 0  # a good index again


def test_index_that_cannot_be_written_falls_back(root: Path) -> None:
    # a directory where the index file should be: SQLite cannot open it
    (root / ".index.sqlite").mkdir()
    warnings: list[str] = []
    assert load_records([root], warn=warnings.append) == direct(root)
    assert len(warnings) == 1
    assert warnings[0].endswith(": reading the run directories directly")
    with pytest.raises(index.IndexUnavailable, match="cannot be written"):
        index.refresh(root)


def test_moved_root_keeps_its_index(root: Path, tmp_path: Path) -> None:
    index.refresh(root)
    moved = root.rename(tmp_path / "elsewhere")
    assert index.refresh(moved).parsed == 0
    assert {r.run_dir for r in load_records([moved])} == {str(moved / name) for name in RUNS}


def test_skipped_directories(root: Path) -> None:
    (root / "notes").mkdir()
    (root / ".20261122-090000-x-cpu-0a0005.partial").mkdir()  # a run being written: silent
    broken = root / RUNS[1] / "status.json"
    broken.write_text(broken.read_text()[:100])
    warnings: list[str] = []
    records = load_records([root], warn=warnings.append)
    assert {r.run_id for r in records} == {RUNS[0], RUNS[2]}
    assert warnings[0].startswith(f"skipped {root / RUNS[1]}: {broken} is not valid JSON: ")
    assert warnings[0].endswith("the run may have been cut off, re-run it")
    assert warnings[1] == f"skipped {root / 'notes'}: not a run directory (no run.json)"
    assert len(warnings) == 2

    with pytest.raises(ResultsError, match=r"status\.json is not valid JSON"):
        load_records([root], strict=True)

    # the broken run is remembered as broken until its files change, then read again
    assert index.refresh(root).parsed == 0
    make_run(root / "fixed", RUNS[1])
    shutil.copy(root / "fixed" / RUNS[1] / "status.json", broken)
    shutil.rmtree(root / "fixed")
    summary = index.refresh(root)
    assert summary.parsed == 1
    assert [p.path.name for p in summary.problems] == ["notes"]


def test_run_named_directly_must_load(root: Path) -> None:
    (root / RUNS[0] / "run.json").unlink()
    with pytest.raises(ResultsError, match=r"is not a run directory \(no run\.json\)"):
        load_records([root / RUNS[0]])
    warnings: list[str] = []
    load_records([root], warn=warnings.append)
    assert warnings == [
        f"skipped {root / RUNS[0]}: {root / RUNS[0]} is not a run directory (no run.json): "
        "give a directory bench-run wrote"
    ]


def test_a_run_given_twice_counts_once(root: Path) -> None:
    records = load_records([root / RUNS[2], root])
    assert len(records) == 14
    assert [r.run_id for r in records[:4]] == [RUNS[2]] * 4


@pytest.mark.parametrize(
    "expression",
    [
        "model=tiny-llama",
        "model=.cache/tiny-llama",
        "model=TINY-LLAMA",
        "run=20261122-06",
        "run=20261122",
        "precision=fp8|float16",
        "scenario=serve,vendor=cpu",
        "verdict=failed",
        "gpu=none",
        "qps=2",
        "point=latency,precision=bfloat16",
    ],
)
def test_filters_narrow_in_sql_as_in_python(root: Path, expression: str) -> None:
    selection = Filter.parse([expression])
    everything = load_records([root])
    assert load_records([root], where=selection) == selection.select(everything)


def test_parallel_reading_gives_the_same_index(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = load_records([root])
    monkeypatch.setattr(index, "PARALLEL_FROM", 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    summary = index.refresh(root, rebuild=True)
    assert summary.parsed == 3
    assert load_records([root]) == serial


def test_concurrent_refreshes(root: Path) -> None:
    for n in range(10):
        make_run(root, f"20261122-1000{n:02d}-tiny-llama-cpu-0b{n:04d}", qps=(1.0,))
    code = (
        "import sys; from results.analysis import index; print(index.refresh(sys.argv[1]).records)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {"44"}
    summary = index.refresh(root)
    assert (summary.parsed, summary.records) == (0, 44)


def test_index_command(root: Path) -> None:
    (root / "notes").mkdir()
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{root / '.index.sqlite'}: 3 run(s), 14 record(s); rebuilt: 3 run(s) read, "
        "0 removed, 1 skipped\n"
    )
    assert (
        result.stderr == f"warning: skipped {root / 'notes'}: not a run directory (no run.json)\n"
    )
    again = runner.invoke(main, ["index", str(root), "--rebuild"], catch_exceptions=False)
    assert "rebuilt: 3 run(s) read" in again.stdout
    missing = runner.invoke(main, ["index", str(root / "nowhere")], catch_exceptions=False)
    assert missing.exit_code == 1
    assert missing.stderr == f"error: {root / 'nowhere'} does not exist or is not a directory\n"
