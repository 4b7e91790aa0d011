"""The local executor: the agent as a child process on this host, next to an installed vLLM."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.agent import search
from runner.agent.client import loadgen_python
from runner.agent.fleet import has_data_parallel, router_executable
from runner.agent.util import redact_argv, redact_env, secret_values
from runner.errors import PlanError, PreflightError
from runner.executors.base import Event, EventSink, RunOutcome
from runner.executors.supervisor import Supervisor
from runner.images.modes import mode_for_run
from runner.images.tuning import Tuning, run_tuning, tuning_line
from runner.jobs import Deadlines, build_job, extra_ports, git_commit, vendor_env
from runner.plan import Plan, Run
from runner.preflight import (
    check_gpus,
    check_partitions,
    check_port,
    find_vllm,
    free_port,
    partition_line,
)
from runner.rundir import Job, server_log
from runner.vendors import profile_for


def local_tunableop_dir(vendor: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Where TunableOp results are kept on this host (the layout of the docker volume), for a
    vendor that keeps them: $XDG_CACHE_HOME/vllm-bench/tunableop, ~/.cache/... by default."""
    if profile_for(vendor).tunableop_dir is None:
        return None
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "vllm-bench" / "tunableop")


def local_tuning(run: Run) -> Tuning:
    """The vendor default image's tuning, in the mode --partition asks for (cpx at TP=1)."""
    return run_tuning(run.vendor, None, mode=mode_for_run(run.expect_partition, run.engine.tp))


@dataclass(frozen=True)
class LocalSettings:
    out_root: Path
    vllm: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    deadlines: Deadlines = field(default_factory=Deadlines)
    interrupt_grace_s: float = 120.0


class LocalExecutor:
    """Runs each Run's job with `python -m runner.agent` and relays its JSON-line events."""

    name = "local"

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self._commit = git_commit()

    def _vllm(self) -> str:
        return find_vllm(self.settings.vllm)

    def preflight(self, plan: Plan, note: Callable[[str], None] | None = None) -> list[str]:
        vllm = self._vllm()  # no vllm executable: one line, before anything starts
        check_dp(plan, vllm)
        routed = any(r.replicas is not None and r.replicas.spread == "router" for r in plan.runs)
        if routed and router_executable(vllm) is None:
            raise PreflightError(
                "--spread router needs vllm-router beside vllm or on PATH, and it is not there: "
                "pip install vllm-router (the [replicas] extra), or use --spread clients"
            )
        check_partitions(plan)  # --partition: the modes of this host's AMD GPUs (exit 2)
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
        return []

    def _job(self, run: Run, vllm: str, port: int) -> Job:
        return build_job(
            run,
            vllm=vllm,
            host=self.settings.host,
            port=port,
            deadlines=self.settings.deadlines,
            executor={"name": self.name, "agent_python": sys.executable},
            commit=self._commit,
            tuned_env=local_tuning(run).env,  # the vendor's image gets the same
            tunableop_dir=local_tunableop_dir(run.vendor),
            replica_ports=self._ports(port, extra_ports(run.replicas)),
        )

    def _ports(self, taken: int, count: int) -> list[int]:
        """`count` free ports of this host, distinct from each other and from `taken`."""
        ports: list[int] = []
        while len(ports) < count:
            port = free_port(self.settings.host)
            if port != taken and port not in ports:
                ports.append(port)
        return ports

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
            lines.append(tuning_line(local_tuning(run)))
            lines += [line for line in (partition_line(run),) if line]
            lines.append("# environment added to every command (besides the inherited one):")
            lines += [f"export {k}={shlex.quote(v)}" for k, v in redact_env(env, secrets).items()]
            if job.replicas is not None:
                lines += replica_lines(job.replicas, secrets)
            elif job.server is not None:
                lines.append(f"# server (ready when {job.server.health_url} answers 200):")
                lines.append(shlex.join(redact_argv(job.server.argv, secrets)))
            for point in job.points:
                lines.append(f"# point {point.id}:")
                lines.append(shlex.join(redact_argv(point.argv, secrets)))
            wanted = search.spec_from_serve(job.run.get("serve") or {})
            if wanted is not None:
                lines.append(f"# {search.describe(wanted)}")
            lines.append("")
        return "\n".join(lines)

    def execute(self, plan: Plan, on_event: EventSink) -> list[RunOutcome]:
        vllm = self._vllm()
        out_root = self.settings.out_root.resolve()

        def start(run: Run, _: EventSink) -> LocalTransport:
            port = self.settings.port or free_port(self.settings.host)
            return LocalTransport.start(self._job(run, vllm, port), out_root)

        supervisor = Supervisor(out_root, self.settings.interrupt_grace_s)
        return supervisor.run_plan(plan.runs, start, on_event)


class LocalTransport:
    """The agent as a child process of this one, in a session of its own, its job on stdin."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc

    @classmethod
    def start(cls, job: Job, out_root: Path) -> LocalTransport:
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
        assert proc.stdin is not None
        # On stdin: secrets in --env never touch the disk.
        proc.stdin.write(json.dumps(job.to_dict()))
        proc.stdin.close()
        return cls(proc)

    def lines(self) -> Iterator[str]:
        assert self._proc.stdout is not None
        # Not `yield from`: closing this generator (Ctrl-C in the relay) would close the pipe.
        for line in self._proc.stdout:  # noqa: UP028
            yield line

    def host_event(self, event: Event) -> Event:
        return event  # the agent runs on this host: its paths are this host's

    def interrupt(self) -> None:
        self._proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self._proc.wait()

    def stderr_tail(self, count: int) -> list[str]:
        return []  # the agent's stderr is this terminal's: it was seen as it came

    def log_tail(self, count: int) -> list[str]:
        return []  # its stdout was only relayed: the supervisor keeps the tail it saw

    def end_reason(self, code: int, interrupted: bool) -> str:
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        when = "after Ctrl-C " if interrupted else ""
        return f"the agent {how} {when}before it finished the run"

    def fetch_run_dir(self) -> None:
        return None  # written in place, under this host's output root

    def close(self) -> None:
        if self._proc.poll() is None:  # left running by an error here: not to outlive bench-run
            self.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def replica_lines(replicas: Mapping[str, Any], secrets: list[str]) -> list[str]:
    """--dry-run's lines for --replicas: each server (GPUs, environment) and the router."""
    lines = [f"# {replicas['count']} replicas, --spread {replicas['spread']}:"]
    for k, server in enumerate(replicas["servers"]):
        env = " ".join(f"{name}={value}" for name, value in server["env"].items())
        lines.append(f"# server {k} (GPUs {server['gpus'] or 'none'}; {server_log(k)}):")
        lines.append(
            ((env + " ") if env else "") + shlex.join(redact_argv(server["argv"], secrets))
        )
    if replicas.get("router"):
        lines.append("# router, started once every server is ready (router.log):")
        lines.append(shlex.join(replicas["router"]["argv"]))
    return lines


def check_dp(plan: Plan, vllm: str) -> None:
    """--spread dp needs a vLLM whose `vllm serve` has --data-parallel-size: exit 2 if not."""
    if not any(r.replicas is not None and r.replicas.spread == "dp" for r in plan.runs):
        return
    python = loadgen_python(vllm)
    if python is not None and has_data_parallel(python) is False:
        raise PlanError(
            f"--spread dp: the vLLM of {vllm} has no --data-parallel-size: use --spread router "
            "or --spread clients, or a newer vLLM"
        )
