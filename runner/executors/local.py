"""The local executor: the agent as a child process on this host, next to an installed vLLM."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runner.agent.util import redact_argv, redact_env, secret_values
from runner.errors import PreflightError
from runner.executors.base import (
    AgentWatch,
    EventSink,
    RunOutcome,
    finish_unfinished,
    read_outcome,
    relay_line,
)
from runner.jobs import Deadlines, build_job, git_commit, server_argv, vendor_env
from runner.plan import Plan, Run
from runner.preflight import check_flags, check_gpus, check_port, find_vllm, free_port
from runner.rundir import EXIT_INTERRUPTED, Job


@dataclass(frozen=True)
class LocalSettings:
    out_root: Path
    vllm: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    deadlines: Deadlines = field(default_factory=Deadlines)
    check_flags: bool = True
    interrupt_grace_s: float = 120.0


class LocalExecutor:
    """Runs each Run's job with `python -m runner.agent` and relays its JSON-line events."""

    name = "local"

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self._commit = git_commit()

    def _vllm(self) -> str:
        return find_vllm(self.settings.vllm)

    def _command_env(self, run: Run) -> dict[str, str]:
        return {**os.environ, **vendor_env(run)}

    def preflight(self, plan: Plan, note: Callable[[str], None] | None = None) -> list[str]:
        vllm = self._vllm()
        check_gpus(plan)
        if self.settings.port is not None:
            check_port(self.settings.host, self.settings.port)
        out_root = self.settings.out_root
        try:
            out_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PreflightError(
                f"cannot create the output directory {out_root}: {exc.strerror}"
            ) from None
        if not os.access(out_root, os.W_OK):
            raise PreflightError(
                f"the output directory {out_root} is not writable: pass another --out"
            )
        warnings = []
        if self.settings.check_flags:
            if note is not None:
                note("checking the engine flags with vLLM's own parser (about 15 s) ...")
            for run in plan.runs:
                engine_argv = server_argv(run, vllm, self.settings.host, 0)[2:]
                warning = check_flags(vllm, engine_argv, self._command_env(run))
                if warning:
                    warnings.append(warning)
        return warnings

    def _job(self, run: Run, vllm: str, port: int) -> Job:
        return build_job(
            run,
            vllm=vllm,
            host=self.settings.host,
            port=port,
            deadlines=self.settings.deadlines,
            executor={"name": self.name, "agent_python": sys.executable},
            commit=self._commit,
        )

    def describe(self, plan: Plan) -> str:
        try:
            vllm = self._vllm()
        except PreflightError:
            vllm = "vllm"  # a dry run shows the plan even where vLLM is not installed yet
        lines: list[str] = []
        for run in plan.runs:
            port = self.settings.port or free_port(self.settings.host)
            job = self._job(run, vllm, port)
            env = vendor_env(run)
            secrets = secret_values({**os.environ, **env})
            lines.append(f"# run {run.run_id} -> {self.settings.out_root / run.run_id}")
            lines.append("# environment added to every command (besides the inherited one):")
            lines += [f"export {k}={shlex.quote(v)}" for k, v in redact_env(env, secrets).items()]
            if job.server is not None:
                lines.append(f"# server (ready when {job.server.health_url} answers 200):")
                lines.append(shlex.join(redact_argv(job.server.argv, secrets)))
            for point in job.points:
                lines.append(f"# point {point.id}:")
                lines.append(shlex.join(redact_argv(point.argv, secrets)))
            lines.append("")
        return "\n".join(lines)

    def execute(self, plan: Plan, on_event: EventSink) -> list[RunOutcome]:
        vllm = self._vllm()
        outcomes: list[RunOutcome] = []
        for run in plan.runs:
            port = self.settings.port or free_port(self.settings.host)
            outcome = self._execute_one(run, self._job(run, vllm, port), on_event)
            outcomes.append(outcome)
            if outcome.exit_code == EXIT_INTERRUPTED:
                break
        return outcomes

    def _execute_one(self, run: Run, job: Job, on_event: EventSink) -> RunOutcome:
        out_root = self.settings.out_root.resolve()
        argv = [sys.executable, "-m", "runner.agent", "--job", "-", "--out-root", str(out_root)]
        # A session of its own: Ctrl-C reaches bench-run, which tells the agent to wind down,
        # instead of hitting the agent in the middle of writing its run directory.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdin is not None and proc.stdout is not None
        # On stdin: secrets in --env never touch the disk.
        proc.stdin.write(json.dumps(job.to_dict()))
        proc.stdin.close()
        interrupted = False
        watched = AgentWatch(on_event)
        # If the agent does not wind down in time after Ctrl-C, kill it (its server dies with it).
        watchdog = threading.Timer(self.settings.interrupt_grace_s, _kill_group, args=(proc.pid,))
        watchdog.daemon = True
        try:
            while True:
                try:
                    self._relay(proc.stdout, watched)
                    break
                except KeyboardInterrupt:
                    if interrupted:  # a second Ctrl-C: stop waiting
                        _kill_group(proc.pid)
                        break
                    interrupted = True
                    on_event({"event": "interrupting", "grace_s": self.settings.interrupt_grace_s})
                    proc.send_signal(signal.SIGINT)
                    watchdog.start()
            code = proc.wait()
        finally:
            watchdog.cancel()
        if not (out_root / run.run_id).exists():
            reason = watched.error or _death_reason(code, interrupted)
            unfinished = finish_unfinished(
                run, out_root, code, reason, list(watched.output), interrupted, on_event
            )
            if unfinished is not None:
                return unfinished
        return read_outcome(run, out_root, code, interrupted)

    @staticmethod
    def _relay(stream: Iterable[str], on_event: EventSink) -> None:
        for line in stream:
            relay_line(line, on_event)


def _death_reason(code: int, interrupted: bool) -> str:
    if code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with status {code}"
    when = "after Ctrl-C " if interrupted else ""
    return f"the agent {how} {when}before it finished the run"


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
