"""A sweep: a plan file's configurations, their order, their state in sweep.json, and resume."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import PlanError, PreflightError
from runner.planfile import Configuration, PlanFile, parse_plan, read_plan
from runner.request import RunRequest
from runner.rundir import OK, STATUS_FILE, atomic_write_json, partial_dir, read_json

SWEEP_FILE = "sweep.json"
SWEEP_SCHEMA = 1
PENDING, RUNNING, FAILED, INTERRUPTED = "pending", "running", "failed", "interrupted"
STATES = (PENDING, RUNNING, OK, FAILED, INTERRUPTED)


def order(configurations: Sequence[Configuration]) -> list[Configuration]:
    """Configurations grouped by image, then model: each image pulled or built once, each model
    read once; within a group the matrix's own order is kept (sorted() is stable)."""
    return sorted(
        configurations,
        key=lambda c: (str(c.options.get("image") or ""), str(c.options.get("model") or "")),
    )


def run_name(index: int, configuration: Configuration, attempt: int = 1) -> str:
    """A configuration's run directory name: its place in the sweep and its matrix values."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", configuration.label().replace("=", "-"))[:60]
    suffix = f"-r{attempt}" if attempt > 1 else ""
    return f"c{index:04d}-{slug.strip('-')}{suffix}"


# RunRequest's path-valued fields (wheelhouse, out_dir, model_pvc_root, ...)
_PATH_FIELDS = tuple(f.name for f in fields(RunRequest) if "Path" in str(f.type))


def requests_for(
    configurations: Sequence[Configuration], out_dir: Path | None = None
) -> list[RunRequest]:
    """One request per configuration (run directories under `out_dir` when given)."""
    requests = []
    for configuration in configurations:
        options = dict(configuration.options)
        if not options.get("model"):
            raise PlanError("the plan gives no model: add `model: ...` to the file, or --model")
        for name in _PATH_FIELDS:  # read back from sweep.json as text
            if isinstance(options.get(name), str):
                options[name] = Path(options[name])
        request = RunRequest.from_options(options)
        requests.append(request if out_dir is None else replace(request, out_dir=out_dir))
    return requests


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def new_sweep(plan: PlanFile, out_root: Path) -> Path:
    """The sweep directory's path for a plan started now (not created yet)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return out_root / f"sweep-{stamp}-{plan.sha256[:6]}"


def sweep_record(
    plan: PlanFile,
    overrides: Mapping[str, Any],
    configurations: Sequence[Configuration],
    points: Sequence[Sequence[str]],
) -> dict[str, Any]:
    """sweep.json at the start: the plan as resolved, every configuration pending."""
    return {
        "schema": SWEEP_SCHEMA,
        "plan_file": str(plan.path.resolve()),
        "plan_sha256": plan.sha256,
        "plan_text": plan.text,
        "overrides": {k: _plain(v) for k, v in overrides.items()},
        "configurations": [
            {
                "index": index,
                "label": c.label(),
                "varying": {k: _plain(v) for k, v in c.varying.items()},
                "options": {k: _plain(v) for k, v in c.options.items()},
                "points": list(ids),
                "state": PENDING,
                "runs": [],
            }
            for index, (c, ids) in enumerate(zip(configurations, points, strict=True), 1)
        ],
    }


def write_sweep(sweep_dir: Path, record: Mapping[str, Any]) -> None:
    atomic_write_json(sweep_dir / SWEEP_FILE, record)


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    """sweep.json of a sweep directory; PlanError when the directory is not a sweep."""
    record = read_json(sweep_dir / SWEEP_FILE) if sweep_dir.is_dir() else None
    if not isinstance(record, dict) or record.get("schema") != SWEEP_SCHEMA:
        raise PlanError(f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE}): check --resume")
    return record


