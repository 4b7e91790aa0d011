"""--replicas with the docker executor: one container per replica on the run's own network.

The run's agent container joins a user-defined bridge network made for the run; each replica's
`vllm serve` runs in a container of the same image on it (its own GPUs or render nodes, its own
cpuset, the same mounts and tuned environment), reached by its alias replica-<k>. The agent
(runner/agent/remote.py) waits for them, starts vllm-router in front of them (--spread router)
or one client per replica (--spread clients), and counts what each served. --spread dp is one
server: it runs in the agent's container as without --replicas. Every container and the network
carry this tool's labels (`bench-run cleanup` reaps them) and are removed when the run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from runner.agent import pinning
from runner.agent.remote import wrapper_argv
from runner.errors import PreflightError
from runner.executors.agent_mount import SHELL
from runner.executors.base import EventSink
from runner.executors.container_paths import RUNS_DIR
from runner.executors.container_spec import (
    LABEL_GPUS,
    LABEL_MANAGED,
    LABEL_RUN_ID,
    ContainerSpec,
)
from runner.executors.render.docker_api import to_docker_kwargs
from runner.images.render import LABEL_PREFIX
from runner.jobs import RemoteReplicas
from runner.plan import Run
from runner.rundir import PROVENANCE_FILE, atomic_write_json, server_log
from runner.vendors import discover, parse_cpuset, profile_for

LABEL_REPLICA = LABEL_PREFIX + "replica"
REPLICAS_DIR = ".replicas"  # under the output root: each run's replica logs while they run
STOP_TIMEOUT_S = 30  # `docker stop`'s grace for a replica the agent did not stop itself
_ENGINE_ERRORS = (requests.exceptions.RequestException, docker.errors.APIError)
# Where the agent looks for vllm-router (runner/agent/fleet.py's router_executable).
_HAS_ROUTER = 'command -v vllm-router || [ -x "$(dirname "$(command -v vllm)")/vllm-router" ]'


def in_containers(run: Run) -> bool:
    """Whether the run's replicas get a container each (router, clients; dp is one server)."""
    return run.replicas is not None and run.replicas.spread != "dp"


def network_name(run_id: str) -> str:
    return f"vllm-bench-{run_id}"


def replica_host(index: int) -> str:
    return f"replica-{index}"


def log_dir_host(out_root: Path, run_id: str) -> Path:
    return out_root / REPLICAS_DIR / run_id


def log_dir_container(run_id: str) -> str:
    return f"{RUNS_DIR}/{REPLICAS_DIR}/{run_id}"


def network_labels(run_id: str) -> dict[str, str]:
    return {LABEL_RUN_ID: run_id, LABEL_MANAGED: "true"}


def allowed_cpus(cpus: str | None) -> list[int]:
    """The CPUs the replicas share: --cpus, else those bench-run may use."""
    if cpus is None:
        return pinning.allowed_cpus()
    return pinning.parse_cpulist(parse_cpuset(cpus))


def replica_cpus(run: Run, cpus: str | None) -> tuple[tuple[int, ...] | None, ...]:
    """Each replica's cpuset: its GPUs' NUMA node (GPU vendors), else an even share (the CPU)."""
    assert run.replicas is not None
    profile = profile_for(run.vendor)
    allowed = allowed_cpus(cpus)
    bus = {gpu.index: gpu.bus_id for gpu in discover(run.vendor)} if profile.uses_gpus else {}
    found = pinning.replica_cpus(
        [[bus.get(i) for i in s] for s in run.replicas.sets], allowed, uses_gpus=profile.uses_gpus
    )
    return tuple(None if c is None else tuple(c) for c in found)


def remote_replicas(run: Run, cpus: str | None) -> RemoteReplicas | None:
    """What the agent's job says of replicas in containers; None when they run in the agent's."""
    if not in_containers(run):
        return None
    assert run.replicas is not None
    hosts = tuple(replica_host(k) for k in range(run.replicas.count))
    return RemoteReplicas(hosts, log_dir_container(run.run_id), replica_cpus(run, cpus))


def replica_specs(
    agent: ContainerSpec,
    run: Run,
    job_replicas: Mapping[str, Any],
    *,
    gpu_spec: Callable[[tuple[int, ...], str | None], ContainerSpec],
    tuned_env: Mapping[str, str],
) -> tuple[ContainerSpec, ...]:
    """Replica k's container: the agent's spec with the replica's GPUs, cpuset, name, alias,
    the tuned environment under the run's, and the wrapped `vllm serve` as its command.

    gpu_spec(gpus, cpus) -> the run's container spec for those GPUs and that cpuset string
    (container_spec.build_spec, so devices, groups and GPU variables are the vendor's own).
    """
    profile = profile_for(run.vendor)
    out = []
    for k, server in enumerate(job_replicas["servers"]):
        remote = server["remote"]
        cpus = remote.get("cpus")
        cpulist = pinning.format_cpulist(cpus) if cpus else None
        base = gpu_spec(tuple(server.get("gpus") or ()), cpulist)
        env = {**tuned_env, **base.environment}
        if cpulist and not profile.uses_gpus:  # vLLM's CPU backend binds its threads itself
            env["VLLM_CPU_OMP_THREADS_BIND"] = cpulist
        out.append(
            dataclasses.replace(
                base,
                entrypoint=SHELL,
                command=tuple(wrapper_argv(SHELL, remote["log"], list(server["argv"]))[1:]),
                environment=env,
                labels={**base.labels, LABEL_REPLICA: str(k)},
                name=f"{agent.name}-replica-{k}",
                network=agent.network,
                network_aliases=(str(remote["host"]),),
            )
        )
    return tuple(out)


