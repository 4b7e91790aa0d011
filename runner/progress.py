"""Human progress on stderr from the agent's JSON-line events."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape


class ConsoleReporter:
    """Prints one line per meaningful event; data (tables) goes to stdout elsewhere."""

    def __init__(self, console: Console | None = None, verbose: bool = False) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.verbose = verbose

    def note(self, text: str, style: str = "") -> None:
        # soft_wrap: a long path stays on one line, whole, for people to copy
        self.console.print(f"[{style}]{escape(text)}[/]" if style else escape(text), soft_wrap=True)

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)
        elif self.verbose:
            self.note(str(event), "dim")

    def _on_run_started(self, e: dict[str, Any]) -> None:
        self.note(f"run {e['run_id']}: {e['points']} point(s) -> {e['run_dir']}", "bold")

    def _on_server_starting(self, e: dict[str, Any]) -> None:
        self.note("starting vllm serve" + (f": {' '.join(e['argv'])}" if self.verbose else ""))

    def _on_server_waiting(self, e: dict[str, Any]) -> None:
        self.note(f"  waiting for /health ({e['seconds']:.0f} s)", "dim")

    def _on_server_ready(self, e: dict[str, Any]) -> None:
        self.note(f"server ready after {e['seconds']:.1f} s", "green")

    def _on_server_failed(self, e: dict[str, Any]) -> None:
        self.note(f"server failed: {e['reason']}", "red")
        for line in e.get("log_tail", [])[-10:]:
            self.note(f"  | {line}", "dim")

    def _on_point_started(self, e: dict[str, Any]) -> None:
        prompts = e.get("num_prompts")
        what = f"{prompts} prompt(s)" if prompts else e.get("scenario", "")
        self.note(f"[{e['index']}/{e['total']}] {e['id']}: {what} ...")

    def _on_point_finished(self, e: dict[str, Any]) -> None:
        seconds = e.get("seconds")
        took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
        if e["verdict"] == "ok":
            self.note(f"  {e['id']}: ok{took}", "green")
        else:
            self.note(
                f"  {e['id']}: {e['verdict']}{took}: {'; '.join(e.get('reasons', []))}", "red"
            )

    def _on_interrupting(self, e: dict[str, Any]) -> None:
        self.note(
            f"interrupted: stopping the server and saving the run (up to {e['grace_s']:.0f} s)",
            "yellow",
        )

    def _on_run_finished(self, e: dict[str, Any]) -> None:
        style = {"ok": "green", "interrupted": "yellow"}.get(e["status"], "red")
        reason = f": {e['reason']}" if e.get("reason") else ""
        self.note(f"run {e['run_id']} {e['status']}{reason}", style)

    def _on_job_error(self, e: dict[str, Any]) -> None:
        self.note(f"agent: {e['reason']}", "red")

    def _on_agent_output(self, e: dict[str, Any]) -> None:
        self.note(f"agent: {e['line']}", "dim")
