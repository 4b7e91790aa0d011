"""The Kubernetes transport: one completion index's pod, its log as events, its run dir collected.

The pod is found by its Job's name and completion index; while it is Pending its conditions,
container states and events say whether it will ever start (an unbound PVC, no node with the
GPUs asked for, an image that cannot be pulled). Once it runs, its log (followed) carries the
agent's JSON events. When the agent is done it says so (`collect_ready`, with its exit status)
and holds the pod open: the run directory comes as a tar stream through the API server's pod
proxy, is unpacked under --out (binary-safe, no path outside it), and the pod is told it may end.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import urllib3

from runner.agent.pod_contract import (
    COLLECT_PATH_DONE,
    COLLECT_PATH_TAR,
    COLLECT_PORT,
    RUNS_DIR,
)
from runner.errors import BenchError
from runner.executors.base import Event, EventSink
from runner.executors.k8s_api import Cluster, PodState, pod_state, read_chunks, warning_events
from runner.rundir import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    RUN_FILE,
    atomic_write_json,
    partial_dir,
)

READY_EVENT = "collect_ready"
WATCH_S = 30.0  # the longest one watch of a pod runs before it is started again


@dataclass(frozen=True)
class IndexRef:
    """One run as the cluster knows it: its Job, its completion index, its run id."""

    job_name: str
    index: int
    run_id: str


class CollectError(BenchError):
    """The run directory could not be brought home."""


def collect_run_dir(cluster: Cluster, pod_name: str, out_root: Path, run_id: str) -> Path:
    """GET the pod's run directory as a tar stream, unpack it under out_root, POST done.

    Unpacked in a temporary directory beside its place, then renamed in: an interrupted copy
    leaves nothing half-written under the run's name. Only the run's own directory (finished or
    .partial) is accepted; tarfile's "data" filter refuses links and paths leading outside.
    """
    wanted = {run_id, partial_dir(Path(), run_id).name}
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".collect-{run_id}-", dir=out_root))
    try:
        response = cluster.proxy_get(pod_name, COLLECT_PORT, COLLECT_PATH_TAR)
        try:
            with tarfile.open(fileobj=cast(Any, _Reader(response)), mode="r|") as tar:
                for member in tar:
                    top = member.name.split("/", 1)[0]
                    if top not in wanted:
                        raise CollectError(
                            f"pod {pod_name} sent {member.name!r}, not run {run_id}'s directory"
                        )
                    tar.extract(member, staging, filter="data")
        finally:
            response.release_conn()
        found = [p for p in staging.iterdir() if p.name in wanted]
        if not found:
            raise CollectError(f"pod {pod_name} sent an empty run directory for {run_id}")
        target = out_root / found[0].name
        if target.exists():
            raise CollectError(f"{target} already exists: move it away and collect again")
        found[0].rename(target)
    except (tarfile.TarError, OSError, cluster.ApiException, urllib3.exceptions.HTTPError) as exc:
        # the proxy's refusal (a 404 from a pod with nothing to hand back), a cut stream
        raise CollectError(f"collecting run {run_id} from pod {pod_name} failed: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(Exception):  # the copy is home; a pod gone already is fine
        cluster.proxy_post(pod_name, COLLECT_PORT, COLLECT_PATH_DONE)
    return target


class _Reader:
    """A raw response as the file object tarfile's stream mode reads (read(n) only)."""

    def __init__(self, response: Any) -> None:
        self._chunks = read_chunks(response)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def seed_partial(out_root: Path, run_id: str, job: Mapping[str, Any]) -> None:
    """A run the pod could not hand back (it died, or never started): its planned run.json in a
    .partial directory here, which the supervisor finishes as for a dead agent."""
    work = partial_dir(out_root, run_id)
    if (out_root / run_id).exists() or work.exists():
        return
    work.mkdir(parents=True)
    atomic_write_json(work / RUN_FILE, job.get("run") or {})


