"""The docker transport: the agent in a labelled container; events from its log, removed after."""

from __future__ import annotations

import contextlib
import json
import re
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from runner.executors.agent_mount import NO_PYTHON, NO_PYTHON_EXIT
from runner.executors.base import Event, EventSink
from runner.executors.container_paths import RUNS_DIR, host_job_path
from runner.executors.container_spec import ContainerSpec
from runner.executors.docker_replicas import ReplicaContainers
from runner.executors.render.docker_api import to_docker_kwargs
from runner.images import docker_ops
from runner.rundir import EXIT_INTERRUPTED, PROVENANCE_FILE, Job, atomic_write_json

_ENGINE_ERRORS = (requests.exceptions.RequestException, docker.errors.APIError)


def container_end_reason(state: Mapping[str, Any], code: int, interrupted: bool = False) -> str:
    """Why a container ended before its agent finished the run: out of memory, a kill, its exit."""
    if state.get("OOMKilled"):
        how = f"ran out of memory and was killed (OOMKilled, exit status {code})"
    elif code > 128:
        try:
            how = f"was killed ({signal.Signals(code - 128).name}, exit status {code})"
        except ValueError:
            how = f"exited with status {code}"
    else:
        how = f"exited with status {code}"
    error = " ".join(str(state.get("Error") or "").split())
    when = " after Ctrl-C" if interrupted else ""
    engine = f" (engine: {error})" if error else ""
    return f"the container {how}{when}{engine} before the agent finished the run"


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


class DockerTransport:
    """One run's container: its job file in the run root, the agent's events on its stdout."""

    def __init__(
        self,
        client: docker.DockerClient,
        container: Any,
        spec: ContainerSpec,
        *,
        out_root: Path,
        run_id: str,
        keep: bool,
        on_event: EventSink,
        replicas: ReplicaContainers | None = None,
    ) -> None:
        self._client = client
        self._replicas = replicas  # --replicas: their containers, removed after the agent's
        self._container = container
        self._spec = spec
        self._out_root = out_root
        self._run_id = run_id
        self._keep = keep
        self._on_event = on_event
        self._given = 0  # lines of the log already relayed
        self._interrupted = False
        # Events name the run directory as the host sees it, not as /runs in the container.
        self._inside = re.compile(rf"(?<![\w/.-]){re.escape(RUNS_DIR)}(?=[/)\s]|$)")

    @classmethod
    def start(
        cls,
        client: docker.DockerClient,
        spec: ContainerSpec,
        job: Job,
        *,
        out_root: Path,
        keep: bool,
        on_event: EventSink,
        replicas: ReplicaContainers | None = None,
    ) -> DockerTransport:
        """Write the job where the container reads it, create the container and start it.

        replicas: already started (--replicas); closed with this transport, or here if the
        agent's container cannot be made."""
        job_file = host_job_path(out_root, job.run_id)
        try:
            atomic_write_json(job_file, job.to_dict())
            container = client.containers.create(**to_docker_kwargs(spec))
        except BaseException:
            job_file.unlink(missing_ok=True)
            if replicas is not None:
                replicas.close()
            raise
        on_event({"event": "container_created", "id": container.id, "image": spec.image})
        transport = cls(client, container, spec, out_root=out_root, run_id=job.run_id, keep=keep,
                        on_event=on_event, replicas=replicas)  # fmt: skip
        try:
            container.start()
        except BaseException:
            transport.close()
            raise
        return transport

    def lines(self) -> Iterator[str]:
        # The engine streams the log from its start each time: skip what was already given.
        log = self._container.logs(stream=True, follow=True, stderr=False)
        for seen, line in enumerate(_lines(log), start=1):
            if seen > self._given:
                self._given = seen
                yield line

    def host_event(self, event: Event) -> Event:
        root = str(self._out_root)
        where = event.get("run_dir")
        if isinstance(where, str) and where.startswith(RUNS_DIR + "/"):
            event = {**event, "run_dir": root + where[len(RUNS_DIR) :]}
        reason = event.get("reason")
        if event.get("event") == "run_error" and isinstance(reason, str):
            event = {**event, "reason": self._inside.sub(root, reason)}  # a full disk's paths
        return event

    def interrupt(self) -> None:
        self._interrupted = True
        with contextlib.suppress(*_ENGINE_ERRORS):  # already ended: wait() says how
            self._container.kill(signal=signal.SIGINT.name)

    def kill(self) -> None:
        with contextlib.suppress(*_ENGINE_ERRORS):
            self._container.kill()

    def wait(self, timeout: float) -> int:
        try:
            return int(self._container.wait(timeout=timeout)["StatusCode"])
        except _ENGINE_ERRORS:
            self.kill()
            return EXIT_INTERRUPTED if self._interrupted else 1

    def stderr_tail(self, count: int) -> list[str]:
        tail = self._container.logs(stdout=False, stderr=True, tail=count)
        return str(tail.decode("utf-8", "replace")).splitlines()

    def log_tail(self, count: int) -> list[str]:
        logs = self._container.logs(stdout=True, stderr=True, tail=count)
        return str(logs.decode("utf-8", "replace")).splitlines()

    def end_reason(self, code: int, interrupted: bool) -> str:
        if code == NO_PYTHON_EXIT:  # the launcher found no Python for the agent: its own line
            said = [line for line in self.stderr_tail(20) if line.startswith(NO_PYTHON)]
            if said:
                return f"{said[-1]}; use an image with vLLM installed (image {self._spec.image})"
        try:
            self._container.reload()
            state = dict(self._container.attrs.get("State") or {})
        except _ENGINE_ERRORS:
            state = {}
        return container_end_reason(state, code, interrupted)

    def fetch_run_dir(self) -> None:
        return None  # the output root is bind-mounted: the run directory is already here

    def close(self) -> None:
        try:
            self._record_container(self._out_root / self._run_id)
        finally:
            try:
                if self._keep:
                    line = f"kept container {str(self._container.id)[:12]}"
                    self._on_event({"event": "agent_output", "line": line})
                else:
                    self._container.remove(force=True)
                host_job_path(self._out_root, self._run_id).unlink(missing_ok=True)
            finally:
                if self._replicas is not None:  # after the agent: its container uses the network
                    self._replicas.close()

    def _record_container(self, run_dir: Path) -> None:
        """Provenance gains the image digest, the container id and its exact (redacted) spec."""
        path = run_dir / PROVENANCE_FILE
        if not path.is_file():
            return
        try:
            image = docker_ops.inspect_image(self._client.api, self._spec.image)
            prov = json.loads(path.read_text(encoding="utf-8"))
        except (docker_ops.DockerError, OSError, json.JSONDecodeError):
            return
        prov["container"] = {
            "id": self._container.id,
            "image": self._spec.image,
            "image_id": image.id,
            "image_digests": list(image.digests),
            "image_labels": dict(image.labels),
            "spec": self._spec.redacted(),
        }
        atomic_write_json(path, prov)
