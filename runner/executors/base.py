"""What every executor offers: preflight, a dry-run description, and execution of a plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner.plan import Plan

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