class K8sTransport:
    """Follows one completion index's pod; made by K8sExecutor once its Job is submitted."""

    def __init__(
        self,
        cluster: Cluster,
        ref: IndexRef,
        job: Mapping[str, Any],
        *,
        out_root: Path,
        on_event: EventSink,
        cancel: Callable[[], None],
        pending_timeout_s: float = 600.0,
        poll_s: float = 2.0,
    ) -> None:
        self.cluster = cluster
        self.ref = ref
        self.job = job
        self.out_root = out_root
        self.on_event = on_event
        self.cancel = cancel  # deletes the whole sweep (a Ctrl-C): pods are not signalled
        self.pending_timeout_s = pending_timeout_s
        self.poll_s = poll_s
        self.pod_name: str | None = None
        self.problem: str | None = None  # the one line: why the pod ended badly or never ran
        self.code: int | None = None  # the agent's exit status, as it said or the pod ended
        self.ready = False  # the agent said it holds its run directory for collection
        self.has_run_dir = False  # ... and that it has one (a refused job leaves none)
        self.stuck = False  # the pod never started (Pending for a reason)
        self._given = 0
        self._stop = threading.Event()

    # -- finding the pod ---------------------------------------------------------------------
    def _await_pod(self) -> Any:
        """The index's pod once it runs or has ended; None when it cannot start (problem set).

        Watched, not polled: each change of the pod is judged as it comes; a watch that ends
        (its timeout) is started again until the pending time is up.
        """
        started = time.monotonic()
        said_pending = False
        while not self._stop.is_set():
            waited = time.monotonic() - started
            # Short watches: each starts from the pod's state now, so a missed change costs
            # at most one of them.
            left = min(WATCH_S, max(self.poll_s, self.pending_timeout_s - waited))
            for pod in self.cluster.watch_pods(self.ref.job_name, self.ref.index, left):
                self.pod_name = pod.metadata.name
                state = pod_state(pod)
                if state.phase != "Pending":
                    self._note_state(state)
                    return pod
                waited = time.monotonic() - started
                if state.problem and (state.fatal or waited >= self.pending_timeout_s):
                    self._note_state(state, pending=not state.fatal)
                    self.stuck = True
                    return None
                if state.problem and not said_pending:
                    said_pending = True
                    line = f"pod {pod.metadata.name} is Pending: {state.problem}"
                    self.on_event({"event": "note", "text": line})
                if self._stop.is_set():
                    return None
            if self.pod_name is not None and time.monotonic() - started >= self.pending_timeout_s:
                # Stuck without a change since: judge it as it stands.
                pods = self.cluster.pods(self.ref.job_name, self.ref.index)
                now = pod_state(pods[-1]) if pods else None
                if now is not None and now.phase == "Pending" and now.problem:
                    self._note_state(now, pending=True)
                    self.stuck = True
                    return None
        return None

    def _note_state(self, state: PodState, pending: bool = False) -> None:
        if state.problem is None:
            return
        problem = state.problem
        if pending and self.pending_timeout_s > 0:
            problem += f" (after {self.pending_timeout_s:g} s)"
        events = warning_events(self.cluster, self.pod_name or "")
        if events and events[-1].split(": ", 1)[-1] not in problem:
            problem += f"; last event {events[-1]}"
        self.problem = problem
        if state.exit_code is not None:
            self.code = state.exit_code
        elif state.phase == "Pending":
            self.code = EXIT_FAILED

    # -- the transport -------------------------------------------------------------------------
    def lines(self) -> Iterator[str]:
        if self.pod_name is None and self._await_pod() is None:
            return
        assert self.pod_name is not None
        seen = 0
        try:
            response = self.cluster.log_stream(self.pod_name, follow=True)
        except self.cluster.ApiException:
            return  # its log is gone with the pod: wait() reads how it ended
        try:
            buffer = b""
            for chunk in read_chunks(response):
                buffer += chunk
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    seen += 1
                    if seen <= self._given:
                        continue  # a follow restarts at the log's start: skip what was given
                    self._given = seen
                    line = raw.decode("utf-8", "replace")
                    yield line
                    if self._ready(line):
                        return
            if buffer.strip() and seen + 1 > self._given:
                self._given = seen + 1
                yield buffer.decode("utf-8", "replace")
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()

    def _ready(self, line: str) -> bool:
        if READY_EVENT not in line:
            return False
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return False
        if not isinstance(event, dict) or event.get("event") != READY_EVENT:
            return False
        self.ready = True
        self.has_run_dir = event.get("run_dir") is not None
        self.code = int(event.get("exit_code") or 0)
        return True

    def host_event(self, event: Event) -> Event:
        where = event.get("run_dir")
        if isinstance(where, str) and where.startswith(RUNS_DIR + "/"):
            event = {**event, "run_dir": str(self.out_root) + where[len(RUNS_DIR) :]}
        return event

    def interrupt(self) -> None:
        self._stop.set()
        self.code = EXIT_INTERRUPTED
        self.cancel()

    def kill(self) -> None:
        self._stop.set()
        self.cancel()

    def wait(self, timeout: float) -> int:
        """The agent's status: as it said before holding its pod, else as its pod ended."""
        if self.ready or self.problem is not None:
            return self.code if self.code is not None else EXIT_FAILED
        end = time.monotonic() + timeout
        while self.pod_name is not None and time.monotonic() < end and not self._stop.is_set():
            pods = [p for p in self.cluster.pods(self.ref.job_name, self.ref.index)
                    if p.metadata.name == self.pod_name]  # fmt: skip
            if not pods:
                break
            state = pod_state(pods[0])
            if state.phase in ("Succeeded", "Failed"):
                self._note_state(state)
                if self.code is None:
                    self.code = state.exit_code if state.exit_code is not None else EXIT_FAILED
                break
            time.sleep(min(self.poll_s, 1.0))
        if self.code is None:
            self.code = EXIT_INTERRUPTED if self._stop.is_set() else EXIT_FAILED
        return self.code

    def stderr_tail(self, count: int) -> list[str]:
        return []  # the pod's log holds both streams: every line was relayed

    def log_tail(self, count: int) -> list[str]:
        if self.pod_name is None:
            return []
        return self.cluster.log_tail(self.pod_name, count)

    def end_reason(self, code: int, interrupted: bool) -> str:
        if interrupted:
            return f"bench-run was interrupted: sweep deleted, pod {self.pod_name} stopped"
        if self.problem is not None:
            return self.problem
        return f"pod {self.pod_name} ended (exit status {code}) before the agent finished the run"

    def fetch_run_dir(self) -> None:
        if self.ready and self.pod_name is not None and not self.has_run_dir:
            with contextlib.suppress(Exception):  # a refused job: nothing to collect
                self.cluster.proxy_post(self.pod_name, COLLECT_PORT, COLLECT_PATH_DONE)
            return
        if self.ready and self.pod_name is not None:
            try:
                collect_run_dir(self.cluster, self.pod_name, self.out_root, self.ref.run_id)
            except CollectError as exc:
                self.problem = f"{exc}; the pod holds it: bench-run k8s collect tries again"
                self.on_event({"event": "warning", "text": self.problem})
                seed_partial(self.out_root, self.ref.run_id, self.job)
                return
            text = f"collected run {self.ref.run_id} from pod {self.pod_name}"
            self.on_event({"event": "note", "text": text})
            return
        seed_partial(self.out_root, self.ref.run_id, self.job)

    def close(self) -> None:
        self._stop.set()
