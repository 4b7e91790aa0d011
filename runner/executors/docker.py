"""The docker executor: one container per Run with its vendor's device flags, the agent inside."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.utils import kwargs_from_env

from runner.agent import search
from runner.errors import PlanError, PreflightError
from runner.executors import docker_replicas
from runner.executors.agent_mount import SHELL, stage_agent, staged_agent_dir
from runner.executors.base import Event, EventSink, RunOutcome
from runner.executors.container_paths import AGENT_DIR, ContainerPaths, map_paths
from runner.executors.container_spec import LABEL_MANAGED, LABEL_RUN_ID, ContainerSpec, build_spec
from runner.executors.docker_images import PULL_POLICIES, ImageResolver, image_event_line
from runner.executors.docker_transport import DockerTransport
from runner.executors.render.docker_cli import docker_run_line
from runner.executors.supervisor import Supervisor
from runner.images import docker_ops
from runner.images.modes import mode_for_run
from runner.images.tuning import Tuning, run_tuning, tuning_line
from runner.jobs import Deadlines, build_job, git_commit
from runner.plan import Plan, Run
from runner.preflight import check_partitions, partition_line
from runner.rundir import Job, server_log
from runner.vendors import check_gpu_ids, check_host, discover, profile_for

CONTAINER_PORT = 8000  # the server's port inside the container's own network namespace
COMPILE_CACHE_VOLUME = "vllm-bench-compile-cache"
TUNABLEOP_VOLUME = "vllm-bench-tunableop"  # mounted for vendors whose images keep TunableOp results


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


def _replica_ports(run: Run) -> tuple[int, ...]:
    """The job's replica ports in containers: each replica listens on CONTAINER_PORT in its
    own; the router (in the agent's) serves on CONTAINER_PORT, its metrics on the next one."""
    if run.replicas is None or run.replicas.spread == "dp":
        return ()
    return (CONTAINER_PORT,) * run.replicas.count + (CONTAINER_PORT + 1,)


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


@dataclass(frozen=True)
class PreparedRun:
    """One run ready for its container: the paths mapped once, the spec and the job from them;
    with --replicas, each replica's container too (docker_replicas.py)."""

    paths: ContainerPaths
    spec: ContainerSpec
    job: Job
    replicas: tuple[ContainerSpec, ...] = ()


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
        self.images = ImageResolver(
            settings.image,
            settings.pull,
            base_image=settings.base_image,
            wheelhouse=settings.wheelhouse,
            pip_extra_index_url=settings.pip_extra_index_url,
        )

    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect(dict(os.environ))
        return self._client

    def image_ref(self) -> str:
        """The image to run: a catalog variant's built tag, or the image named."""
        return self.images.ref()

    def _image_sink(self, note: Callable[[str], None] | None) -> EventSink:
        def emit(event: Event) -> None:
            if self.on_image_event is not None:
                self.on_image_event(event)
            elif note is not None:
                line = image_event_line(event)
                if line is not None:
                    note(line)

        return emit

    def _hf_cache(self) -> Path | None:
        """The host's HF cache to mount, looked at now: a model download may just have made it."""
        cache = self.settings.hf_cache
        return cache.resolve() if cache is not None and cache.is_dir() else None

    def prepare(self, run: Run, token_file: Path | None) -> PreparedRun:
        """The run's container paths, from which both its container spec and its job are made."""
        settings = self.settings
        profile = profile_for(run.vendor)
        out_root = settings.out_root.resolve()
        paths = map_paths(
            run,
            profile,
            run_dir_host=out_root,
            hf_cache_host=self._hf_cache(),
            hf_token_file=token_file,
            compile_cache_volume=COMPILE_CACHE_VOLUME,
            tunableop_volume=TUNABLEOP_VOLUME,
            agent_dir_host=staged_agent_dir(out_root),  # staged by execute()
        )

        def spec_for(gpus: tuple[int, ...], cpus: str | None) -> ContainerSpec:
            return build_spec(
                run,
                image=self.image_ref(),
                profile=profile,
                paths=paths,
                gpus=gpus,
                cpus=cpus,
                shm_size=settings.shm_size,
                privileged=settings.privileged,
            )

        spec = spec_for(settings.gpus, settings.cpus)
        remote = docker_replicas.remote_replicas(run, settings.cpus)
        if remote is not None:  # the agent joins the run's network with its replicas
            spec = dataclasses.replace(spec, network=docker_replicas.network_name(run.run_id))
        tuned = self.tuning(run).env
        job = build_job(
            run, vllm="vllm", host="127.0.0.1", port=CONTAINER_PORT,
            deadlines=settings.deadlines,
            executor={"name": self.name, "image": spec.image,
                      "container": spec.redacted(host_side=False)},
            commit=self._commit, paths=paths.job, tuned_env=tuned,
            tunableop_dir=paths.tunableop_dir,
            replica_ports=_replica_ports(run), remote_replicas=remote, in_container=True,
        )  # fmt: skip
        replicas: tuple[ContainerSpec, ...] = ()
        if remote is not None and job.replicas is not None:
            replicas = docker_replicas.replica_specs(
                spec, run, job.replicas, gpu_spec=spec_for, tuned_env=tuned
            )
        return PreparedRun(paths, spec, job, replicas)

    def tuning(self, run: Run) -> Tuning:
        """The vendor tuning the run gets at run time: its catalog variant's, or the default's."""
        mode = mode_for_run(run.expect_partition, run.engine.tp)  # cpx: TP=1 partitions
        return run_tuning(run.vendor, run.image or self.settings.image, mode=mode)

    def preflight(self, plan: Plan, note: Callable[[str], None] | None = None) -> list[str]:
        for run in plan.runs:
            profile = profile_for(run.vendor)
            check_host(profile, self.settings.gpus)
            if profile.uses_gpus and self.settings.gpus:
                check_gpu_ids(self.settings.gpus, len(discover(run.vendor)), run.vendor)
            self.prepare(run, None)  # validates flags, mounts and --env before anything starts
        check_partitions(plan, self.settings.gpus)  # --partition: the GPUs it is given
        self.client()
        if note is not None:
            note(f"image {self.image_ref()} (pull: {self.settings.pull}) ...")
        self.images.resolve(self.client().api, self._image_sink(note))
        if any(r.replicas is not None and r.replicas.spread == "router" for r in plan.runs):
            docker_replicas.check_router(self.client(), self.image_ref())
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
            prepared = self.prepare(run, token)
            spec = prepared.spec
            lines.append(f"# run {run.run_id} in a container of {spec.image}")
            lines.append("# container spec (secrets redacted):")
            lines.append(json.dumps(spec.redacted(), indent=2))
            lines.append("# the same as a docker run line:")
            lines.append(docker_run_line(spec))
            lines.append(f"# the launcher ({SHELL} -c above) runs the agent mounted at {AGENT_DIR}")
            lines.append("# with the image's Python; the agent adds the vendor tuning at run time")
            lines.append(tuning_line(self.tuning(run)))
            lines += [line for line in (partition_line(run, self.settings.gpus),) if line]
            lines += self._replica_lines(run, prepared)
            lines.append("# the agent's job inside it:")
            lines.append(json.dumps(prepared.job.to_dict(), indent=2))
            wanted = search.spec_from_serve(prepared.job.run.get("serve") or {})
            if wanted is not None:
                lines.append(f"# {search.describe(wanted)}")
        return "\n".join(lines)

    def _replica_lines(self, run: Run, prepared: PreparedRun) -> list[str]:
        if run.replicas is None:
            return []
        if not prepared.replicas:  # --spread dp: one server, in the agent's container
            count = run.replicas.count
            return [
                f"# --replicas {count} --spread dp: one server with --data-parallel-size "
                f"{count}, in the agent's container"
            ]
        lines = [
            f"# --replicas {run.replicas.count} --spread {run.replicas.spread}: the agent's "
            "container above joins the run's network, and each replica runs in its own:",
            docker_replicas.network_line(run.run_id),
        ]
        for k, spec in enumerate(prepared.replicas):
            gpus = list(run.replicas.sets[k])
            lines.append(
                f"# replica {k} (GPUs {gpus}, cpuset {spec.cpuset_cpus or 'all'}), "
                f"{server_log(k)} in the run directory:"
            )
            lines.append(docker_run_line(spec))
        if run.replicas.spread == "router":
            lines.append("# the agent runs vllm-router in its container, in front of them")
        lines.append(f"# when the run ends: docker rm -f each, docker network rm "
                     f"{docker_replicas.network_name(run.run_id)}")  # fmt: skip
        return lines

    def execute(self, plan: Plan, on_event: EventSink) -> list[RunOutcome]:
        out_root = self.settings.out_root.resolve()
        stage_agent(out_root)  # the files every container mounts at AGENT_DIR
        with tempfile.TemporaryDirectory(prefix="vllm-bench-secret-") as secrets:
            token_file: Path | None = None
            if self.settings.hf_token:
                token_file = Path(secrets) / "hf_token"
                token_file.write_text(self.settings.hf_token, encoding="utf-8")
                token_file.chmod(0o600)

            def start(run: Run, sink: EventSink) -> DockerTransport:
                prepared = self.prepare(run, token_file)
                replicas = None
                if prepared.replicas:  # the network and the replicas' containers first
                    replicas = docker_replicas.ReplicaContainers.start(
                        self.client(), prepared.replicas, out_root=out_root, run_id=run.run_id,
                        keep=self.settings.keep, on_event=sink,
                    )  # fmt: skip
                return DockerTransport.start(
                    self.client(), prepared.spec, prepared.job,
                    out_root=out_root, keep=self.settings.keep, on_event=sink, replicas=replicas,
                )  # fmt: skip

            supervisor = Supervisor(out_root, self.settings.interrupt_grace_s)
            return supervisor.run_plan(plan.runs, start, on_event)
