"""The agent's end of the sweep's load generator: start it with the server, send it each point."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .own import with_agent_path
from .procs import CommandResult, child_argv, kill_group
from .provenance import interpreter_of

SERVE_PREFIX = ("bench", "serve")
CLIENT_MODES = ("persistent", "process")


class LoadGenUnavailable(Exception):
    """The load generator cannot run here (no Python for vLLM, an old vLLM, it died)."""


def loadgen_python(vllm: str) -> str | None:
    """The Python that runs the `vllm` console script, which can import vLLM's benchmark code."""
    path = vllm if os.sep in vllm else shutil.which(vllm)
    return interpreter_of(path) if path else None


def serve_args(argv: Sequence[str]) -> list[str] | None:
    """What follows `vllm bench serve` in a point's argv; None for any other command."""
    if len(argv) >= 3 and tuple(argv[1:3]) == SERVE_PREFIX:
        return list(argv[3:])
    return None


class LoadGenerator:
    """One `python -m runner.agent.loadgen` process for a sweep, in its own process group."""

    def __init__(self, python: str, *, cwd: Path, env: Mapping[str, str], log: Path) -> None:
        self.python = python
        self.cwd = cwd
        self.env = dict(env)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None
        self._buffer = b""

    def start(self) -> None:
        """Start it now, so that its import of vLLM overlaps the server's start."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                child_argv([self.python, "-m", "runner.agent.loadgen"]),
                cwd=self.cwd,
                env={**with_agent_path(self.env), "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )

    def _line(self, deadline: float) -> dict[str, Any] | None:
        """The next reply, or None at the deadline; LoadGenUnavailable when it has exited."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self.proc.wait()
                raise LoadGenUnavailable(f"the load generator exited with status {code}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        value = json.loads(line.decode("utf-8", "replace"))
        return value if isinstance(value, dict) else {}

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds it took to import vLLM; LoadGenUnavailable (with why) when it cannot run.

        By the first point it has usually long been ready: the wait is then a read of its reply.
        """
        if self.ready_s is not None:
            return self.ready_s
        reply = self._line(time.monotonic() + timeout_s)
        if reply is None:
            self.stop()
            raise LoadGenUnavailable(f"the load generator was not ready after {timeout_s:g} s")
        if reply.get("event") != "ready":
            self.stop()
            raise LoadGenUnavailable(str(reply.get("reason") or "it did not say it was ready"))
        # Its own import time, not how long the agent took to ask (after the server was ready).
        seconds = reply.get("seconds")
        self.ready_s = float(seconds) if isinstance(seconds, (int, float)) else 0.0
        return self.ready_s

    def run(self, point_id: str, args: Sequence[str], log: Path, timeout_s: float) -> CommandResult:
        """Run one point as `vllm bench serve ARGS` would; on time-out or interrupt, kill it."""
        assert self.proc is not None and self.proc.stdin is not None
        started = time.monotonic()
        log.parent.mkdir(parents=True, exist_ok=True)
        request = {"id": point_id, "argv": list(args), "log": str(log), "cwd": str(self.cwd)}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            reply = self._line(started + timeout_s)
        except (BrokenPipeError, LoadGenUnavailable):
            self.stop(kill=True)
            raise LoadGenUnavailable("the load generator died during a point") from None
        except BaseException:
            self.stop(kill=True)  # Ctrl-C: no request may outlive the agent
            raise
        if reply is None:
            self.stop(kill=True)
            return CommandResult(None, time.monotonic() - started, True)
        return CommandResult(int(reply.get("returncode", 1)), time.monotonic() - started, False)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, kill: bool = False) -> None:
        """Close its input (it exits at once between points); kill its group if it lingers.

        kill: mid-point (a time-out, Ctrl-C), where closing its input would not stop it.
        """
        if self.proc is None:
            return
        if kill:
            kill_group(self.proc, 2.0)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            kill_group(self.proc, 5.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
