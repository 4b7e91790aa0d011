"""Runs of a plan's sweep: sweep.json beside them gives each run its sweep and matrix values,
and a point that a later run of the same configuration re-ran is seen once (the latest)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from results.errors import ResultsError
from results.model.rundir import read_json_object
from results.model.schema import Record
from runner.rundir import FAILED, OK, STATUS_FILE

SWEEP_FILE = "sweep.json"  # runner/sweep.py's name (results/ imports no runner/ module but rundir)


@dataclass(frozen=True)
class SweepRun:
    """One run directory of a sweep: its configuration and the points later runs re-ran."""

    sweep: str
    index: int
    matrix: dict[str, Any]
    superseded: frozenset[str]


@dataclass(frozen=True)
class Sweep:
    """sweep.json as results reads it: the configurations (index, label, matrix values, state,
    run ids) and, by run directory name, what each run belongs to."""

    path: Path
    configurations: tuple[dict[str, Any], ...]
    runs: dict[str, SweepRun]

    @property
    def name(self) -> str:
        return self.path.name

    def axes(self) -> dict[str, list[Any]]:
        """Each matrix key and its values, in the order the configurations give them."""
        axes: dict[str, list[Any]] = {}
        for entry in self.configurations:
            for key, value in entry["varying"].items():
                values = axes.setdefault(key, [])
                if value not in values:
                    values.append(value)
        return axes


def is_sweep_dir(path: Path) -> bool:
    return (path / SWEEP_FILE).is_file()


def _attempted(run_dir: Path) -> set[str]:
    """The points a run directory ran (judged ok or failed; a not-run point was not tried)."""
    if not (run_dir / STATUS_FILE).is_file():
        return set()
    points = read_json_object(run_dir / STATUS_FILE).get("points")
    return {
        str(p.get("id"))
        for p in (points if isinstance(points, list) else ())
        if isinstance(p, dict) and p.get("verdict") in (OK, FAILED)
    }


def _entry(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ResultsError("a configuration is not a JSON object")
    runs = raw.get("runs")
    varying = raw.get("varying")
    return {
        "index": raw.get("index"),
        "label": str(raw.get("label") or ""),
        "varying": dict(varying) if isinstance(varying, dict) else {},
        "state": str(raw.get("state") or ""),
        "runs": [str(r["run_id"]) for r in runs if isinstance(r, dict) and r.get("run_id")]
        if isinstance(runs, list)
        else [],
    }


def read_sweep(path: Path) -> Sweep:
    """The sweep directory at `path`; ResultsError if its sweep.json cannot be read."""
    data = read_json_object(path / SWEEP_FILE)
    raw = data.get("configurations")
    if not isinstance(raw, list):
        raise ResultsError(f"{path / SWEEP_FILE} has no configurations list")
    try:
        entries = tuple(_entry(item) for item in raw)
    except ResultsError as exc:
        raise ResultsError(f"{path / SWEEP_FILE}: {exc}") from None
    runs: dict[str, SweepRun] = {}
    for entry in entries:
        later: set[str] = set()
        for run_id in reversed(entry["runs"]):  # the latest first: what it ran supersedes
            runs[run_id] = SweepRun(path.name, entry["index"], entry["varying"], frozenset(later))
            later |= _attempted(path / run_id)
    return Sweep(path, entries, runs)


def sweeps_of(records: Iterable[Record]) -> list[Sweep]:
    """The sweeps the records' run directories sit in, in path order (unreadable ones left out)."""
    dirs = sorted({Path(r.run_dir).parent for r in records if r.run_dir and r.sweep})
    found = []
    for path in dirs:
        try:
            found.append(read_sweep(path))
        except ResultsError:
            continue
    return found


def apply_sweeps(
    records: Iterable[Record], warn: Callable[[str], None] | None = None
) -> list[Record]:
    """`records` with their sweep and matrix values, less the points a later run re-ran."""
    cache: dict[Path, Sweep | None] = {}
    out: list[Record] = []
    for record in records:
        if not record.run_dir:
            out.append(record)
            continue
        run_dir = Path(record.run_dir)
        parent = run_dir.parent
        if parent not in cache:
            cache[parent] = _load(parent, warn)
        sweep = cache[parent]
        run = sweep.runs.get(run_dir.name) if sweep else None
        if run is None:
            out.append(record)
        elif record.point_id not in run.superseded:
            out.append(replace(record, sweep=run.sweep, matrix=dict(run.matrix)))
    return out


def _load(path: Path, warn: Callable[[str], None] | None) -> Sweep | None:
    if not is_sweep_dir(path):
        return None
    try:
        return read_sweep(path)
    except ResultsError as exc:
        if warn is not None:
            warn(f"{exc}: its runs are read as runs outside a sweep")
        return None
