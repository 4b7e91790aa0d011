"""The run-directory contract (standard library only): names, versions, verdicts, job, status.

The agent writes a run directory, the executors finish one an agent abandoned, and `results/`
reads it back; all three import this module and nothing else of each other, so a run directory
copied off another machine or a Kubernetes volume reads exactly like a local one.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# -- names and versions -----------------------------------------------------------------------
RUN_FILE = "run.json"  # the Run as planned
STATUS_FILE = "status.json"  # the run's state and every point's verdict, kept current
PROVENANCE_FILE = "provenance.json"  # what ran: GPUs, driver, vLLM, image, commands, env
EVENTS_FILE = "events.jsonl"  # the agent's JSON-line events, as they were emitted
SERVER_LOG = "server.log"
RAW_DIR = "raw"  # vLLM's own result files, untouched
LOGS_DIR = "logs"  # one log per point
DATA_DIR = "data"  # prompt files the agent made (the sonnet recipe)
PARTIAL_SUFFIX = ".partial"

JOB_SCHEMA = 1
RUN_DIR_FORMAT = 1
PLAN_SCHEMA = 1

# -- verdicts of points and states of runs ----------------------------------------------------
OK = "ok"
FAILED = "failed"
NOT_RUN = "not-run"
RUNNING = "running"
INTERRUPTED = "interrupted"
REJECTED = "rejected"  # an outcome, never a status.json state: nothing ran, nothing was written
UNFINISHED_VERDICTS = (NOT_RUN, RUNNING)
RUN_STATES = (RUNNING, OK, FAILED, INTERRUPTED)

# -- the agent's exit statuses ----------------------------------------------------------------
EXIT_OK, EXIT_FAILED, EXIT_BAD_JOB, EXIT_INTERRUPTED = 0, 1, 2, 130

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class RunDirError(Exception):
    """The run directory cannot be written or finished (a full disk): the message is one line."""


class JobError(Exception):
    """The job itself is unusable (wrong schema, a missing key): the message is one line."""


# -- the job: what the agent runs -------------------------------------------------------------
def raw_result(point_id: str) -> str:
    """Where vLLM writes a point's result, relative to the run directory."""
    return f"{RAW_DIR}/{point_id}.json"


def point_log(point_id: str) -> str:
    return f"{LOGS_DIR}/{point_id}.log"


def server_log(index: int) -> str:
    """The log of --replicas' server `index` in the run directory (and beside it, staged)."""
    return f"server-{index}.log"


@dataclass(frozen=True)
class SonnetJob:
    """The sonnet recipe's prompts, which the agent writes before the point runs."""

    source: str
    file: str
    num_prompts: int
    input_len: int
    prefix_len: int = 0  # leading tokens every prompt shares (a job without it shares none)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PointJob:
    """One point of the job: its command line and how to judge what it writes."""

    id: str
    scenario: str
    argv: tuple[str, ...]
    result: str
    expected: int | None
    needs_server: bool
    timeout_s: float = 3600.0
    sonnet: SonnetJob | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "scenario": self.scenario,
            "argv": list(self.argv),
            "result": self.result,
            "expected": self.expected,
            "needs_server": self.needs_server,
            "timeout_s": self.timeout_s,
        }
        if self.sonnet is not None:
            data["sonnet"] = self.sonnet.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointJob:
        sonnet = data.get("sonnet")
        return cls(
            id=str(data["id"]),
            scenario=str(data["scenario"]),
            argv=tuple(str(a) for a in data["argv"]),
            result=str(data.get("result") or raw_result(str(data["id"]))),
            expected=_int_or_none(data.get("expected")),
            needs_server=bool(data.get("needs_server")),
            timeout_s=float(data.get("timeout_s", 3600.0)),
            sonnet=SonnetJob(**sonnet) if isinstance(sonnet, Mapping) else None,
        )


@dataclass(frozen=True)
class ServerJob:
    """The `vllm serve` of the job, and how long to wait for it."""

    argv: tuple[str, ...]
    health_url: str
    ready_timeout_s: float = 1200.0
    stop_timeout_s: float = 30.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "argv": list(self.argv)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerJob:
        return cls(
            argv=tuple(str(a) for a in data["argv"]),
            health_url=str(data["health_url"]),
            ready_timeout_s=float(data.get("ready_timeout_s", 1200.0)),
            stop_timeout_s=float(data.get("stop_timeout_s", 30.0)),
        )


