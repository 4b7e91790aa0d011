"""What every executor offers: preflight, a dry-run description, and execution of a plan."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner.agent.core import EXIT_INTERRUPTED
from runner.plan import Plan, Run

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
    try:
        status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
        state, reason = str(status.get("status")), status.get("reason")
    except (OSError, json.JSONDecodeError):
        state = "interrupted" if interrupted else "failed"
        reason = f"the agent exited with status {code} before it finished its run directory"
    if interrupted and code != EXIT_INTERRUPTED:
        code = EXIT_INTERRUPTED
    return RunOutcome(run.run_id, run_dir, state, reason, code)