def network_line(run_id: str) -> str:
    labels = [f"--label={k}={v}" for k, v in network_labels(run_id).items()]
    return shlex.join(["docker", "network", "create", *labels, network_name(run_id)])


def check_router(client: docker.DockerClient, image: str) -> None:
    """--spread router: the image must have vllm-router (the agent runs it); one line if not."""
    try:
        client.containers.run(
            image, entrypoint=[SHELL], command=["-c", _HAS_ROUTER], remove=True,
            labels={LABEL_MANAGED: "true", LABEL_RUN_ID: "router-check"},
        )  # fmt: skip
    except docker.errors.ContainerError:
        raise PreflightError(
            f"--spread router runs vllm-router in the agent's container, and image {image} has "
            "none: use an image with vllm-router installed (the catalog's cpu-wheelhouse built "
            "from a wheelhouse that has it: make wheelhouse), or --spread clients"
        ) from None


class ReplicaContainers:
    """One run's network and replica containers, from creation to removal."""

    def __init__(
        self,
        client: docker.DockerClient,
        specs: Sequence[ContainerSpec],
        *,
        out_root: Path,
        run_id: str,
        keep: bool,
        on_event: EventSink,
    ) -> None:
        self._client = client
        self._specs = tuple(specs)
        self._out_root = out_root
        self._run_id = run_id
        self._keep = keep
        self._on_event = on_event
        self._network: Any = None
        self._containers: list[Any] = []

    @classmethod
    def start(
        cls,
        client: docker.DockerClient,
        specs: Sequence[ContainerSpec],
        *,
        out_root: Path,
        run_id: str,
        keep: bool,
        on_event: EventSink,
    ) -> ReplicaContainers:
        """The network, then every replica's container started; all removed if one fails."""
        made = cls(client, specs, out_root=out_root, run_id=run_id, keep=keep, on_event=on_event)
        try:
            made._start()
        except BaseException:
            made.close()
            raise
        return made

    def _start(self) -> None:
        logs = log_dir_host(self._out_root, self._run_id)
        shutil.rmtree(logs, ignore_errors=True)  # a stop file left by an earlier run's try
        logs.mkdir(parents=True)
        self._network = self._client.networks.create(
            network_name(self._run_id), driver="bridge", labels=network_labels(self._run_id)
        )
        for k, spec in enumerate(self._specs):
            container = self._client.containers.create(**to_docker_kwargs(spec))
            self._containers.append(container)
            self._on_event(
                {"event": "container_created", "id": container.id, "image": spec.image,
                 "replica": k}
            )  # fmt: skip
            container.start()

    def close(self) -> None:
        """Stop the replicas, keep their logs and ids, remove them and the network."""
        for container in self._containers:
            with contextlib.suppress(*_ENGINE_ERRORS):
                container.stop(timeout=STOP_TIMEOUT_S)
        run_dir = self._out_root / self._run_id
        try:
            self._keep_logs(run_dir)
            self._record(run_dir)
        finally:
            self._remove()

    def _remove(self) -> None:
        if self._keep:
            ids = ", ".join(str(c.id)[:12] for c in self._containers)
            line = f"kept replica containers {ids} and network {network_name(self._run_id)}"
            self._on_event({"event": "agent_output", "line": line})
            return
        for container in self._containers:
            with contextlib.suppress(*_ENGINE_ERRORS):
                container.remove(force=True)
        if self._network is not None:
            with contextlib.suppress(*_ENGINE_ERRORS):
                self._network.remove()
        logs = log_dir_host(self._out_root, self._run_id)
        shutil.rmtree(logs, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last run's: no empty .replicas is left
            logs.parent.rmdir()

    def _keep_logs(self, run_dir: Path) -> None:
        """server-<k>.log in the run directory: the agent copies it when it stops the replica;
        an agent that died before that leaves it here to copy."""
        if not run_dir.is_dir():
            return
        logs = log_dir_host(self._out_root, self._run_id)
        for k in range(len(self._containers)):
            source, target = logs / server_log(k), run_dir / server_log(k)
            if source.is_file() and not target.exists():
                with contextlib.suppress(OSError):
                    shutil.copyfile(source, target)

    def _record(self, run_dir: Path) -> None:
        """Provenance's container gains each replica's container id, GPUs, cpuset and log."""
        path = run_dir / PROVENANCE_FILE
        if not path.is_file():
            return
        try:
            prov = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return
        replicas = []
        for k, (spec, container) in enumerate(zip(self._specs, self._containers, strict=False)):
            replicas.append(
                {
                    "index": k,
                    "id": container.id,
                    "name": spec.name,
                    "host": spec.network_aliases[0] if spec.network_aliases else None,
                    "gpus": spec.labels.get(LABEL_GPUS),
                    "cpuset_cpus": spec.cpuset_cpus,
                    "log": server_log(k),
                    "spec": spec.redacted(),
                }
            )
        container = prov.get("container") if isinstance(prov.get("container"), dict) else {}
        prov["container"] = {**container, "network": network_name(self._run_id),
                             "replicas": replicas}  # fmt: skip
        atomic_write_json(path, prov)


def reap_networks(client: docker.DockerClient, *, dry_run: bool = False) -> list[str]:
    """Remove every network this tool labelled (after its containers); 'name (run id)' each."""
    found = client.networks.list(filters={"label": f"{LABEL_MANAGED}=true"})
    described = []
    for network in found:
        run_id = (network.attrs.get("Labels") or {}).get(LABEL_RUN_ID, "?")
        described.append(f"{network.name} (run {run_id})")
        if not dry_run:
            with contextlib.suppress(*_ENGINE_ERRORS):
                network.remove()
    return described