@dataclass(frozen=True)
class Job:
    """Everything the agent runs for one Run: exact command lines, environment, deadlines."""

    run: Mapping[str, Any]  # run.json: the Run as planned
    vllm: str
    points: tuple[PointJob, ...]
    server: ServerJob | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    tool: Mapping[str, Any] = field(default_factory=dict)
    executor: Mapping[str, Any] = field(default_factory=dict)
    # persistent: one load generator runs every serving point; process: one process per point
    client_mode: str = "persistent"
    # the vendor's tuned environment (the catalog's), under `env`: what the user sets wins
    tuned_env: Mapping[str, str] = field(default_factory=dict)
    strict_host: bool = False  # refuse, rather than warn of, host settings the vendor advises off
    # where TunableOp results are kept per configuration (the vendor's tunableop_dir by default)
    tunableop_dir: str | None = None
    # --replicas > 1: the servers, their GPUs and the spread (built by runner/jobs.py, run by
    # runner/agent/fleet.py); None: the one `server`
    replicas: Mapping[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return str(self.run["run_id"])

    @property
    def vendor(self) -> str:
        return str(self.run.get("vendor"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_schema": JOB_SCHEMA,
            "tool": dict(self.tool),
            "executor": dict(self.executor),
            "run": dict(self.run),
            "vllm": self.vllm,
            "env": dict(self.env),
            "server": self.server.to_dict() if self.server is not None else None,
            "points": [p.to_dict() for p in self.points],
            "client_mode": self.client_mode,
            "tuned_env": dict(self.tuned_env),
            "strict_host": self.strict_host,
            "tunableop_dir": self.tunableop_dir,
            **({"replicas": dict(self.replicas)} if self.replicas else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        """The job as the agent reads it; JobError (one line) when it is not one."""
        if data.get("job_schema") != JOB_SCHEMA:
            raise JobError(f"job schema {data.get('job_schema')!r} is not {JOB_SCHEMA}")
        try:
            server = data.get("server")
            return cls(
                run=dict(data["run"]),
                vllm=str(data["vllm"]),
                points=tuple(PointJob.from_dict(p) for p in data["points"]),
                server=ServerJob.from_dict(server) if isinstance(server, Mapping) else None,
                env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
                tool=dict(data.get("tool") or {}),
                executor=dict(data.get("executor") or {}),
                client_mode=str(data.get("client_mode") or "persistent"),
                tuned_env={str(k): str(v) for k, v in (data.get("tuned_env") or {}).items()},
                strict_host=bool(data.get("strict_host")),
                tunableop_dir=str(data["tunableop_dir"]) if data.get("tunableop_dir") else None,
                replicas=dict(data["replicas"]) if data.get("replicas") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"the job lacks or mistypes {exc}") from None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- the status: how the run stands ------------------------------------------------------------
@dataclass(frozen=True)
class RunState:
    """The part of status.json an executor needs: the run's end state and why."""

    status: str
    reason: str | None

    @classmethod
    def read(cls, run_dir: Path) -> RunState | None:
        """The state status.json records; None when there is none to read."""
        data = read_json(run_dir / STATUS_FILE)
        if data is None:
            return None
        reason = data.get("reason")
        return cls(str(data.get("status")), None if reason is None else str(reason))


def new_point_status(point: PointJob) -> dict[str, Any]:
    """A point's entry in status.json before it runs."""
    return {"id": point.id, "scenario": point.scenario, "verdict": NOT_RUN,
            "reasons": ["not started"], "result": point.result,
            "log": point_log(point.id)}  # fmt: skip


def new_status(run_id: str, points: Sequence[dict[str, Any]], started: str) -> dict[str, Any]:
    return {"format": RUN_DIR_FORMAT, "run_id": run_id, "status": RUNNING, "started": started,
            "finished": None, "reason": None, "server": None,
            "points": list(points)}  # fmt: skip


def now() -> str:
    """Timestamps of the run directory: UTC, ISO 8601, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- names of unfinished and finished directories ---------------------------------------------
def partial_dir(out_root: Path, run_id: str) -> Path:
    """Where the agent builds a run directory before giving it its final name."""
    return out_root / f".{run_id}{PARTIAL_SUFFIX}"


def is_partial(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(PARTIAL_SUFFIX)


def final_dir(work_dir: Path) -> Path:
    """The name an unfinished run directory gets when it is finished."""
    if not is_partial(work_dir):
        raise ValueError(f"{work_dir} is not an unfinished run directory (.<run id>.partial)")
    return work_dir.with_name(work_dir.name[1 : -len(PARTIAL_SUFFIX)])


# -- reading and writing ----------------------------------------------------------------------
def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from path; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from path; RunDirError saying what is wrong with it otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunDirError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(
            f"{path} is not valid JSON: {exc}; the run may have been cut off, re-run it"
        ) from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path} is not a JSON object; it was not written by bench-run")
    return data


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            exc.filename = str(path)  # a failed write()/fsync() names no file; say which one
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def tail_lines(path: Path, count: int = 25, max_bytes: int = 64_000) -> list[str]:
    """The last `count` lines of a (possibly large, possibly missing) log file."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return [line.rstrip() for line in lines[-count:]]


def _filesystem_of(path: Path) -> str:
    """The mount point holding path, with the device mounted there: 'tmpfs (/mnt/x)'."""
    mount = Path(os.path.abspath(path))
    while mount != mount.parent and not os.path.ismount(mount):
        mount = mount.parent
    device = None
    try:
        for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1] == str(mount):
                device = fields[0]  # the last mount on a point is the one in use
    except OSError:
        pass
    return f"{device} ({mount})" if device and device != str(mount) else str(mount)


def write_error_reason(exc: OSError, where: Path) -> str:
    """One line for a write that failed: a full filesystem is named, with what to do."""
    path = Path(exc.filename) if exc.filename else where
    if exc.errno in NO_SPACE:
        what = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left"
        return f"{what} on {_filesystem_of(path)} while writing {path}: free space and re-run"
    return f"cannot write {path}: {exc.strerror or exc}"


# -- finishing a run directory whose agent died -----------------------------------------------
def _planned_status(work_dir: Path, run_id: str) -> dict[str, Any]:
    """status.json for an agent killed before it wrote one: the points come from run.json."""
    planned = (read_json(work_dir / RUN_FILE) or {}).get("points") or []
    points = [
        {"id": p["id"], "scenario": p.get("scenario"), "verdict": NOT_RUN,
         "result": raw_result(p["id"]), "log": point_log(p["id"])}
        for p in planned if isinstance(p, dict) and "id" in p
    ]  # fmt: skip
    return {"format": RUN_DIR_FORMAT, "run_id": run_id, "started": None, "server": None,
            "points": points}  # fmt: skip


def finish_abandoned(
    work_dir: Path, reason: str, tail: Sequence[str] = (), *, interrupted: bool = False
) -> Path | None:
    """Finish the run directory of an agent that died before it could (SIGKILL, OOM, full disk).

    Points already judged keep their verdict; the others become failed (not-run when the run was
    interrupted) with `reason` and the log tails (the agent's or container's, then server.log's);
    status.json gets the end state and time; the directory gets its final name, which is
    returned (None when there is no unfinished directory). RunDirError (one line) when the
    directory cannot be written, e.g. a disk that is still full: what is there stays intact.
    """
    final = final_dir(work_dir)
    if not work_dir.is_dir():
        return None
    if final.exists():
        raise RunDirError(f"cannot finish {work_dir}: {final} already exists; move one away")
    status = read_json(work_dir / STATUS_FILE) or _planned_status(work_dir, final.name)
    server_tail = tail_lines(work_dir / SERVER_LOG)
    log_tail = [*tail, *([f"--- {SERVER_LOG} ---", *server_tail] if server_tail else [])]
    for point in status.get("points") or []:
        if point.get("verdict") in UNFINISHED_VERDICTS:
            if interrupted:
                point.update(verdict=NOT_RUN, reasons=[reason])
            else:
                point.update(verdict=FAILED, reasons=[reason], log_tail=log_tail)
    finished = now()
    status.update(
        status=INTERRUPTED if interrupted else FAILED,
        reason=reason,
        finished=finished,
        finished_by="executor",  # the agent could not: its last word is in the reason
    )
    try:
        atomic_write_json(work_dir / STATUS_FILE, status)
        prov = read_json(work_dir / PROVENANCE_FILE)
        if prov is not None and not prov.get("finished"):
            atomic_write_json(work_dir / PROVENANCE_FILE, {**prov, "finished": finished})
        os.replace(work_dir, final)
    except OSError as exc:
        raise RunDirError(write_error_reason(exc, work_dir)) from exc
    return final
