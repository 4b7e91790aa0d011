"""Run one job: start `vllm serve`, run and judge each point, stop the server, write the run dir."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..rundir import (
    EVENTS_FILE,
    EXIT_BAD_JOB,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FAILED,
    INTERRUPTED,
    LOGS_DIR,
    NO_SPACE,
    NOT_RUN,
    OK,
    PROVENANCE_FILE,
    RAW_DIR,
    RUN_DIR_FORMAT,
    RUN_FILE,
    RUNNING,
    SERVER_LOG,
    STATUS_FILE,
    UNFINISHED_VERDICTS,
    Job,
    JobError,
    PointJob,
    atomic_write_json,
    new_point_status,
    new_status,
    now,
    partial_dir,
    write_error_reason,
)
from . import host, own, probe, provenance, search, sonnet, tunableop
from .client import LoadGenerator, LoadGenUnavailable, loadgen_python, serve_args
from .fleet import Fleet
from .judge import Verdict, judge_point, slo_result
from .procs import (
    CommandResult,
    Interrupted,
    Server,
    ServerFailed,
    interruptible,
    run_command,
)
from .util import (
    KEPT_TAIL,
    Events,
    read_failure,
    redact_argv,
    redact_env,
    relevant_env,
    secret_values,
)


class JobRunner:
    """Carries one job through, keeping status.json current after every point."""

    def __init__(self, job: Job, out_root: Path, events: Events) -> None:
        self.job = job
        self.run = job.run
        self.run_id = job.run_id
        self.out_root = out_root
        self.final_dir = out_root / self.run_id
        self.work_dir = partial_dir(out_root, self.run_id)
        self.events = events
        # The host's environment, then the vendor's tuning, then what the user asked for.
        self.env = {**os.environ, **job.tuned_env, **job.env}
        self.decided = host.decide_env(job, {**os.environ, **job.env})  # chosen here, with why
        self.env.update({name: value for name, (value, _) in self.decided.items()})
        self.secrets = secret_values(self.env)
        self.points = job.points
        self.results: dict[str, dict[str, Any]] = {p.id: new_point_status(p) for p in self.points}
        self.status = new_status(self.run_id, list(self.results.values()), now())
        self.loadgen: LoadGenerator | None = None  # the sweep's client, while it is usable
        self.loadgen_timeout_s = 600.0
        self.host_found: dict[str, object] = {}  # host settings the vendor advises against
        self.tunableop: tunableop.Decision | None = None  # None: the vendor keeps no results
        self.fleet: Fleet | None = None  # --replicas: the servers, while they run
        self.serving: list[Any] = []  # the ready server(s), probed around each point (probe.py)

    # -- files -------------------------------------------------------------------------------
    def _prepare(self) -> None:
        if self.final_dir.exists():
            raise JobError(f"run directory {self.final_dir} already exists")
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)  # the leftover of a killed attempt with this very id
        (self.work_dir / RAW_DIR).mkdir(parents=True)
        (self.work_dir / LOGS_DIR).mkdir()
        self.events.attach(self.work_dir / EVENTS_FILE)
        atomic_write_json(self.work_dir / RUN_FILE, self.run)
        self._write_status()

    def _write_status(self) -> None:
        atomic_write_json(self.work_dir / STATUS_FILE, self.status)

    def _provenance(self) -> dict[str, Any]:
        server = self.job.server
        return {
            "format": RUN_DIR_FORMAT,
            "run_id": self.run_id,
            "tool": dict(self.job.tool),
            "executor": dict(self.job.executor),
            "vendor": self.run.get("vendor"),
            **provenance.collect(self.job.vendor, self.job.vllm),
            "commands": {
                "server": redact_argv(server.argv, self.secrets) if server else None,
                "points": {p.id: redact_argv(p.argv, self.secrets) for p in self.points},
            },
            "env": redact_env(
                {
                    **relevant_env(os.environ),
                    **self.job.tuned_env,
                    **self.job.env,
                    **self._decided_values(),
                },
                self.secrets,
            ),
            "decided_env": {name: why for name, (_, why) in self.decided.items()},
            "host_settings": self.host_found,
            **({"tunableop": self.tunableop.record} if self.tunableop is not None else {}),
            "started": self.status["started"],
        }

    def _decided_values(self) -> dict[str, str]:
        return {name: value for name, (value, _) in self.decided.items()}

    # -- points ------------------------------------------------------------------------------
    def _record(self, point: PointJob, verdict: Verdict, **extra: Any) -> None:
        entry = self.results[point.id]
        entry.update(verdict.to_dict())
        entry.update(extra)
        self._write_status()
        self.events.emit(
            "point_finished",
            id=point.id,
            verdict=verdict.verdict,
            reasons=verdict.reasons,
            seconds=extra.get("seconds"),
        )

    def _run_point(self, point: PointJob) -> None:
        self.events.emit(
            "point_started",
            id=point.id,
            index=self.points.index(point) + 1,
            total=len(self.points),
            scenario=point.scenario,
            num_prompts=point.expected,
        )
        self.results[point.id].update(verdict=RUNNING, reasons=[])
        if point.sonnet is not None:
            try:
                sonnet.write_prompts(
                    point.sonnet, int(self.run["output_len"]), self.work_dir, point.id
                )
            except sonnet.SonnetError as exc:
                self._record(point, Verdict(FAILED, [str(exc)]))
                return
        log = self.work_dir / self.results[point.id]["log"]
        with probe.watching(point.scenario, self.serving, self.work_dir / point.result) as seen:
            outcome = self._measure(point, log)
        lines, cause = read_failure(log)
        tail = lines[-KEPT_TAIL:]
        verdict = judge_point(
            point.scenario,
            self.work_dir / point.result,
            point.expected or 0,
            outcome.returncode,
            outcome.timed_out,
            cause,
        )
        extra: dict[str, Any] = {
            "seconds": round(outcome.seconds, 3),
            "returncode": outcome.returncode,
        }
        slo = (self.run.get("serve") or {}).get("slo")
        if slo and point.scenario == "serve":  # separate from the verdict: a miss is still valid
            extra["slo"] = slo_result(self.work_dir / point.result, slo)
        if self.fleet is not None:  # what each replica served of this point
            extra["replicas"] = self.fleet.point_counts.get(point.id)
        if seen.report:  # the server's counters, the client's CPU, telemetry (probe.py)
            extra["probe"] = seen.report
        if not verdict.ok:
            extra["log_tail"] = tail
        self._record(point, verdict, **extra)

    def _measure(self, point: PointJob, log: Path) -> CommandResult:
        """Run the point; with --replicas, spread and counted per replica (fleet.py)."""
        if self.fleet is not None:
            return self.fleet.measure(point, log, self._measure_one)
        return self._measure_one(point, log)

    def _measure_one(self, point: PointJob, log: Path) -> CommandResult:
        """Run the point's command: through the sweep's load generator when it can, else alone."""
        args = serve_args(point.argv)
        if self.loadgen is not None and args is not None:
            try:
                self.loadgen.wait_ready(self.loadgen_timeout_s)
                return self.loadgen.run(point.id, args, log, point.timeout_s)
            except LoadGenUnavailable as exc:
                self._drop_loadgen(str(exc))
        argv, env = own.resolve(point.argv, self.env)  # a command of the agent's own Python
        return run_command(argv, cwd=self.work_dir, env=env, log=log, timeout_s=point.timeout_s)

    def _start_loadgen(self) -> None:
        """Start the sweep's load generator beside the server, so its import overlaps the start."""
        spread = (self.job.replicas or {}).get("spread")
        if self.job.client_mode != "persistent" or spread == "clients":  # clients: one per replica
            self.status["client"] = {"mode": "process" if spread else self.job.client_mode}
            return
        python = loadgen_python(self.job.vllm)
        if python is None:
            self._drop_loadgen(f"no Python interpreter found for {self.job.vllm}")
            return
        self.loadgen = LoadGenerator(
            python, cwd=self.work_dir, env=self.env, log=self.work_dir / LOGS_DIR / "loadgen.log"
        )
        self.loadgen.start()
        self.status["client"] = {"mode": "persistent", "python": python, "ready_s": None}

    def _drop_loadgen(self, reason: str) -> None:
        """Fall back to one `vllm bench serve` process per point, and say why."""
        if self.loadgen is not None:
            self.loadgen.stop(kill=True)
            self.loadgen = None
        self.status["client"] = {"mode": "process", "fallback_reason": reason}
        self.events.emit("loadgen_unavailable", reason=reason)

    def _stop_loadgen(self) -> None:
        if self.loadgen is None:
            return
        client = self.status.get("client") or {}
        client["ready_s"] = None if self.loadgen.ready_s is None else round(self.loadgen.ready_s, 3)
        self.loadgen.stop()
        self.loadgen = None

    def _fail_remaining(self, points: list[PointJob], reason: str, tail: list[str]) -> None:
        for point in points:
            if self.results[point.id]["verdict"] in UNFINISHED_VERDICTS:
                self._record(point, Verdict(FAILED, [reason]), log_tail=tail)

    def _serve_points(self, points: list[PointJob]) -> None:
        spec = self.job.server
        assert spec is not None  # a job with serving points has a server (build_job)
        server: Server | Fleet = self._fleet() or Server(
            list(spec.argv),
            cwd=self.work_dir,
            env=self.env,
            log=self.work_dir / SERVER_LOG,
            health_url=spec.health_url,
            stop_timeout_s=spec.stop_timeout_s,
        )
        info: dict[str, Any] = {"started": now(), "ready_s": None, "exit_status": None}
        self.status["server"] = info
        try:
            server.start()
            # None: the replicas run in their own containers (docker), not as the agent's child
            pid = server.proc.pid if server.proc is not None else None
            info["pid"] = pid  # also its process group id
            self.events.emit("server_starting", pid=pid, argv=redact_argv(spec.argv, self.secrets))
            info["ready_s"] = round(
                server.wait_ready(
                    spec.ready_timeout_s,
                    lambda s: self.events.emit("server_waiting", seconds=round(s, 1)),
                ),
                3,
            )
            self._write_status()
            self.events.emit("server_ready", seconds=info["ready_s"])
            self.serving = [server]  # probed around each point: a Server, or a Fleet (probe.py)
            wanted = search.spec_from_serve(self.run.get("serve") or {})
            if wanted is not None:  # --find-max-qps: each probe's rate depends on the ones before
                state = self.status.setdefault("search", {})
                search.run(wanted, points[0], lambda p: self._probe(p, server), state)
                self.events.emit("search_finished", **search.summary(state))
            for point in points:
                if self.results[point.id]["verdict"] in UNFINISHED_VERDICTS:
                    server.check_alive()
                    self._run_point(point)
        except ServerFailed as exc:
            if exc.rejected:  # a bad configuration, not a measurement: nothing to keep
                raise host.ConfigRejected(f"vLLM rejects the engine flags: {exc.cause}") from exc
            info["error"] = exc.reason
            self.events.emit("server_failed", reason=exc.reason, log_tail=exc.log_tail)
            self._fail_remaining(points, exc.reason, exc.log_tail)
        finally:
            # A server that never became ready has nothing to flush: no need to wait long.
            info["exit_status"] = server.stop(None if info["ready_s"] is not None else 5.0)
            info["stopped"] = now()
            self.serving = []
            if self.fleet is not None:
                self.status["replicas"] = self.fleet.describe()
            self._write_status()
            self.events.emit("server_stopped", exit_status=info["exit_status"])

    def _fleet(self) -> Fleet | None:
        """The job's replicas (--replicas), standing where its one server stands."""
        if self.job.replicas:
            self.fleet = Fleet(
                self.job.replicas,
                vendor=self.job.vendor,
                vllm=self.job.vllm,
                work_dir=self.work_dir,
                env=self.env,
                stop_timeout_s=self.job.server.stop_timeout_s if self.job.server else 30.0,
            )
        return self.fleet

    def _probe(self, point: PointJob, server: Server | Fleet) -> bool:
        """One probe of the search, a point like any other: did it meet the SLO?"""
        if point.id not in self.results:
            self.points = (*self.points, point)
            self.results[point.id] = new_point_status(point)
            self.status["points"].append(self.results[point.id])
        self.results[point.id]["qps"] = search.rate_of(point)
        server.check_alive()
        self._run_point(point)
        entry = self.results[point.id]
        return entry["verdict"] == OK and bool((entry.get("slo") or {}).get("met"))

    def _tunableop_pass(self, served: list[PointJob]) -> None:
        """Tune first where TunableOp results are missing; each point says if they are used."""
        found, spec = self.tunableop, self.job.server
        if found is not None and found.tune_first and spec is not None:
            length = int(self.run["output_len"])
            ctx = (spec, served[0], self.work_dir, self.env, self._measure, self.events, length)
            tunableop.run_pass(found, tunableop.WarmUp(*ctx))
        if found is not None and found.results is not None:  # written with the next status
            for entry in self.results.values():
                entry["tunableop"] = found.point_entry()

    # -- the whole job -----------------------------------------------------------------------
    def _run_points(self) -> int:
        served = [p for p in self.points if p.needs_server]
        if served:
            self._start_loadgen()  # its import overlaps the start of the first server
        try:
            self._tunableop_pass(served)
            if served:
                self._serve_points(served)
        finally:
            self._stop_loadgen()
        for point in self.points:
            if not point.needs_server:
                self._run_point(point)
        failed = [r["id"] for r in self.results.values() if r["verdict"] != OK]
        if failed:
            self.status.update(
                status=FAILED, reason=f"{len(failed)} point(s) failed: {', '.join(failed)}"
            )
            return EXIT_FAILED
        self.status.update(status=OK)
        return EXIT_OK

    def _discard(self, reason: str) -> int:
        """A configuration refused before anything was measured: leave no run directory."""
        self.events.detach()
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.events.emit("job_error", reason=reason, rejected=True)
        return EXIT_BAD_JOB

    def execute(self) -> int:
        try:
            host.check_gpus(self.job)
            self.host_found, warnings = host.host_settings(self.job)
        except host.ConfigRejected as exc:
            self.events.emit("job_error", reason=str(exc), rejected=True)
            return EXIT_BAD_JOB
        self.tunableop = tunableop.decide(self.job, self.env)
        self.decided.update(self.tunableop.env if self.tunableop is not None else {})
        self.env.update(self._decided_values())  # TunableOp's file and switch for every command
        self._prepare()
        prov = self._provenance()
        atomic_write_json(self.work_dir / PROVENANCE_FILE, prov)
        self.events.emit(
            "run_started",
            run_id=self.run_id,
            run_dir=str(self.final_dir),
            points=len(self.points),
        )
        for _, why in self.decided.values():
            self.events.emit("note", text=why)
        for text in warnings:
            self.events.emit("warning", text=text)
        code = EXIT_OK
        try:
            with interruptible():
                code = self._run_points()
        except host.ConfigRejected as exc:
            return self._discard(str(exc))
        except Interrupted as exc:
            for entry in self.results.values():
                if entry["verdict"] in UNFINISHED_VERDICTS:
                    entry.update(verdict=NOT_RUN, reasons=[f"interrupted ({exc})"])
            self.status.update(status=INTERRUPTED, reason=f"interrupted by {exc}")
            code = EXIT_INTERRUPTED
        finally:
            if self.work_dir.exists():
                self._finish(prov)
        return code

    def _finish(self, prov: dict[str, Any]) -> None:
        """status.json and provenance.json say how the run ended; the directory gets its name."""
        self.status["finished"] = now()
        if self.status["status"] == RUNNING:
            self.status.update(status=FAILED, reason="the agent stopped unexpectedly")
        self._write_status()
        prov["finished"] = self.status["finished"]
        atomic_write_json(self.work_dir / PROVENANCE_FILE, prov)
        self.events.emit(
            "run_finished",
            run_id=self.run_id,
            status=self.status["status"],
            reason=self.status["reason"],
            run_dir=str(self.final_dir),
        )
        self.events.detach()
        os.replace(self.work_dir, self.final_dir)


def run_job(job: dict[str, Any], out_root: Path, events: Events) -> int:
    started = time.monotonic()
    try:
        runner = JobRunner(Job.from_dict(job), out_root, events)
        code = runner.execute()
    except JobError as exc:
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
