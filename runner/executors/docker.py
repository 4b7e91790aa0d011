"""The docker executor: one container per Run with its vendor's device flags, the agent inside."""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.utils import kwargs_from_env

from runner import __version__
from runner.agent.gpus import discover
from runner.errors import BenchError, PlanError, PreflightError
from runner.executors.base import (
    AgentWatch,
    EventSink,
    RunOutcome,
    finish_unfinished,
    read_outcome,
    relay_line,
)
from runner.executors.container_spec import (
    LABEL_MANAGED,
    LABEL_RUN_ID,
    RUNS_DIR,
    ContainerSpec,
    build_spec,
    container_dataset_path,
    container_model_dir,
    host_job_path,
    in_hf_cache,
)
from runner.images import docker_ops
from runner.images.catalog import Variant, load_catalog
from runner.images.render import default_tag
from runner.jobs import Deadlines, PathMap, build_job, git_commit
from runner.plan import Plan, Run
from runner.rundir import EXIT_INTERRUPTED, atomic_write_json
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
    # How a catalog variant is built when --pull asks for it (bench-images build's options).
    base_image: str | None = None
    wheelhouse: Path | None = None
    pip_extra_index_url: str | None = None

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


def _pull_event(ref: str, event: docker_ops.PullEvent) -> dict[str, Any]:
    return {"event": "image_pull", "image": ref, "status": event.status, "layer": event.layer,
            "current": event.current, "total": event.total}  # fmt: skip


def image_event_line(event: Mapping[str, Any]) -> str | None:
    """A line for people from an image event; None for per-layer download progress."""
    kind = event.get("event")
    if kind == "image_build":
        return f"  {event.get('line')}"
    if kind == "image_pull":
        status = str(event.get("status") or "")
        if event.get("layer") and status != "Pull complete":
            return None
        layer = f" {event['layer']}" if event.get("layer") else ""
        return f"  pull {event.get('image')}{layer}: {status}"
    if kind == "image_ready":
        return f"image {event.get('image')} ready ({event.get('how')}, {event.get('id')})"
    return None


