"""The agent's child processes: each in its own process group, with deadlines, killed as a group."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .util import KEPT_TAIL, read_failure

POLL_S = 0.1  # /health is polled this often: the ready time is this precise


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the agent."""


# The child's set-up runs in a small exec wrapper, not in preexec_fn: the agent samples every
# point from a thread (probe.py), and Python code run between fork and exec can deadlock on a
# lock that thread held at the fork (the loader's, the allocator's). Pinning is inherited by
# everything the command starts; PR_SET_PDEATHSIG survives the exec.
_SETUP = """import ctypes, os, signal, sys
cpus, argv = sys.argv[1], sys.argv[2:]
if cpus:
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
except (OSError, AttributeError):
    pass
try:
    os.execvp(argv[0], argv)
except OSError as exc:
    print(f"cannot start {argv[0]}: {exc.strerror}", file=sys.stderr)
    sys.exit(127)
"""


def child_argv(argv: Sequence[str], cpus: Sequence[int] | None = None) -> list[str]:
    """argv as started by the agent: pinned to `cpus` (None: left as is), killed with the agent.

    Linux only; elsewhere argv itself (no pinning, no parent-death signal there)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    pinned = ",".join(str(cpu) for cpu in cpus or ())
    return [sys.executable, "-S", "-c", _SETUP, pinned, *argv]


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    cpus: Sequence[int] | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv in a new session (its own process group), output appended to log; `cpus`:
    the CPUs it (and every process it starts) may run on."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            child_argv(argv, cpus),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes], grace_s: float) -> int | None:
    """SIGTERM the process group, wait up to grace_s, then SIGKILL it; return the exit status."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_group(pgid: int, grace_s: float = 5.0) -> None:
    """Kill whatever is left of a process group whose leader has already exited."""
    if not _group_alive(pgid):
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class CommandResult:
    returncode: int | None
    seconds: float
    timed_out: bool


def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    timeout_s: float,
    grace_s: float = 15.0,
) -> CommandResult:
    """Run argv to completion within timeout_s; on time-out or interrupt, kill its group."""
    started = time.monotonic()
    proc = spawn(argv, cwd=cwd, env=env, log=log)
    try:
        returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc, grace_s)
        return CommandResult(None, time.monotonic() - started, True)
    except BaseException:
        kill_group(proc, grace_s)
        raise
    reap_group(proc.pid)
    return CommandResult(returncode, time.monotonic() - started, False)


class ServerFailed(Exception):
    """The server exited, reported itself dead, or was not ready in time."""

    def __init__(
        self, reason: str, log_tail: list[str], cause: str | None = None, rejected: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail
        self.cause = cause  # vLLM's own line for it
        self.rejected = rejected  # vLLM's argument parser refused the flags: nothing started


# `vllm serve` with a flag its parser refuses exits with status 2 and argparse's line, e.g.
# "vllm serve: error: unrecognized arguments: --no-such-flag", before anything is loaded.
_PARSER_ERROR = re.compile(r"^(usage: |\S.*: error: )")
ARGPARSE_EXIT = 2


def http_status(url: str, timeout_s: float = 5.0) -> int | None:
    """The HTTP status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own server
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, TimeoutError):
        return None


class WatchedServer:
    """A `vllm serve` followed through its log and /health: the readiness wait that fails fast,
    the liveness check and the failure read from its log, whoever started it.

    Subclasses say whether it has exited (`_exited`) and how to wait between polls (`_pause`).
    """

    log: Path
    health_url: str

    def _exited(self) -> int | None:
        """Its exit status once it has ended, else None."""
        raise NotImplementedError

    def _pause(self) -> None:
        time.sleep(POLL_S)

    def failure(self, reason: str, exit_status: int | None = None) -> ServerFailed:
        lines, line = read_failure(self.log)
        tail = lines[-KEPT_TAIL:]
        parser_line = next((x for x in reversed(lines) if _PARSER_ERROR.match(x.strip())), None)
        if exit_status == ARGPARSE_EXIT and parser_line is not None and ": error: " in parser_line:
            return ServerFailed(reason, tail, parser_line.strip(), rejected=True)
        return ServerFailed(f"{reason}: {line}" if line else reason, tail, line)

    def wait_ready(
        self, deadline_s: float, on_wait: Callable[[float], None] | None = None
    ) -> float:
        """Poll /health until 200; raise ServerFailed on exit, 503 or the deadline."""
        started = time.monotonic()
        last_note = started
        while True:
            code = self._exited()
            if code is not None:
                raise self.failure(
                    f"vllm serve exited with status {code} before it was ready", code
                )
            status = http_status(self.health_url, timeout_s=2.0)
            if status == 200:
                return time.monotonic() - started
            if status == 503:
                raise self.failure("vllm serve answered /health with 503 (the engine died)")
            elapsed = time.monotonic() - started
            if elapsed > deadline_s:
                raise self.failure(f"vllm serve was not ready after {deadline_s:g} s")
            if on_wait is not None and time.monotonic() - last_note >= 15:
                last_note = time.monotonic()
                on_wait(elapsed)
            self._pause()

    def check_alive(self) -> None:
        """Raise ServerFailed if the server is gone or unhealthy."""
        code = self._exited()
        if code is not None:
            raise self.failure(f"vllm serve exited with status {code} during the sweep")
        status = http_status(self.health_url, timeout_s=10.0)
        if status != 200:
            raise self.failure(f"vllm serve stopped answering /health (status {status})")


class Server(WatchedServer):
    """`vllm serve` in its own process group, with a readiness wait that fails fast."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
        health_url: str,
        stop_timeout_s: float,
        cpus: Sequence[int] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.cpus = list(cpus) if cpus else None
        self.cwd = cwd
        self.env = dict(env)
        self.log = log
        self.health_url = health_url
        self.stop_timeout_s = stop_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = spawn(self.argv, cwd=self.cwd, env=self.env, log=self.log, cpus=self.cpus)

    @property
    def exit_status(self) -> int | None:
        """Its exit status as last seen (None: not started, or not seen ended)."""
        return self.proc.returncode if self.proc is not None else None

    def _exited(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def _pause(self) -> None:
        # Waiting on the process is the poll interval: its exit ends the wait at once.
        assert self.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=POLL_S)

    def stop(self, grace_s: float | None = None) -> int | None:
        """SIGTERM the server's group, SIGKILL it after grace_s (default: the stop deadline)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            reap_group(self.proc.pid)
            return self.proc.returncode
        return kill_group(self.proc, self.stop_timeout_s if grace_s is None else grace_s)


@contextmanager
def interruptible() -> Iterator[None]:
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
