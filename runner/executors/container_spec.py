"""The container of one Run as pure data; runner/executors/render/ turns it into engine calls."""

from __future__ import annotations

import grp
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner import __version__
from runner.agent.util import is_secret_name, redact_env, secret_values
from runner.errors import PlanError
from runner.executors.agent_mount import SHELL, launcher_argv
from runner.executors.container_paths import (
    RUNS_DIR,
    TOKEN_PATH_VAR,
    ContainerPaths,
    MountSpec,
    container_job_path,
)
from runner.images.render import LABEL_PREFIX
from runner.jobs import vendor_env
from runner.plan import Run
from runner.vendors import GpuRequest, Ulimit, VendorProfile, parse_cpuset

LABEL_RUN_ID = LABEL_PREFIX + "run-id"
LABEL_TOOL_VERSION = LABEL_PREFIX + "tool-version"
LABEL_MANAGED = LABEL_PREFIX + "managed"
LABEL_GPUS = LABEL_PREFIX + "gpus"

_SHM_SIZE = re.compile(r"^[1-9][0-9]*([bkmg]|[kmg]b)?$", re.I)  # what docker-py's parse_bytes reads


def host_group_id(name: str) -> int | None:
    """The host's id of a group (video, render), or None when the host has no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def container_groups(
    names: tuple[str, ...], group_id: Callable[[str], int | None]
) -> tuple[str, ...]:
    """--group-add values as the host's numeric ids.

    The device nodes belong to the host's groups; a name would be looked up in the image's
    /etc/group at start, and an image without (say) a render group fails to start. A group the
    host does not have owns no device node here, so it is left out.
    """
    ids = (group_id(name) for name in names)
    return tuple(str(gid) for gid in ids if gid is not None)


def agent_command(run_id: str) -> list[str]:
    """The container's command after the SHELL entrypoint: the launcher, which runs the mounted
    agent with the image's own Python (an image's ENTRYPOINT, e.g. `vllm serve`, is bypassed)."""
    return launcher_argv(["--job", container_job_path(run_id), "--out-root", RUNS_DIR])


@dataclass(frozen=True)
class ContainerSpec:
    """Everything an engine needs to create one Run's container; never holds a secret's value."""

    image: str
    command: tuple[str, ...]
    entrypoint: str | None = None  # replaces the image's ENTRYPOINT (one executable)
    environment: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    device_requests: tuple[GpuRequest, ...] = ()
    group_add: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    ipc_mode: str | None = None
    shm_size: str | None = None
    ulimits: tuple[Ulimit, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    privileged: bool = False
    cpuset_cpus: str | None = None
    working_dir: str | None = None
    user: str | None = None
    network: str | None = None  # a user-defined network (--replicas: the run's own)
    network_aliases: tuple[str, ...] = ()  # names the others reach it by on that network

    def shown_env(self) -> dict[str, str]:
        """The environment as people may see it: secret values replaced."""
        shown = redact_env(self.environment, secret_values(self.environment))
        # HF_TOKEN_PATH has a secret-looking name but holds a path, not the token: show it.
        if TOKEN_PATH_VAR in self.environment:
            shown[TOKEN_PATH_VAR] = self.environment[TOKEN_PATH_VAR]
        return shown

    def redacted(self, *, host_side: bool = True) -> dict[str, Any]:
        """The spec as plain JSON for provenance and --dry-run, secret values replaced.

        Without host_side, bind mounts name no host path: what the job may carry, since no
        host path reaches a container's job (provenance gets the whole spec from the host).
        """
        return {
            "image": self.image,
            "name": self.name,
            "entrypoint": self.entrypoint,
            "command": list(self.command),
            "environment": self.shown_env(),
            "devices": list(self.devices),
            "device_requests": [
                {
                    "count": r.count,
                    "device_ids": list(r.device_ids),
                    "capabilities": list(r.capabilities),
                }
                for r in self.device_requests
            ],
            "group_add": list(self.group_add),
            "cap_add": list(self.cap_add),
            "security_opt": list(self.security_opt),
            "ipc_mode": self.ipc_mode,
            "shm_size": self.shm_size,
            "ulimits": [{"name": u.name, "soft": u.soft, "hard": u.hard} for u in self.ulimits],
            "mounts": [m.to_dict(host_side=host_side) for m in self.mounts],
            "labels": dict(self.labels),
            "privileged": self.privileged,
            "cpuset_cpus": self.cpuset_cpus,
            "working_dir": self.working_dir,
            "user": self.user,
            "network": self.network,
            "network_aliases": list(self.network_aliases),
        }


def _check_request(run: Run, profile: VendorProfile, gpus: tuple[int, ...], shm: str) -> None:
    if profile.name != run.vendor:
        raise PlanError(f"the {profile.name} profile cannot run a {run.vendor} run")
    if gpus and not profile.uses_gpus:
        raise PlanError(f"--gpus: the {profile.name} vendor uses no GPUs; drop --gpus")
    if gpus and len(gpus) < run.engine.tp:
        raise PlanError(
            f"--tp {run.engine.tp} needs {run.engine.tp} GPUs, but --gpus names {len(gpus)}"
        )
    if not _SHM_SIZE.match(shm):
        raise PlanError(f"--shm-size {shm!r}: give a size such as 16g, 512m or 8gb")


def _environment(run: Run, owned: dict[str, str]) -> dict[str, str]:
    """The user's --env and the vendor's defaults, then what the tool itself sets (`owned`)."""
    env = vendor_env(run)
    for key in env:
        if is_secret_name(key) and key != TOKEN_PATH_VAR:
            raise PlanError(
                f"--env {key}: a container's environment shows in `docker inspect`; the docker "
                "executor passes the Hugging Face token as a mounted file (set HF_TOKEN on the "
                "host) and takes no other secret through --env"
            )
    # A different --env value would silently break what the tool arranges.
    for key, value in owned.items():
        if key in env and env[key] != value:
            raise PlanError(
                f"--env {key}={env[key]}: the docker executor sets {key}={value} itself "
                "(see bench-run --help); drop it from --env"
            )
    env.update(owned)
    return env


def _labels(run_id: str, tool_version: str, gpus: tuple[int, ...]) -> dict[str, str]:
    labels = {
        LABEL_RUN_ID: run_id,
        LABEL_TOOL_VERSION: tool_version,
        LABEL_MANAGED: "true",  # what `bench-run cleanup` looks for
    }
    if gpus:
        labels[LABEL_GPUS] = ",".join(str(i) for i in gpus)  # the host's ids, for people
    return labels


def build_spec(
    run: Run,
    *,
    image: str,
    profile: VendorProfile,
    paths: ContainerPaths,
    gpus: tuple[int, ...] = (),
    cpus: str | None = None,
    shm_size: str | None = None,
    privileged: bool = False,
    run_id: str | None = None,
    tool_version: str = __version__,
    group_id: Callable[[str], int | None] = host_group_id,
) -> ContainerSpec:
    """The container of one Run: its vendor's devices and limits, its mounts, labels, the agent.

    Pure: `paths` (container_paths.map_paths) are checked for shape only;
    `runner.vendors.check_host` checks the host.
    """
    run_id = run_id or run.run_id
    shm = shm_size or profile.default_shm_size
    _check_request(run, profile, gpus, shm)
    owned = {
        "PYTHONUNBUFFERED": "1",  # events reach the engine's log as they happen
        **profile.gpu_environment(gpus),
        **paths.environment,
    }
    return ContainerSpec(
        image=image,
        entrypoint=SHELL,
        command=tuple(agent_command(run_id)),
        environment=_environment(run, owned),
        devices=profile.devices(gpus),
        device_requests=profile.device_requests(gpus),
        group_add=container_groups(profile.group_add, group_id),
        cap_add=profile.cap_add,
        security_opt=profile.security_opt,
        ipc_mode=profile.ipc_mode,
        shm_size=shm,
        ulimits=profile.ulimits,
        mounts=paths.mounts,
        labels=_labels(run_id, tool_version, gpus),
        name=f"vllm-bench-{run_id}",
        privileged=privileged,
        cpuset_cpus=parse_cpuset(cpus) if cpus is not None else None,
    )
