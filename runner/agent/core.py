"""Run one job: start `vllm serve`, run and judge each point, stop the server, write the run dir."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from . import provenance, sonnet
from .judge import FAILED, NOT_RUN, OK, Verdict, judge_point
from .procs import Interrupted, Server, ServerFailed, run_command
from .util import (
    Events,
    atomic_write_json,
    error_line,
    redact_argv,
    redact_env,
    relevant_env,
    secret_values,
    tail_lines,
)

JOB_SCHEMA = 1
RUN_DIR_FORMAT = 1
EXIT_OK, EXIT_FAILED, EXIT_BAD_JOB, EXIT_INTERRUPTED = 0, 1, 2, 130


class JobError(Exception):
    """The job itself is unusable (wrong schema, the run directory exists)."""


class RunDirError(Exception):
    """The run directory cannot be written or finished (a full disk): the message is one line."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@contextmanager
def _interruptible() -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM into Interrupted; ignore repeats while cleaning up."""
    seen = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal seen
        if not seen:
            seen = True
            raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class JobRunner:
    """Carries one job through, keeping status.json current after every point."""

    def __init__(self, job: dict[str, Any], out_root: Path, events: Events) -> None:
        if job.get("job_schema") != JOB_SCHEMA:
            raise JobError(f"job schema {job.get('job_schema')!r} is not {JOB_SCHEMA}")
        self.job = job
        self.run = job["run"]
        self.run_id = str(self.run["run_id"])
        self.out_root = out_root
        self.final_dir = out_root / self.run_id
        self.work_dir = partial_dir(out_root, self.run_id)
        self.events = events
        self.env = {**os.environ, **{str(k): str(v) for k, v in job.get("env", {}).items()}}
        self.secrets = secret_values(self.env)
        self.points: list[dict[str, Any]] = list(job["points"])
        self.results: dict[str, dict[str, Any]] = {
            p["id"]: {
                "id": p["id"],
                "scenario": p["scenario"],
                "verdict": NOT_RUN,
                "reasons": ["not started"],
                "result": p["result"],
                "log": f"logs/{p['id']}.log",
            }
            for p in self.points
        }
        self.status: dict[str, Any] = {
            "format": RUN_DIR_FORMAT,
            "run_id": self.run_id,
            "status": "running",
            "started": _now(),
            "finished": None,
            "reason": None,
            "server": None,
            "points": list(self.results.values()),
        }

    # -- files -------------------------------------------------------------------------------
    def _prepare(self) -> None:
        if self.final_dir.exists():
            raise JobError(f"run directory {self.final_dir} already exists")
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)  # the leftover of a killed attempt with this very id
        (self.work_dir / "raw").mkdir(parents=True)
        (self.work_dir / "logs").mkdir()
        self.events.attach(self.work_dir / "events.jsonl")
        atomic_write_json(self.work_dir / "run.json", self.run)
        self._write_status()

    def _write_status(self) -> None:
        atomic_write_json(self.work_dir / "status.json", self.status)

    def _provenance(self) -> dict[str, Any]:
        server = self.job.get("server")
        return {
            "format": RUN_DIR_FORMAT,
            "run_id": self.run_id,
            "tool": self.job.get("tool", {}),
            "executor": self.job.get("executor", {}),
            "vendor": self.run.get("vendor"),
            **provenance.collect(str(self.run.get("vendor")), self.job["vllm"]),
            "commands": {
                "server": redact_argv(server["argv"], self.secrets) if server else None,
                "points": {p["id"]: redact_argv(p["argv"], self.secrets) for p in self.points},
            },
            "env": redact_env(
                {**relevant_env(os.environ), **self.job.get("env", {})}, self.secrets
            ),
            "started": self.status["started"],
        }

    # -- points ------------------------------------------------------------------------------
    def _record(self, point: dict[str, Any], verdict: Verdict, **extra: Any) -> None:
        entry = self.results[point["id"]]
        entry.update(verdict.to_dict())
        entry.update(extra)
        self._write_status()
        self.events.emit(
            "point_finished",
            id=point["id"],
            verdict=verdict.verdict,
            reasons=verdict.reasons,
            seconds=extra.get("seconds"),
        )

    def _run_point(self, index: int, point: dict[str, Any]) -> None:
        self.events.emit(
            "point_started",
            id=point["id"],
            index=index,
            total=len(self.points),
            scenario=point["scenario"],
            num_prompts=point.get("expected"),
        )
        self.results[point["id"]].update(verdict="running", reasons=[])
        if "sonnet" in point:
            try:
                sonnet.write_prompts(
                    point["sonnet"], int(self.run["output_len"]), self.work_dir, point["id"]
                )
            except sonnet.SonnetError as exc:
                self._record(point, Verdict(FAILED, [str(exc)]))
                return
        log = self.work_dir / "logs" / f"{point['id']}.log"
        outcome = run_command(
            point["argv"],
            cwd=self.work_dir,
            env=self.env,
            log=log,
            timeout_s=float(point.get("timeout_s", 3600)),
        )
        tail = tail_lines(log)
        verdict = judge_point(
            point["scenario"],
            self.work_dir / point["result"],
            int(point.get("expected") or 0),
            outcome.returncode,
            outcome.timed_out,
            error_line(tail),
        )
        extra: dict[str, Any] = {
            "seconds": round(outcome.seconds, 3),
            "returncode": outcome.returncode,
        }
        if not verdict.ok:
            extra["log_tail"] = tail
        self._record(point, verdict, **extra)

    def _fail_remaining(self, points: list[dict[str, Any]], reason: str, tail: list[str]) -> None:
        for point in points:
            if self.results[point["id"]]["verdict"] in (NOT_RUN, "running"):
                self._record(point, Verdict(FAILED, [reason]), log_tail=tail)

    def _serve_points(self, points: list[dict[str, Any]]) -> None:
        spec = self.job["server"]
        server = Server(
            spec["argv"],
            cwd=self.work_dir,
            env=self.env,
            log=self.work_dir / "server.log",
            health_url=spec["health_url"],
            stop_timeout_s=float(spec.get("stop_timeout_s", 30)),
        )
        info: dict[str, Any] = {"started": _now(), "ready_s": None, "exit_status": None}
        self.status["server"] = info
        try:
            server.start()
            assert server.proc is not None
            info["pid"] = server.proc.pid  # also its process group id
            self.events.emit(
                "server_starting", pid=server.proc.pid, argv=redact_argv(spec["argv"], self.secrets)
            )
            info["ready_s"] = round(
                server.wait_ready(
                    float(spec.get("ready_timeout_s", 1200)),
                    lambda s: self.events.emit("server_waiting", seconds=round(s, 1)),
                ),
                3,
            )
            self._write_status()
            self.events.emit("server_ready", seconds=info["ready_s"])
            for point in points:
                server.check_alive()
                self._run_point(self.points.index(point) + 1, point)
        except ServerFailed as exc:
            info["error"] = exc.reason
            self.events.emit("server_failed", reason=exc.reason, log_tail=exc.log_tail)
            self._fail_remaining(points, exc.reason, exc.log_tail)
        finally:
            # A server that never became ready has nothing to flush: no need to wait long.
            info["exit_status"] = server.stop(None if info["ready_s"] is not None else 5.0)
            info["stopped"] = _now()
            self._write_status()
            self.events.emit("server_stopped", exit_status=info["exit_status"])

    # -- the whole job -----------------------------------------------------------------------
    def execute(self) -> int:
        self._prepare()
        prov = self._provenance()
        atomic_write_json(self.work_dir / "provenance.json", prov)
        self.events.emit(
            "run_started",
            run_id=self.run_id,
            run_dir=str(self.final_dir),
            points=len(self.points),
        )
        code = EXIT_OK
        try:
            with _interruptible():
                served = [p for p in self.points if p.get("needs_server")]
                if served:
                    self._serve_points(served)
                for point in self.points:
                    if not point.get("needs_server"):
                        self._run_point(self.points.index(point) + 1, point)
            failed = [r["id"] for r in self.results.values() if r["verdict"] != OK]
            if failed:
                self.status.update(
                    status="failed", reason=f"{len(failed)} point(s) failed: {', '.join(failed)}"
                )
                code = EXIT_FAILED
            else:
                self.status.update(status="ok")
        except Interrupted as exc:
            for entry in self.results.values():
                if entry["verdict"] in (NOT_RUN, "running"):
                    entry.update(verdict=NOT_RUN, reasons=[f"interrupted ({exc})"])
            self.status.update(status="interrupted", reason=f"interrupted by {exc}")
            code = EXIT_INTERRUPTED
        finally:
            self.status["finished"] = _now()
            if self.status["status"] == "running":
                self.status.update(status="failed", reason="the agent stopped unexpectedly")
            self._write_status()
            prov["finished"] = self.status["finished"]
            atomic_write_json(self.work_dir / "provenance.json", prov)
            self.events.emit(
                "run_finished",
                run_id=self.run_id,
                status=self.status["status"],
                reason=self.status["reason"],
                run_dir=str(self.final_dir),
            )
            self.events.detach()
            os.replace(self.work_dir, self.final_dir)
        return code


def run_job(job: dict[str, Any], out_root: Path, events: Events) -> int:
    started = time.monotonic()
    try:
        runner = JobRunner(job, out_root, events)
        code = runner.execute()
    except (JobError, KeyError) as exc:
        events.emit("job_error", reason=f"unusable job: {exc}")
        return EXIT_BAD_JOB
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        # Every file written so far is whole (atomic writes) and the directory stays unfinished;
        # the executor finishes it with this reason once there is room, or says why it cannot.
        with contextlib.suppress(OSError):
            events.detach()
        events.emit("run_error", reason=write_error_reason(exc, out_root))
        return EXIT_FAILED
    events.emit("agent_exit", code=code, seconds=round(time.monotonic() - started, 3))
    return code


# -- what the host does when the agent could not finish -------------------------------------
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def partial_dir(out_root: Path, run_id: str) -> Path:
    """Where the agent builds a run directory before giving it its final name."""
    return out_root / f".{run_id}.partial"


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
    name = work_dir.name
    if not (name.startswith(".") and name.endswith(".partial")):
        raise ValueError(f"{work_dir} is not an unfinished run directory (.<run id>.partial)")
    final = work_dir.with_name(name[1 : -len(".partial")])
    if not work_dir.is_dir():
        return None
    if final.exists():
        raise RunDirError(f"cannot finish {work_dir}: {final} already exists; move one away")
    status = _read_json(work_dir / "status.json")
    if status is None:  # killed before the first status.json: the points come from run.json
        planned = (_read_json(work_dir / "run.json") or {}).get("points") or []
        status = {
            "format": RUN_DIR_FORMAT,
            "run_id": final.name,
            "started": None,
            "server": None,
            "points": [
                {"id": p["id"], "scenario": p.get("scenario"), "verdict": NOT_RUN,
                 "result": f"raw/{p['id']}.json", "log": f"logs/{p['id']}.log"}
                for p in planned if isinstance(p, dict) and "id" in p
            ],
        }  # fmt: skip
    server_tail = tail_lines(work_dir / "server.log")
    log_tail = [*tail, *(["--- server.log ---", *server_tail] if server_tail else [])]
    for point in status.get("points") or []:
        if point.get("verdict") in (NOT_RUN, "running"):
            if interrupted:
                point.update(verdict=NOT_RUN, reasons=[reason])
            else:
                point.update(verdict=FAILED, reasons=[reason], log_tail=log_tail)
    finished = _now()
    status.update(
        status="interrupted" if interrupted else "failed",
        reason=reason,
        finished=finished,
        finished_by="executor",  # the agent could not: its last word is in the reason
    )
    try:
        atomic_write_json(work_dir / "status.json", status)
        prov = _read_json(work_dir / "provenance.json")
        if prov is not None and not prov.get("finished"):
            atomic_write_json(work_dir / "provenance.json", {**prov, "finished": finished})
        os.replace(work_dir, final)
    except OSError as exc:
        raise RunDirError(write_error_reason(exc, work_dir)) from exc
    return final


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