def _container_state(container: Any) -> dict[str, Any]:
    try:
        container.reload()
    except (requests.exceptions.RequestException, docker.errors.APIError):
        return {}
    return dict(container.attrs.get("State") or {})


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

    def __init__(self, settings: DockerSettings, on_image_event: EventSink | None = None) -> None:
        """on_image_event gets image_pull / image_build / image_ready events during preflight;
        without it they reach preflight's `note` as lines."""
        self.settings = settings
        self.on_image_event = on_image_event
        self._commit = git_commit()
        self._client: docker.DockerClient | None = None
        self._image_ref: str | None = None
        self._is_variant = False
        self._variant: Variant | None = None

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
            self._variant = catalog[choice] if self._is_variant else None
            self._image_ref = default_tag(catalog[choice]) if self._is_variant else choice
        return self._image_ref

    def _resolve_image(self, emit: EventSink) -> str:
        """The image on the engine: a variant built (absent, or --pull always), an image pulled."""
        ref = self.image_ref()
        api = self.client().api
        present = True
        try:
            docker_ops.inspect_image(api, ref)
        except docker_ops.ImageMissing:
            present = False
        pull = self.settings.pull
        how = "present"
        if self._variant is not None:
            # A variant's tag is made here, never pulled: building it is its "pull".
            if not present and pull == "never":
                raise docker_ops.ImageMissing(
                    f"image {ref} (variant {self._variant.name}) is not built on this engine and "
                    f"--pull never forbids building it: bench-images build {self._variant.name}"
                )
            if pull == "always" or not present:
                self._build_variant(api, self._variant, ref, emit)
                how = "built"
        elif pull == "always" or (not present and pull == "missing"):
            try:
                docker_ops.pull_image(api, ref, lambda e: emit(_pull_event(ref, e)))
                how = "pulled"
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
        info = docker_ops.inspect_image(api, ref)
        emit({"event": "image_ready", "image": ref, "id": info.id, "how": how})
        return ref

    def _build_variant(self, api: Any, variant: Variant, ref: str, emit: EventSink) -> None:
        settings = self.settings
        try:
            request = docker_ops.plan_build(
                variant,
                base=settings.base_image,
                wheelhouse=settings.wheelhouse,
                tag=ref,
                extra_index_url=settings.pip_extra_index_url,
            )
        except BenchError as exc:  # a missing wheelhouse or index, said in bench-images' words
            raise PreflightError(
                f"image {ref} (variant {variant.name}) must be built, but: {exc}"
            ) from exc
        step: str | None = None
        emit({"event": "image_build", "image": ref, "variant": variant.name, "step": step,
              "line": f"building {ref} FROM {request.base} (pull: {settings.pull})"})  # fmt: skip

        def on_line(line: str) -> None:
            nonlocal step
            step = docker_ops.build_step(line) or step
            emit({"event": "image_build", "image": ref, "variant": variant.name, "step": step,
                  "line": line})  # fmt: skip

        # A failure raises BuildFailed: one line naming the failing step (its log went by above).
        docker_ops.build_image(
            api, request, on_line, on_pull=lambda e: emit(_pull_event(request.base, e))
        )

    def _image_sink(self, note: Callable[[str], None] | None) -> EventSink:
        def emit(event: dict[str, Any]) -> None:
            if self.on_image_event is not None:
                self.on_image_event(event)
            elif note is not None:
                line = image_event_line(event)
                if line is not None:
                    note(line)

        return emit

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
            dataset_host_file=Path(run.serve.dataset_path) if run.serve.dataset_path else None,
            hf_cache_host=self._hf_cache(),
            hf_token_file=token_file,
            compile_cache_volume="vllm-bench-compile-cache",
            tunableop_volume="vllm-bench-tunableop" if run.vendor == "amd" else None,
            tool_version=__version__,
        )

    def _paths(self, run: Run) -> PathMap:
        """The model and dataset as the container sees them (the mounts build_spec makes)."""
        local = run.model.local_path
        model = run.model.path_or_id
        if local:
            model = in_hf_cache(Path(local), self._hf_cache()) or container_model_dir(Path(local))
        dataset = run.serve.dataset_path
        return PathMap(model, container_dataset_path(Path(dataset)) if dataset else None)

    def _job(self, run: Run, spec: ContainerSpec) -> dict[str, Any]:
        job = build_job(
            run, vllm="vllm", host="127.0.0.1", port=CONTAINER_PORT,
            deadlines=self.settings.deadlines,
            executor={"name": self.name, "image": spec.image, "container": spec.redacted()},
            commit=self._commit, paths=self._paths(run),
        )  # fmt: skip
        return job.to_dict()

    def _hf_cache(self) -> Path | None:
        """The host's HF cache to mount, looked at now: a model download may just have made it."""
        cache = self.settings.hf_cache
        return cache.resolve() if cache is not None and cache.is_dir() else None

    def preflight(self, plan: Plan, note: Callable[[str], None] | None = None) -> list[str]:
        for run in plan.runs:
            profile = profile_for(run.vendor)
            check_host(profile, self.settings.gpus)
            if profile.uses_gpus and self.settings.gpus:
                check_gpu_ids(self.settings.gpus, len(discover(run.vendor)), run.vendor)
            self._spec(run, None)  # validates flags, mounts and --env before anything starts
        self.client()
        if note is not None:
            note(f"image {self.image_ref()} (pull: {self.settings.pull}) ...")
        self._resolve_image(self._image_sink(note))
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
        watched = AgentWatch(on_event)
        out_root = self.settings.out_root.resolve()
        spec = self._spec(run, token_file)
        job_file = host_job_path(out_root, run.run_id)
        atomic_write_json(job_file, self._job(run, spec))
        client = self.client()
        container = client.containers.create(**spec.to_docker_kwargs())
        on_event({"event": "container_created", "id": container.id, "image": spec.image})
        interrupted = False
        code = 1
        unfinished: RunOutcome | None = None
        try:
            container.start()
            while True:
                try:
                    for line in _lines(container.logs(stream=True, follow=True, stderr=False)):
                        relay_line(line, watched)
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
            if not (out_root / run.run_id).exists():
                # The agent died (killed, out of memory) or could not write: finish its run dir.
                state = _container_state(container)
                reason = watched.error or container_end_reason(state, code, interrupted)
                logs = container.logs(stdout=True, stderr=True, tail=20)
                unfinished = finish_unfinished(
                    run, out_root, code, reason,
                    logs.decode("utf-8", "replace").splitlines(), interrupted, on_event,
                )  # fmt: skip
        finally:
            self._record_container(out_root / run.run_id, container, spec)
            if self.settings.keep:
                on_event(
                    {"event": "agent_output", "line": f"kept container {str(container.id)[:12]}"}
                )
            else:
                container.remove(force=True)
            job_file.unlink(missing_ok=True)
        return unfinished or read_outcome(run, out_root, code, interrupted)

    def _host_paths(self, on_event: EventSink) -> EventSink:
        """Events name the run directory as the host sees it, not as /runs inside the container."""
        root = str(self.settings.out_root.resolve())

        inside = re.compile(rf"(?<![\w/.-]){re.escape(RUNS_DIR)}(?=[/)\s]|$)")

        def relay(event: dict[str, Any]) -> None:
            where = event.get("run_dir")
            if isinstance(where, str) and where.startswith(RUNS_DIR + "/"):
                event = {**event, "run_dir": root + where[len(RUNS_DIR) :]}
            reason = event.get("reason")
            if event.get("event") == "run_error" and isinstance(reason, str):
                event = {**event, "reason": inside.sub(root, reason)}  # a full disk's paths
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
