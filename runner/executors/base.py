"""What every executor offers: preflight, a dry-run description, and execution of a plan."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner.plan import Plan, Run
from runner.rundir import (
    EXIT_INTERRUPTED,
    FAILED,
    INTERRUPTED,
    RunDirError,
    RunState,
    finish_abandoned,
    partial_dir,
)

Event = dict[str, Any]
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended: the agent's exit status, its run directory and its final status."""

    run_id: str
    run_dir: Path
    status: str
    reason: str | None
    exit_code: int


class Executor(Protocol):
    name: str

    def preflight(self, plan: Plan, note: Callable[[str], None] | None = None) -> list[str]:
        """Check everything that can be known before anything starts; return warnings."""
        ...

    def describe(self, plan: Plan) -> str:
        """The exact commands and environment a run would use (for --dry-run)."""
        ...

    def execute(self, plan: Plan, on_event: EventSink) -> list[RunOutcome]:
        """Run every Run of the plan; the agent's events go to on_event."""
        ...


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


def read_outcome(run: Run, out_root: Path, code: int, interrupted: bool) -> RunOutcome:
    """How a run ended, from its run directory (the agent's status.json), whatever ran it."""
    run_dir = out_root / run.run_id
    recorded = RunState.read(run_dir)
    if recorded is not None:
        state, reason = recorded.status, recorded.reason
    else:
        state = INTERRUPTED if interrupted else FAILED
        reason = f"the agent exited with status {code} before it finished its run directory"
    if interrupted and code != EXIT_INTERRUPTED:
        code = EXIT_INTERRUPTED
    return RunOutcome(run.run_id, run_dir, state, reason, code)


class AgentWatch:
    """Relays events, keeping what explains an agent's early end: its error, its last output."""

    def __init__(self, on_event: EventSink) -> None:
        self.on_event = on_event
        self.error: str | None = None
        self.output: deque[str] = deque(maxlen=20)

    def __call__(self, event: dict[str, object]) -> None:
        if event.get("event") == "run_error":
            self.error = str(event.get("reason"))
        elif event.get("event") == "agent_output":
            self.output.append(str(event.get("line")))
        self.on_event(event)


def finish_unfinished(
    run: Run,
    out_root: Path,
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
    work_dir = partial_dir(out_root, run.run_id)
    state = INTERRUPTED if interrupted else FAILED
    try:
        final = finish_abandoned(work_dir, reason, tail, interrupted=interrupted)
    except RunDirError as exc:
        why = reason if str(exc) == reason else f"{reason}; {exc}"
        on_event({"event": "run_finished", "run_id": run.run_id, "status": state,
                  "reason": why, "run_dir": str(work_dir)})  # fmt: skip
        return RunOutcome(run.run_id, work_dir, state, why, code)
    if final is None:
        return None
    on_event({"event": "run_finished", "run_id": run.run_id, "status": state, "reason": reason,
              "run_dir": str(final)})  # fmt: skip
    return None
