"""One supervisor for every transport: event relay, Ctrl-C, a dead agent's run dir, the outcome."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from runner.executors.base import Event, EventSink, RunOutcome
from runner.executors.transport import Transport
from runner.plan import Run
from runner.rundir import (
    EXIT_BAD_JOB,
    EXIT_INTERRUPTED,
    FAILED,
    INTERRUPTED,
    REJECTED,
    RunDirError,
    RunState,
    finish_abandoned,
    partial_dir,
)

TAIL_LINES = 20  # of the agent's output, kept with the points of a run it could not finish
StartTransport = Callable[[Run, EventSink], Transport]


def relay_line(line: str, on_event: EventSink) -> None:
    """One line of the agent's stdout: its JSON event, or the raw text as an agent_output event."""
    line = line.strip()
    if not line:
        return
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        event = {"event": "agent_output", "line": line}
    if isinstance(event, dict):
        on_event(event)


class AgentWatch:
    """Relays events, keeping what explains an agent's early end: its error, its last output."""

    def __init__(self, on_event: EventSink) -> None:
        self.on_event = on_event
        self.error: str | None = None
        self.rejected: str | None = None  # the agent refused the configuration: why
        self.output: deque[str] = deque(maxlen=TAIL_LINES)

    def __call__(self, event: Event) -> None:
        if event.get("event") == "run_error":
            self.error = str(event.get("reason"))
        elif event.get("event") == "job_error" and event.get("rejected"):
            self.rejected = str(event.get("reason"))
        elif event.get("event") == "agent_output":
            self.output.append(str(event.get("line")))
        self.on_event(event)


def read_outcome(out_root: Path, run_id: str, code: int, interrupted: bool) -> RunOutcome:
    """How a run ended, from its run directory (the agent's status.json), whatever ran it."""
    run_dir = out_root / run_id
    recorded = RunState.read(run_dir)
    if recorded is not None:
        state, reason = recorded.status, recorded.reason
    else:
        state = INTERRUPTED if interrupted else FAILED
        reason = f"the agent exited with status {code} before it finished its run directory"
    if interrupted and code != EXIT_INTERRUPTED:
        code = EXIT_INTERRUPTED
    return RunOutcome(run_id, run_dir, state, reason, code)


def finish_unfinished(
    out_root: Path,
    run_id: str,
    code: int,
    reason: str,
    tail: list[str],
    interrupted: bool,
    on_event: EventSink,
) -> RunOutcome | None:
    """Finish the run directory an agent left unfinished, and say so in one event.

    None when the agent left nothing to finish (read_outcome then says why); an outcome naming
    the unfinished directory when it cannot be finished (a disk still full).
    """
    work_dir = partial_dir(out_root, run_id)
    state = INTERRUPTED if interrupted else FAILED
    try:
        final = finish_abandoned(work_dir, reason, tail, interrupted=interrupted)
    except RunDirError as exc:
        why = reason if str(exc) == reason else f"{reason}; {exc}"
        on_event({"event": "run_finished", "run_id": run_id, "status": state,
                  "reason": why, "run_dir": str(work_dir)})  # fmt: skip
        return RunOutcome(run_id, work_dir, state, why, code)
    if final is None:
        return None
    on_event({"event": "run_finished", "run_id": run_id, "status": state, "reason": reason,
              "run_dir": str(final)})  # fmt: skip
    return None


class Supervisor:
    """Follows each run's agent through its transport to an outcome, run after run.

    Ctrl-C: the first asks the agent to wind down and gives it `interrupt_grace_s` before it is
    killed; a second kills it at once. An agent that dies before it finishes its run directory
    (SIGKILL, out of memory, a full disk) has it finished here, so no `.partial` is left.
    """

    def __init__(self, out_root: Path, interrupt_grace_s: float = 120.0) -> None:
        self.out_root = out_root
        self.interrupt_grace_s = interrupt_grace_s

    def run_plan(
        self, runs: Iterable[Run], start: StartTransport, on_event: EventSink
    ) -> list[RunOutcome]:
        """Every run in turn, each through the transport `start` makes; none after a Ctrl-C."""
        outcomes: list[RunOutcome] = []
        for run in runs:
            outcome = self.supervise(run.run_id, start(run, on_event), on_event)
            outcomes.append(outcome)
            if outcome.exit_code == EXIT_INTERRUPTED:
                break
        return outcomes

    def supervise(self, run_id: str, transport: Transport, on_event: EventSink) -> RunOutcome:
        """One started agent to its outcome; the transport is closed whatever happens."""
        watched = AgentWatch(lambda event: on_event(transport.host_event(event)))
        unfinished: RunOutcome | None = None
        reason: str | None = None  # why the agent ended early, when it left no run directory
        try:
            code, interrupted = self._follow(transport, watched, on_event)
            if code != 0:
                for text in transport.stderr_tail(TAIL_LINES):
                    on_event({"event": "agent_output", "line": text})
            transport.fetch_run_dir()
            if code == EXIT_BAD_JOB and watched.rejected is not None:
                # Refused before anything was measured; the agent left no run directory.
                return RunOutcome(run_id, self.out_root / run_id, REJECTED, watched.rejected, code)
            if not (self.out_root / run_id).exists():
                # The agent died (killed, out of memory) or could not write: finish its run dir.
                reason = watched.error or transport.end_reason(code, interrupted)
                tail = transport.log_tail(TAIL_LINES) or list(watched.output)
                unfinished = finish_unfinished(
                    self.out_root, run_id, code, reason, tail, interrupted, on_event
                )
        finally:
            transport.close()
        outcome = unfinished or read_outcome(self.out_root, run_id, code, interrupted)
        if reason is not None and not outcome.run_dir.exists():
            # Nothing was written (an image with no Python for the agent, a container killed at
            # start): the transport's reason is the one line the user gets.
            outcome = RunOutcome(run_id, outcome.run_dir, outcome.status, reason, outcome.exit_code)
        return outcome

    def _follow(
        self, transport: Transport, watched: AgentWatch, on_event: EventSink
    ) -> tuple[int, bool]:
        """Relay the agent's lines until it ends; its exit status, and whether Ctrl-C came."""
        interrupted = False
        # If the agent does not wind down in time after Ctrl-C, kill it (its server dies with it).
        watchdog = threading.Timer(self.interrupt_grace_s, transport.kill)
        watchdog.daemon = True
        try:
            while True:
                try:
                    for line in transport.lines():
                        relay_line(line, watched)
                    break
                except KeyboardInterrupt:
                    if interrupted:  # a second Ctrl-C: stop waiting
                        transport.kill()
                        break
                    interrupted = True
                    on_event({"event": "interrupting", "grace_s": self.interrupt_grace_s})
                    transport.interrupt()
                    watchdog.start()
            return transport.wait(self.interrupt_grace_s), interrupted
        finally:
            watchdog.cancel()
