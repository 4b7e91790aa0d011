"""Human progress on stderr from the agent's JSON-line events."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class ConsoleReporter:
    """One line per meaningful event, and on a terminal a live bar of the points done.

    Data (tables) goes to stdout elsewhere; all of this goes to stderr. Off a terminal (CI logs,
    pipes) only the lines are written, so logs stay plain text.
    """

    def __init__(self, console: Console | None = None, verbose: bool = False) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.verbose = verbose
        self._progress: Progress | None = None
        self._points: TaskID | None = None
        self._waiting: TaskID | None = None
        self._image: TaskID | None = None
        self._layers: dict[str, tuple[int, int]] = {}  # layer -> (bytes done, bytes in all)

    @property
    def live(self) -> bool:
        return self.console.is_terminal

    def _bar(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self._progress

    def close(self) -> None:
        """Stop the live display (also after an error), leaving the printed lines."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._points = self._waiting = self._image = None

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

    # -- image pull / build (docker executor, before any container starts) -------------------
    def _image_task(self, description: str) -> TaskID:
        if self._image is None:
            self._image = self._bar().add_task(description, total=None)
        return self._image

    def _on_image_pull(self, e: dict[str, Any]) -> None:
        layer, status = str(e.get("layer") or ""), str(e.get("status") or "")
        if not self.live:
            if not layer or status == "Pull complete":
                self.note(f"  pull {e.get('image')}{' ' + layer if layer else ''}: {status}", "dim")
            return
        task = self._image_task(f"pull {e.get('image')}")
        if layer and e.get("total"):
            self._layers[layer] = (int(e.get("current") or 0), int(e["total"]))
        elif layer and status in ("Pull complete", "Already exists") and layer in self._layers:
            total = self._layers[layer][1]
            self._layers[layer] = (total, total)
        if self._layers and self._progress is not None:
            done = sum(current for current, _ in self._layers.values())
            total = sum(size for _, size in self._layers.values())
            self._progress.update(task, completed=done, total=total)

    def _on_image_build(self, e: dict[str, Any]) -> None:
        line = str(e.get("line") or "")
        if not self.live:
            self.note(f"  {line}", "dim")
            return
        step = e.get("step")
        task = self._image_task(f"build {e.get('image')}")
        if self._progress is not None:
            self._progress.update(task, description=f"build {e.get('image')}: {step or line}"[:100])
        if step is None or (isinstance(step, str) and line.startswith(step)):
            self.note(f"  {line}", "dim")  # the header and each step, not every output line

    def _on_image_ready(self, e: dict[str, Any]) -> None:
        if self._progress is not None and self._image is not None:
            self._progress.remove_task(self._image)
        self._image = None
        self._layers.clear()
        image_id = str(e.get("id"))[:19]
        self.note(f"image {e.get('image')} ready ({e.get('how')}, {image_id})", "green")

    def _on_note(self, e: dict[str, Any]) -> None:
        self.note(str(e.get("text")), "dim")

    def _on_warning(self, e: dict[str, Any]) -> None:
        self.note(f"warning: {e.get('text')}", "yellow")

    def _on_loadgen_unavailable(self, e: dict[str, Any]) -> None:
        self.note(
            f"warning: one `vllm bench serve` process per point ({e.get('reason')})", "yellow"
        )

    def _on_run_started(self, e: dict[str, Any]) -> None:
        self.note(f"run {e['run_id']}: {e['points']} point(s) -> {e['run_dir']}", "bold")
        if self.live:
            self._points = self._bar().add_task("points", total=e["points"])

    def _on_server_starting(self, e: dict[str, Any]) -> None:
        self.note("starting vllm serve" + (f": {' '.join(e['argv'])}" if self.verbose else ""))
        if self.live:
            self._waiting = self._bar().add_task("waiting for /health", total=None)

    def _on_server_waiting(self, e: dict[str, Any]) -> None:
        if not self.live:  # the spinner shows it on a terminal
            self.note(f"  waiting for /health ({e['seconds']:.0f} s)", "dim")

    def _end_wait(self) -> None:
        if self._progress is not None and self._waiting is not None:
            self._progress.remove_task(self._waiting)
            self._waiting = None

    def _on_server_ready(self, e: dict[str, Any]) -> None:
        self._end_wait()
        self.note(f"server ready after {e['seconds']:.1f} s", "green")

    def _on_server_failed(self, e: dict[str, Any]) -> None:
        self._end_wait()
        self.note(f"server failed: {e['reason']}", "red")
        for line in e.get("log_tail", [])[-10:]:
            self.note(f"  | {line}", "dim")

    def _on_point_started(self, e: dict[str, Any]) -> None:
        prompts = e.get("num_prompts")
        what = f"{prompts} prompt(s)" if prompts else e.get("scenario", "")
        self.note(f"[{e['index']}/{e['total']}] {e['id']}: {what} ...")
        if self._progress is not None and self._points is not None:
            self._progress.update(self._points, description=f"{e['id']}")

    def _on_point_finished(self, e: dict[str, Any]) -> None:
        seconds = e.get("seconds")
        took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
        if e["verdict"] == "ok":
            self.note(f"  {e['id']}: ok{took}", "green")
        else:
            self.note(
                f"  {e['id']}: {e['verdict']}{took}: {'; '.join(e.get('reasons', []))}", "red"
            )
        if self._progress is not None and self._points is not None:
            self._progress.advance(self._points)

    def _on_interrupting(self, e: dict[str, Any]) -> None:
        self.note(
            f"interrupted: stopping the server and saving the run (up to {e['grace_s']:.0f} s)",
            "yellow",
        )

    def _on_run_finished(self, e: dict[str, Any]) -> None:
        self.close()
        style = {"ok": "green", "interrupted": "yellow"}.get(e["status"], "red")
        reason = f": {e['reason']}" if e.get("reason") else ""
        self.note(f"run {e['run_id']} {e['status']}{reason}", style)

    def _on_job_error(self, e: dict[str, Any]) -> None:
        self.note(f"agent: {e['reason']}", "red")

    def _on_agent_output(self, e: dict[str, Any]) -> None:
        self.note(f"agent: {e['line']}", "dim")
