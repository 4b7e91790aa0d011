"""A replica server another party started (the docker executor: one container per replica).

Standard library only. It stands where procs.Server stands in a Fleet (start, wait_ready,
check_alive, stop, proc), but the agent owns no process: the server's container runs it under
the small shell wrapper below, which writes the server's output to a log in the shared output
root, its exit status to <log>.exit when it ends, and stops it (SIGTERM) when <log>.stop appears
or the container is stopped. The agent reads the log for failures and copies it into the run
directory as server-<k>.log once the server has stopped.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from .procs import WatchedServer

# `sh -c WRAPPER LOG vllm serve ...`: $0 is the log, "$@" the server's command line. A watcher
# subshell turns <log>.stop into a SIGTERM; the trap does the same for `docker stop` (sh as PID 1
# ignores SIGTERM without one); a wait cut short by the trap is waited again for the real status.
WRAPPER = (
    'log="$0"; "$@" >"$log" 2>&1 & pid=$!; '
    "trap 'kill -TERM $pid 2>/dev/null' TERM INT; "
    '( while [ ! -e "$log.stop" ]; do sleep 1; done; kill -TERM $pid 2>/dev/null ) & watcher=$!; '
    "wait $pid; code=$?; "
    "while [ $code -gt 128 ] && kill -0 $pid 2>/dev/null; do wait $pid; code=$?; done; "
    'kill $watcher 2>/dev/null; echo $code >"$log.exit"; exit $code'
)
POLL_S = 0.5


def wrapper_argv(shell: str, log: str, argv: list[str]) -> list[str]:
    """The replica container's command: the wrapper around the server's own command line."""
    return [shell, "-c", WRAPPER, log, *argv]


class RemoteServer(WatchedServer):
    """A replica's server in its own container, followed through its log and /health."""

    proc = None  # no process of the agent's: telemetry and exit codes come from the files

    def __init__(
        self, argv: list[str], *, log: Path, copy_to: Path, health_url: str, stop_timeout_s: float
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self.copy_to = copy_to
        self.health_url = health_url
        self.stop_timeout_s = stop_timeout_s
        self.exit_status: int | None = None

    def _exited(self) -> int | None:
        if self.exit_status is None:
            with contextlib.suppress(OSError, ValueError):
                self.exit_status = int(Path(f"{self.log}.exit").read_text().strip())
        return self.exit_status

    def _pause(self) -> None:
        time.sleep(POLL_S)  # its exit is a file: no process to wait on

    def start(self) -> None:
        """Started already, by whoever made its container."""

    def stop(self, grace_s: float | None = None) -> int | None:
        """Ask the wrapper to stop the server; its exit status (None if it did not end in time:
        the executor stops the container). The log is copied into the run directory either way."""
        try:
            if self._exited() is None:
                Path(f"{self.log}.stop").touch()
                deadline = time.monotonic() + (self.stop_timeout_s if grace_s is None else grace_s)
                while self._exited() is None and time.monotonic() < deadline:
                    time.sleep(POLL_S)
        finally:
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log, self.copy_to)
        return self.exit_status
