"""A ContainerSpec as docker-py's `containers.create(**kwargs)` arguments."""

from __future__ import annotations

from typing import Any

from docker.types import DeviceRequest, Mount
from docker.types import Ulimit as DockerUlimit

from runner.executors.container_paths import MountSpec
from runner.executors.container_spec import ContainerSpec
from runner.vendors import GpuRequest


def docker_mount(mount: MountSpec) -> Mount:
    return Mount(
        target=mount.target, source=mount.source, type=mount.type, read_only=mount.read_only
    )


def _device_request(request: GpuRequest) -> DeviceRequest:
    return DeviceRequest(
        count=request.count,
        device_ids=list(request.device_ids),
        capabilities=[list(request.capabilities)],
    )


def to_docker_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """Keyword arguments for docker-py's `containers.create(**kwargs)`."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "environment": dict(spec.environment),
        "labels": dict(spec.labels),
        "mounts": [docker_mount(m) for m in spec.mounts],
        "privileged": spec.privileged,
    }
    optional: dict[str, Any] = {
        "name": spec.name,
        "entrypoint": [spec.entrypoint] if spec.entrypoint is not None else None,
        "devices": list(spec.devices),
        "device_requests": [_device_request(r) for r in spec.device_requests],
        "group_add": list(spec.group_add),
        "cap_add": list(spec.cap_add),
        "security_opt": list(spec.security_opt),
        "ipc_mode": spec.ipc_mode,
        "shm_size": spec.shm_size,
        "ulimits": [DockerUlimit(name=u.name, soft=u.soft, hard=u.hard) for u in spec.ulimits],
        "cpuset_cpus": spec.cpuset_cpus,
        "working_dir": spec.working_dir,
        "user": spec.user,
    }
    if spec.network is not None:
        optional["network"] = spec.network
        if spec.network_aliases:  # the Engine API's EndpointsConfig entry for that network
            optional["networking_config"] = {spec.network: {"Aliases": list(spec.network_aliases)}}
    kwargs.update({k: v for k, v in optional.items() if v not in (None, [])})
    return kwargs
