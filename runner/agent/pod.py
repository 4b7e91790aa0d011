"""The agent in a Kubernetes pod: its job by completion index, its run directory served after.

Standard library only. `--jobs-dir DIR` picks DIR/job_file_name($JOB_COMPLETION_INDEX);
`--collect-port PORT --hold-s S` keeps the pod after the run and serves the run directory as a
tar stream (GET COLLECT_PATH_TAR) until bench-run says it has it (POST COLLECT_PATH_DONE) or
nobody has come for S seconds. See pod_contract for the names both sides share.
"""

from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..rundir import partial_dir
from .pod_contract import (
    COLLECT_PATH_DONE,
    COLLECT_PATH_TAR,
    DEFAULT_HOLD_S,
    INDEX_VAR,
    job_file_name,
)
from .util import Events


class PodJobError(Exception):
    """The pod's job cannot be found or read: one line saying which and why."""


def job_path(jobs_dir: Path, environ: Mapping[str, str]) -> Path:
    """The job file of this pod's completion index; PodJobError when the index is unusable."""
    text = environ.get(INDEX_VAR)
    if text is None:
        raise PodJobError(
            f"${INDEX_VAR} is not set: --jobs-dir needs the pod of an Indexed Job "
            "(or the variable set by hand)"
        )
    try:
        index = int(text)
    except ValueError:
        raise PodJobError(f"${INDEX_VAR}={text!r} is not a completion index") from None
    if index < 0:
        raise PodJobError(f"${INDEX_VAR}={index} is not a completion index")
    return jobs_dir / job_file_name(index)


def run_dir_of(out_root: Path, run_id: str) -> Path | None:
    """The run directory to hand over: the finished one, else an unfinished one, else None."""
    for candidate in (out_root / run_id, partial_dir(out_root, run_id)):
        if candidate.is_dir():
            return candidate
    return None


class _Collection:
    """What the collect server hands out and whether it has been told the copy is home."""

    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir
        self.done = threading.Event()


def _handler(collection: _Collection) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != COLLECT_PATH_TAR:
                self.send_error(404, f"only {COLLECT_PATH_TAR} is served here")
                return
            if collection.run_dir is None:
                self.send_error(404, "the agent left no run directory")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("X-Run-Dir", collection.run_dir.name)
            self.end_headers()
            # Streamed as it is read (mode "w|"): no copy of the run directory in memory.
            with tarfile.open(fileobj=self.wfile, mode="w|") as tar:
                tar.add(collection.run_dir, arcname=collection.run_dir.name)

        def do_POST(self) -> None:
            if self.path != COLLECT_PATH_DONE:
                self.send_error(404, f"POST {COLLECT_PATH_DONE} only")
                return
            body = b"bye\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            collection.done.set()

        def log_message(self, format: str, *args: Any) -> None:
            return None  # stdout is the event stream; the server's chatter stays out of it

    return Handler


def serve_run_dir(
    run_dir: Path | None, port: int, hold_s: float, events: Events, code: int
) -> bool:
    """Serve the run directory until it is collected or hold_s passes; True when collected."""
    collection = _Collection(run_dir)
    server = ThreadingHTTPServer(("0.0.0.0", port), _handler(collection))  # noqa: S104 (the pod)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="collect", daemon=True)
    thread.start()
    events.emit(
        "collect_ready",
        port=server.server_address[1],
        hold_s=hold_s,
        exit_code=code,
        run_dir=str(run_dir) if run_dir else None,
    )
    try:
        collected = collection.done.wait(hold_s)
    finally:
        server.shutdown()
        server.server_close()
    events.emit("collect_end", collected=collected)
    return collected


def hold_s_from(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def pod_environ() -> Mapping[str, str]:
    return os.environ


__all__ = ["DEFAULT_HOLD_S", "PodJobError", "job_path", "run_dir_of", "serve_run_dir"]
