"""A ContainerSpec as the equivalent `docker run` line, for people (--dry-run), secrets redacted."""

from __future__ import annotations

import csv
import io
import shlex

from runner.executors.container_paths import MountSpec
from runner.executors.container_spec import ContainerSpec
from runner.vendors import GpuRequest


def mount_value(mount: MountSpec) -> str:
    """The `--mount` value; CSV-quoted because the docker CLI splits it as a CSV record."""
    fields = [f"type={mount.type}", f"source={mount.source}", f"target={mount.target}"]
    if mount.read_only:
        fields.append("readonly")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def _gpus_flag(request: GpuRequest) -> str:
    if not request.device_ids:
        return "all"
    # The CLI reads --gpus as CSV: the quotes keep the comma of the id list inside one field.
    return f'"device={",".join(request.device_ids)}"'


def docker_run_flags(spec: ContainerSpec) -> list[list[str]]:
    """The `docker run` flags equivalent to `to_docker_kwargs(spec)`, one flag per item."""
    flags: list[list[str]] = []
    if spec.name is not None:
        flags.append(["--name", spec.name])
    if spec.entrypoint is not None:
        flags.append(["--entrypoint", spec.entrypoint])
    flags += [["--label", f"{k}={v}"] for k, v in spec.labels.items()]
    flags += [["--device", d] for d in spec.devices]
    flags += [["--gpus", _gpus_flag(r)] for r in spec.device_requests]
    flags += [["--group-add", g] for g in spec.group_add]
    flags += [["--cap-add", c] for c in spec.cap_add]
    flags += [["--security-opt", s] for s in spec.security_opt]
    if spec.ipc_mode is not None:
        flags.append(["--ipc", spec.ipc_mode])
    if spec.shm_size is not None:
        flags.append(["--shm-size", spec.shm_size])
    flags += [["--ulimit", f"{u.name}={u.soft}:{u.hard}"] for u in spec.ulimits]
    if spec.cpuset_cpus is not None:
        flags.append(["--cpuset-cpus", spec.cpuset_cpus])
    if spec.privileged:
        flags.append(["--privileged"])
    if spec.working_dir is not None:
        flags.append(["--workdir", spec.working_dir])
    if spec.user is not None:
        flags.append(["--user", spec.user])
    if spec.network is not None:
        flags.append(["--network", spec.network])
    flags += [["--network-alias", a] for a in spec.network_aliases]
    flags += [["--mount", mount_value(m)] for m in spec.mounts]
    flags += [["-e", f"{k}={v}"] for k, v in spec.shown_env().items()]
    return flags


def docker_run_line(spec: ContainerSpec) -> str:
    """The equivalent `docker run` command for humans, one flag per line, secrets redacted."""
    lines = ["docker run", *(shlex.join(flag) for flag in docker_run_flags(spec))]
    lines.append(shlex.join([spec.image, *spec.command]))
    return " \\\n  ".join(lines)
