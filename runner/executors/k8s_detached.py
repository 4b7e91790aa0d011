"""A submitted sweep seen later: its runs' state, collecting what is ready, cancelling it.

`bench-run k8s status|collect|cancel SWEEP` are thin over these. SWEEP is the folder a sweep
was submitted from (its k8s.json, or k8s-<sweep id>.json in a run's --out folder), such a
record file, or a sweep id, looked up by its label in --namespace / --context.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.agent.pod_contract import ANNOTATION_RUN_IDS
from runner.errors import PlanError
from runner.executors.k8s_api import Cluster, pod_state
from runner.executors.k8s_transport import (
    READY_EVENT,
    CollectError,
    collect_run_dir,
    seed_partial,
)
from runner.rundir import OK, STATUS_FILE, finish_abandoned, partial_dir, read_json

RECORD_FILE = "k8s.json"
RECORD_SCHEMA = 1


def record_path(folder: Path, sweep_id: str) -> Path:
    """Where a submission is recorded: a sweep folder's k8s.json, else k8s-<id>.json."""
    return folder / (RECORD_FILE if folder.name == sweep_id else f"k8s-{sweep_id}.json")


def read_record(path: Path) -> dict[str, Any] | None:
    record = read_json(path)
    return record if isinstance(record, dict) and record.get("schema") == RECORD_SCHEMA else None


@dataclass
class Sweep:
    """A submitted sweep: where its runs' directories go and how to reach its cluster."""

    sweep_id: str
    folder: Path  # where collected run directories go
    record: dict[str, Any]  # k8s.json's contents ({} when found by label only)
    cluster: Cluster

    def runs(self) -> dict[str, tuple[str, int]]:
        """Run id -> (Job name, completion index): from the record, else the Jobs' annotations."""
        if self.record.get("runs"):
            return {k: (v["job"], int(v["index"])) for k, v in self.record["runs"].items()}
        found: dict[str, tuple[str, int]] = {}
        for job in self.cluster.jobs(self.sweep_id):
            ids = json.loads((job.metadata.annotations or {}).get(ANNOTATION_RUN_IDS) or "[]")
            found.update({str(r): (job.metadata.name, i) for i, r in enumerate(ids)})
        return found


def find_sweep(
    where: str,
    out_dir: Path,
    *,
    context: str | None,
    namespace: str | None,
    kubeconfig: str | None,
) -> Sweep:
    """SWEEP as a folder, a record file or a sweep id; PlanError when it is none of them."""
    path = Path(where)
    candidates = [path, out_dir / f"k8s-{where}.json", out_dir / where / RECORD_FILE]
    if path.is_dir():  # the latest submission from it (a resumed sweep's is -r2, -r3...)
        records = [path / RECORD_FILE, *path.glob("k8s-*.json")]
        candidates[:1] = sorted(
            (p for p in records if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True
        )
    for candidate in candidates:
        record = read_record(candidate) if candidate.is_file() else None
        if record is not None:
            cluster = Cluster.connect(
                context or record.get("context"),
                namespace or record.get("namespace"),
                kubeconfig or record.get("kubeconfig"),
            )
            return Sweep(str(record["sweep_id"]), candidate.parent, record, cluster)
    if "/" in where or path.exists():
        raise PlanError(f"{where}: no k8s.json here; give the folder a sweep was submitted from")
    cluster = Cluster.connect(context, namespace, kubeconfig)
    if not cluster.jobs(where):
        raise PlanError(f"no sweep {where!r} in {cluster.where()}: check --namespace/--context")
    return Sweep(where, out_dir, {}, cluster)


@dataclass(frozen=True)
class RunState:
    run_id: str
    index: int
    pod: str | None
    state: str  # collected, ready, running, pending, failed, succeeded, missing
    detail: str = ""


def _ready(cluster: Cluster, pod_name: str) -> bool:
    return any(READY_EVENT in line for line in cluster.log_tail(pod_name, 5))


def run_states(sweep: Sweep) -> list[RunState]:
    """Each run's state: collected here, waiting to be collected, running, or why it failed."""
    states = []
    for run_id, (job_name, index) in sorted(sweep.runs().items(), key=lambda kv: kv[1]):
        if (sweep.folder / run_id).is_dir():
            states.append(RunState(run_id, index, None, "collected", str(sweep.folder / run_id)))
            continue
        pods = sweep.cluster.pods(job_name, index)
        if not pods:
            states.append(RunState(run_id, index, None, "missing", "no pod (deleted, or waiting)"))
            continue
        pod = pods[-1]
        name = pod.metadata.name
        state = pod_state(pod)
        if state.problem is not None:
            kind = "pending" if state.phase == "Pending" else "failed"
            states.append(RunState(run_id, index, name, kind, state.problem))
        elif state.phase == "Running":
            ready = _ready(sweep.cluster, name)
            states.append(RunState(run_id, index, name, "ready" if ready else "running"))
        else:
            code = state.exit_code
            states.append(RunState(run_id, index, name, state.phase.lower(), f"exit {code}"))
    return states


def collect(sweep: Sweep, *, give_up: bool = False) -> tuple[list[str], list[RunState]]:
    """Bring home every run whose pod holds it ready; finish failed ones as failed here.

    `give_up`: a run whose pod is stuck Pending is finished as failed too (else left). The
    collected run directories, and the runs left (still running, or stuck).
    """
    done: list[str] = []
    left: list[RunState] = []
    jobs: Mapping[str, Any] = sweep.record.get("jobs") or {}
    for state in run_states(sweep):
        if state.state == "ready" and state.pod is not None:
            try:
                done.append(str(collect_run_dir(sweep.cluster, state.pod, sweep.folder,
                                                state.run_id)))  # fmt: skip
            except CollectError as exc:
                left.append(RunState(state.run_id, state.index, state.pod, "ready", str(exc)))
        elif state.state in ("failed", "succeeded") or (state.state == "pending" and give_up):
            seed_partial(sweep.folder, state.run_id, jobs.get(state.run_id) or {})
            reason = state.detail or f"pod {state.pod} ended before its run was collected"
            with contextlib.suppress(OSError):
                final = finish_abandoned(partial_dir(sweep.folder, state.run_id), reason)
                done.append(str(final))
        elif state.state != "collected":
            left.append(state)
    _settle_sweep(sweep.folder)
    return done, left


def _settle_sweep(folder: Path) -> None:
    """A sweep folder's sweep.json: each configuration's run collected gets its state."""
    from runner.sweep import FAILED, ok_points, read_sweep, write_sweep  # noqa: PLC0415

    if not (folder / "sweep.json").is_file():
        return
    record = read_sweep(folder)
    for entry in record["configurations"]:
        collected = [r for r in entry["runs"] if (folder / r["run_id"] / STATUS_FILE).is_file()]
        for run in collected:
            run["ok_points"] = sorted(ok_points(folder / run["run_id"]))
        if collected:  # ok when every point is ok in some run (a resume's and the first's)
            done = {point for run in entry["runs"] for point in run.get("ok_points", ())}
            entry["state"] = OK if set(entry["points"]) <= done else FAILED
    write_sweep(folder, record)


def cancel(sweep: Sweep) -> list[str]:
    return sweep.cluster.delete_sweep(sweep.sweep_id)
