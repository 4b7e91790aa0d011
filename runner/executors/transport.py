"""A transport: the agent of one run started somewhere (a child process, a container, a pod)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from runner.executors.base import Event


class Transport(Protocol):
    """What the supervisor needs of a started agent; it calls close() exactly once, last.

    A transport only moves things: relaying events, Ctrl-C, finishing a dead agent's run
    directory and reading the outcome are the supervisor's.
    """

    def lines(self) -> Iterator[str]:
        """The agent's stdout, line by line, until it ends.

        A Ctrl-C ends an iteration early; the next call goes on after the last line given.
        """
        ...

    def host_event(self, event: Event) -> Event:
        """An agent event as this host sees it (a container's paths made the host's)."""
        ...

    def interrupt(self) -> None:
        """Ask the agent to wind down (SIGINT): it stops its server and finishes its run dir."""
        ...

    def kill(self) -> None:
        """Stop the agent now (SIGKILL); harmless once it has ended; callable from any thread."""
        ...

    def wait(self, timeout: float) -> int:
        """The agent's exit status; one that does not end within timeout is killed."""
        ...

    def stderr_tail(self, count: int) -> list[str]:
        """The agent's last stderr lines when nobody saw them (a container's); else []."""
        ...

    def log_tail(self, count: int) -> list[str]:
        """The agent's last output lines as the transport kept them; [] when it keeps none."""
        ...

    def end_reason(self, code: int, interrupted: bool) -> str:
        """Why the agent ended before it finished its run: killed, out of memory, its exit."""
        ...

    def fetch_run_dir(self) -> None:
        """Bring the run directory to this host's output root, where it is not already."""
        ...

    def close(self) -> None:
        """Release what the transport holds (a container, a process), whatever happened."""
        ...