def plan_change(record: Mapping[str, Any]) -> str | None:
    """How the plan file differs from the one the sweep started with, in one line; None if not."""
    path = Path(str(record["plan_file"]))
    plan = read_plan(path)
    if plan.sha256 == record["plan_sha256"]:
        return None
    old, new = str(record["plan_text"]).splitlines(), plan.text.splitlines()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new).get_opcodes():
        if tag != "equal":
            was = "; ".join(old[i1:i2]) or "(nothing)"
            now = "; ".join(new[j1:j2]) or "(nothing)"
            return f"{path} changed since the sweep started: line {j1 + 1}: {was!r} is now {now!r}"
    return f"{path} changed since the sweep started"


def ok_points(run_dir: Path) -> set[str]:
    """The points a run directory judged ok (none when it has no status.json)."""
    status = read_json(run_dir / STATUS_FILE)
    points = status.get("points") if isinstance(status, dict) else None
    return {
        str(p.get("id")) for p in points or () if isinstance(p, dict) and p.get("verdict") == OK
    }


def settle(sweep_dir: Path, record: dict[str, Any]) -> None:
    """Each configuration's ok points from its run directories; `running` found here (a killed
    bench-run) becomes interrupted, and a configuration with all its points ok becomes ok."""
    for entry in record["configurations"]:
        done: set[str] = set()
        for run in entry["runs"]:
            run["ok_points"] = sorted(ok_points(sweep_dir / run["run_id"]))
            done |= set(run["ok_points"])
        if set(entry["points"]) <= done:
            entry["state"] = OK
        elif entry["state"] in (RUNNING, OK):
            entry["state"] = INTERRUPTED


def remaining(entry: Mapping[str, Any]) -> list[str]:
    """The configuration's points no run of it has judged ok, in their order."""
    done = {p for run in entry["runs"] for p in run.get("ok_points", ())}
    return [p for p in entry["points"] if p not in done]


def options_for_points(options: Mapping[str, Any], points: Sequence[str]) -> dict[str, Any]:
    """The configuration's options narrowed to `points`: the serving rates not yet ok, and
    only the scenarios with a point left."""
    rates = [p.removeprefix("serve-qps") for p in points if p.startswith("serve-qps")]
    scenarios = [s for s in options.get("scenario") or ["serve"] if _has(s, points)]
    narrowed = {**options, "scenario": scenarios}
    if rates:
        narrowed["qps"] = ",".join(rates)
    return narrowed


def _has(scenario: str, points: Sequence[str]) -> bool:
    return any(p == scenario or p.startswith(f"{scenario}-") for p in points)


def _check_unfinished(sweep_dir: Path, record: Mapping[str, Any]) -> None:
    """A killed bench-run's agent may still be writing its run (the local one has its own
    session): resuming beside it would run two servers at once."""
    for entry in record["configurations"]:
        for run in entry["runs"] if entry["state"] == RUNNING else ():
            partial = partial_dir(sweep_dir, run["run_id"])
            if partial.exists():
                raise PreflightError(
                    f"{partial} is still being written: its agent may be running; wait for it "
                    "to finish, or remove the directory, then resume"
                )


def resume_plan(sweep_dir: Path) -> tuple[dict[str, Any], list[tuple[int, Configuration]]]:
    """sweep.json settled, and the configurations to run again, each narrowed to its points
    not yet ok; PlanError when the directory is no sweep or its plan file changed."""
    record = read_sweep(sweep_dir)
    change = plan_change(record)
    if change is not None:
        raise PlanError(f"{change}: start a new sweep, or restore the file to resume")
    parse_plan(Path(record["plan_file"]), str(record["plan_text"]))  # still valid as written
    _check_unfinished(sweep_dir, record)
    settle(sweep_dir, record)
    todo = []
    for entry in record["configurations"]:
        if entry["state"] == OK:
            continue
        options = options_for_points(entry["options"], remaining(entry))
        todo.append((int(entry["index"]), Configuration(options, entry["varying"])))
    return record, todo
