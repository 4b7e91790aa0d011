"""The docker executor: one container per Run with its vendor's device flags, the agent inside."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.utils import kwargs_from_env

from runner import __version__
from runner.agent.core import EXIT_INTERRUPTED
from runner.agent.gpus import discover
from runner.agent.util import atomic_write_json
from runner.errors import PlanError, PreflightError
from runner.executors.base import EventSink, RunOutcome, read_outcome, relay_line
from runner.executors.container_spec import (
    LABEL_MANAGED,
    LABEL_RUN_ID,
    RUNS_DIR,
    ContainerSpec,
    build_spec,
    container_model_dir,
    host_job_path,
)
from runner.images import docker_ops
from runner.images.catalog import load_catalog
from runner.images.render import default_tag
from runner.jobs import Deadlines, build_job, git_commit
from runner.plan import Plan, Run
from runner.vendors import check_gpu_ids, check_host, profile_for

CONTAINER_PORT = 8000  # the server's port inside the container's own network namespace
PULL_POLICIES = ("always", "missing", "never")


@dataclass(frozen=True)
class DockerSettings:
    out_root: Path
    image: str
    pull: str = "missing"
    gpus: tuple[int, ...] = ()
    cpus: str | None = None
    shm_size: str | None = None
    privileged: bool = False
    keep: bool = False
    hf_cache: Path | None = None
    hf_token: str | None = None
    deadlines: Deadlines = field(default_factory=Deadlines)
    interrupt_grace_s: float = 120.0

    def __post_init__(self) -> None:
        if self.pull not in PULL_POLICIES:
            raise PlanError(f"--pull {self.pull!r}: choose one of {', '.join(PULL_POLICIES)}")


def connect(environ: dict[str, str]) -> docker.DockerClient:
    """A client of the engine named by DOCKER_HOST & co.; one clear line when none answers."""
    docker_ops.connect(environ)  # pings, and says how to start an engine when none answers
    return docker.DockerClient(version="auto", **kwargs_from_env(environment=environ))


def reap_containers(client: docker.DockerClient, *, dry_run: bool = False) -> list[str]:
    """Remove every container labelled by this tool; return 'id (run id, status)' for each."""
    found = client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"})
    described = []
    for container in found:
        run_id = (container.labels or {}).get(LABEL_RUN_ID, "?")
        described.append(f"{str(container.id)[:12]} (run {run_id}, {container.status})")
        if not dry_run:
            container.remove(force=True)
    return described


def _replace_text(value: Any, old: str, new: str) -> Any:
    """The job with a host path swapped for its in-container path, wherever it is a whole string."""
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, list):
        return [_replace_text(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_text(v, old, new) for k, v in value.items()}
    return value


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


class DockerExecutor:
    """Resolves the image, then runs each Run's job in a labelled container it always removes."""

    name = "docker"

    def __init__(self, settings: DockerSettings) -> None:
        self.settings = settings
        self._commit = git_commit()
        self._client: docker.DockerClient | None = None
        self._image_ref: str | None = None
        self._is_variant = False

    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect(dict(os.environ))
        return self._client

    def image_ref(self) -> str:
        """The image to run: a catalog variant's built tag, or the image named."""
        if self._image_ref is None:
            catalog = load_catalog()
            choice = self.settings.image
            self._is_variant = choice in catalog
            self._image_ref = default_tag(catalog[choice]) if self._is_variant else choice
        return self._image_ref

    def _resolve_image(self) -> str:
        ref = self.image_ref()
        api = self.client().api
        present = True
        try:
            docker_ops.inspect_image(api, ref)
        except docker_ops.ImageMissing:
            present = False
        if self._is_variant and not present:
            raise PreflightError(
                f"image {ref} (variant {self.settings.image}) is not built on this engine: "
                f"bench-images build {self.settings.image}"
            )
        if self.settings.pull == "always" or (not present and self.settings.pull == "missing"):
            try:
                docker_ops.pull_image(api, ref)
            except docker_ops.PullFailed as exc:
                if not present:
                    raise docker_ops.ImageMissing(
                        f"image {ref} is not on this Docker engine and cannot be pulled "
                        f"({exc.reason}): pull or load it, or build one with bench-images build"
                    ) from exc
                raise
        elif not present:
            raise docker_ops.ImageMissing(
                f"image {ref} is not on this Docker engine and --pull never forbids pulling it"
            )
        return ref

    def _spec(self, run: Run, token_file: Path | None) -> ContainerSpec:
        profile = profile_for(run.vendor)
        model_dir = Path(run.model.local_path) if run.model.local_path else None
        return build_spec(
            run,
            image=self.image_ref(),
            profile=profile,
            gpus=self.settings.gpus,
            cpus=self.settings.cpus,
            shm_size=self.settings.shm_size,
            privileged=self.settings.privileged,
            run_dir_host=self.settings.out_root.resolve(),
            model_host_dir=model_dir,
            hf_cache_host=self.settings.hf_cache.resolve() if self.settings.hf_cache else None,
            hf_token_file=token_file,
            compile_cache_volume="vllm-bench-compile-cache",
            tunableop_volume="vllm-bench-tunableop" if run.vendor == "amd" else None,
            tool_version=__version__,
        )

    def _job(self, run: Run, spec: ContainerSpec) -> dict[str, Any]:
        job = build_job(
            run, vllm="vllm", host="127.0.0.1", port=CONTAINER_PORT,
            deadlines=self.settings.deadlines,
            executor={"name": self.name, "image": spec.image, "container": spec.redacted()},
            commit=self._commit,
        )  # fmt: skip
        local = run.model.local_path
        if local:
            job = _replace_text(job, local, container_model_dir(Path(local)))
        return dict(job)

    def preflight(self, plan: Plan, note: Callable[[str], None] | None = None) -> list[str]:
        for run in plan.runs:
            if run.serve.dataset_path is not None:
                raise PlanError(
                    "--dataset-path with --executor docker: dataset files are not mounted into "
                    "the container yet; use --dataset random or --executor local"
                )
            profile = profile_for(run.vendor)
            check_host(profile, self.settings.gpus)
            if profile.uses_gpus and self.settings.gpus:
                check_gpu_ids(self.settings.gpus, len(discover(run.vendor)), run.vendor)
            self._spec(run, None)  # validates flags, mounts and --env before anything starts
        self.client()
        if note is not None:
            note(f"image {self.image_ref()} (pull: {self.settings.pull}) ...")
        self._resolve_image()
        try:
            self.settings.out_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PreflightError(
                f"cannot create {self.settings.out_root}: {exc.strerror}"
            ) from None
        if note is not None:
            note("vLLM checks the engine flags when the server starts in the container")
        return []

    def describe(self, plan: Plan) -> str:
        lines = []
        for run in plan.runs:
            token = Path("/run/user/hf_token") if self.settings.hf_token else None
            spec = self._spec(run, token)
            job = self._job(run, spec)
            lines.append(f"# run {run.run_id} in a container of {spec.image}")
            lines.append("# container spec (secrets redacted):")
            lines.append(json.dumps(spec.redacted(), indent=2))
            lines.append("# the same as a docker run line:")
            lines.append(spec.docker_run_line())
            lines.append("# the agent's job inside it:")
            lines.append(json.dumps(job, indent=2))
        return "\n".join(lines)

    def execute(self, plan: Plan, on_event: EventSink) -> list[RunOutcome]:
        outcomes = []
        with tempfile.TemporaryDirectory(prefix="vllm-bench-secret-") as secrets:
            token_file: Path | None = None
            if self.settings.hf_token:
                token_file = Path(secrets) / "hf_token"
                token_file.write_text(self.settings.hf_token, encoding="utf-8")
                token_file.chmod(0o600)
            for run in plan.runs:
                outcome = self._execute_one(run, token_file, on_event)
                outcomes.append(outcome)
                if outcome.exit_code == EXIT_INTERRUPTED:
                    break
        return outcomes

    def _execute_one(self, run: Run, token_file: Path | None, on_event: EventSink) -> RunOutcome:
        on_event = self._host_paths(on_event)
        out_root = self.settings.out_root.resolve()
        spec = self._spec(run, token_file)
        job_file = host_job_path(out_root, run.run_id)
        atomic_write_json(job_file, self._job(run, spec))
        client = self.client()
        container = client.containers.create(**spec.to_docker_kwargs())
        on_event({"event": "container_created", "id": container.id, "image": spec.image})
        interrupted = False
        code = 1
        try:
            container.start()
            while True:
                try:
                    for line in _lines(container.logs(stream=True, follow=True, stderr=False)):
                        relay_line(line, on_event)
                    break
                except KeyboardInterrupt:
                    if interrupted:
                        container.kill()
                        break
                    interrupted = True
                    on_event({"event": "interrupting", "grace_s": self.settings.interrupt_grace_s})
                    container.kill(signal=signal.SIGINT.name)
            try:
                code = int(container.wait(timeout=self.settings.interrupt_grace_s)["StatusCode"])
            except (requests.exceptions.RequestException, docker.errors.APIError):
                container.kill()
                code = EXIT_INTERRUPTED if interrupted else 1
            if code != 0:
                tail = container.logs(stdout=False, stderr=True, tail=20).decode("utf-8", "replace")
                for text in tail.splitlines():
                    on_event({"event": "agent_output", "line": text})
        finally:
            self._record_container(out_root / run.run_id, container, spec)
            if self.settings.keep:
                on_event(
                    {"event": "agent_output", "line": f"kept container {str(container.id)[:12]}"}
                )
            else:
                container.remove(force=True)
            job_file.unlink(missing_ok=True)
        return read_outcome(run, out_root, code, interrupted)

    def _host_paths(self, on_event: EventSink) -> EventSink:
        """Events name the run directory as the host sees it, not as /runs inside the container."""
        root = str(self.settings.out_root.resolve())

        def relay(event: dict[str, Any]) -> None:
            where = event.get("run_dir")
            if isinstance(where, str) and where.startswith(RUNS_DIR + "/"):
                event = {**event, "run_dir": root + where[len(RUNS_DIR) :]}
            on_event(event)

        return relay

    def _record_container(self, run_dir: Path, container: Any, spec: ContainerSpec) -> None:
        """Provenance gains the image digest, the container id and its exact (redacted) spec."""
        path = run_dir / "provenance.json"
        if not path.is_file():
            return
        try:
            image = docker_ops.inspect_image(self.client().api, spec.image)
            prov = json.loads(path.read_text(encoding="utf-8"))
        except (docker_ops.DockerError, OSError, json.JSONDecodeError):
            return
        prov["container"] = {
            "id": container.id,
            "image": spec.image,
            "image_id": image.id,
            "image_digests": list(image.digests),
            "image_labels": dict(image.labels),
            "spec": spec.redacted(),
        }
        atomic_write_json(path, prov)
