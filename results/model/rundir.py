"""Load a run directory (run.json, status.json, provenance.json) and find run directories."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from results.errors import ResultsError
from runner import rundir as contract  # the run-directory contract: the one runner/ module here
from runner.rundir import PROVENANCE_FILE, RUN_FILE, STATUS_FILE


@dataclass(frozen=True)
class RunDir:
    """One run directory as written by the runner's agent."""

    path: Path
    run: dict[str, Any]
    status: dict[str, Any]
    provenance: dict[str, Any]


def read_json_object(file: Path) -> dict[str, Any]:
    """Read a JSON object from `file`; raise ResultsError if it is unreadable or not an object."""
    try:
        return contract.read_json_object(file)
    except contract.RunDirError as exc:
        raise ResultsError(str(exc)) from exc


def is_run_dir(path: Path) -> bool:
    """True if `path` looks like a run directory (it holds a run.json or a status.json)."""
    # status.json alone still counts, so that load_run can say which file is missing
    return (path / RUN_FILE).is_file() or (path / STATUS_FILE).is_file()


def load_run(path: Path | str) -> RunDir:
    """Load the run directory at `path`."""
    path = Path(path)
    if not path.is_dir():
        raise ResultsError(f"{path} is not a directory: give a run directory or a folder of them")
    for name in (RUN_FILE, STATUS_FILE):
        if not (path / name).is_file():
            raise ResultsError(
                f"{path} is not a run directory (no {name}): give a directory bench-run wrote"
            )
    run = read_json_object(path / RUN_FILE)
    status = read_json_object(path / STATUS_FILE)
    # provenance.json is only carried along; a run that died early may not have one yet
    prov_file = path / PROVENANCE_FILE
    provenance = read_json_object(prov_file) if prov_file.is_file() else {}
    return RunDir(path=path, run=run, status=status, provenance=provenance)


def find_runs(paths: Iterable[Path | str]) -> list[Path]:
    """Run directories among `paths`: each is a run directory or a folder holding them."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if is_run_dir(path):
            candidates = [path]
        elif path.is_dir():
            # dot-directories are runs still being written (.<id>.partial) or leftovers of one
            candidates = sorted(
                child
                for child in path.iterdir()
                if child.is_dir() and not child.name.startswith(".") and is_run_dir(child)
            )
        else:
            raise ResultsError(f"{path} does not exist or is not a directory")
        for candidate in candidates:
            if candidate not in found:
                found.append(candidate)
    return found
