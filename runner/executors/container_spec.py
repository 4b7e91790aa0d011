"""The container of one Run as data: docker-py arguments, a redacted record, a `docker run` line."""

from __future__ import annotations

import csv
import grp
import io
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from docker.types import DeviceRequest, Mount
from docker.types import Ulimit as DockerUlimit

from runner import __version__
from runner.agent.util import is_secret_name, redact_env, secret_values
from runner.errors import PlanError
from runner.images.render import LABEL_PREFIX
from runner.jobs import vendor_env
from runner.plan import Run
from runner.vendors import GpuRequest, Ulimit, VendorProfile, parse_cpuset

# Where things are inside the container.
RUNS_DIR = "/runs"
MODELS_DIR = "/models"
DATASETS_DIR = "/datasets"
HF_CACHE_DIR = "/root/.cache/huggingface"
VLLM_CACHE_DIR = "/root/.cache/vllm"
HF_TOKEN_FILE = "/run/secrets/hf_token"  # noqa: S105 (where the token file goes, not a token)
TOKEN_PATH_VAR = "HF_TOKEN_PATH"  # noqa: S105 (a variable's name)

LABEL_RUN_ID = LABEL_PREFIX + "run-id"
LABEL_TOOL_VERSION = LABEL_PREFIX + "tool-version"
LABEL_MANAGED = LABEL_PREFIX + "managed"
LABEL_GPUS = LABEL_PREFIX + "gpus"

_SHM_SIZE = re.compile(r"^[1-9][0-9]*([bkmg]|[kmg]b)?$", re.I)  # what docker-py's parse_bytes reads
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")  # the engine's rule for volume names


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


def container_job_path(run_id: str) -> str:
    """Where the agent reads its job inside the container (the executor writes it there)."""
    return f"{RUNS_DIR}/.jobs/{run_id}.json"


def host_job_path(run_dir_host: Path, run_id: str) -> Path:
    """The same job file as the host sees it, under the output root mounted at /runs."""
    return run_dir_host / ".jobs" / f"{run_id}.json"


def container_model_dir(model_host_dir: Path) -> str:
    """Where a local model directory appears inside the container (/models/<name>)."""
    name = model_host_dir.name
    if not name:
        raise PlanError(f"model directory {model_host_dir} has no name to mount it under")
    return f"{MODELS_DIR}/{name}"


def in_hf_cache(model_host_dir: Path, hf_cache_host: Path | None) -> str | None:
    """Where a model lying inside the mounted HF cache is in the container, else None.

    A hub snapshot's files are symlinks into ../../blobs: mounted alone, the snapshot directory
    holds dangling links, so such a model is reached through the cache mount instead.
    """
    if hf_cache_host is None or not model_host_dir.is_relative_to(hf_cache_host):
        return None
    return str(PurePosixPath(HF_CACHE_DIR, *model_host_dir.relative_to(hf_cache_host).parts))


def container_dataset_path(dataset_host_file: Path) -> str:
    """Where a --dataset-path file appears inside the container (/datasets/<name>)."""
    if not dataset_host_file.name:
        raise PlanError(f"dataset file {dataset_host_file} has no name to mount it under")
    return f"{DATASETS_DIR}/{dataset_host_file.name}"


def agent_command(run_id: str) -> list[str]:
    """The container's command: the agent, through the image's entrypoint."""
    return [
        "python3", "-m", "runner.agent",
        "--job", container_job_path(run_id),
        "--out-root", RUNS_DIR,
    ]  # fmt: skip


@dataclass(frozen=True)
class MountSpec:
    """A bind mount of a host path, or a named volume, at `target` in the container."""

    type: Literal["bind", "volume"]
    source: str
    target: str
    read_only: bool = False

    def to_docker(self) -> Mount:
        return Mount(
            target=self.target, source=self.source, type=self.type, read_only=self.read_only
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "source": self.source,
            "target": self.target,
            "read_only": self.read_only,
        }

    def cli_value(self) -> str:
        """The `--mount` value; CSV-quoted because the docker CLI splits it as a CSV record."""
        fields = [f"type={self.type}", f"source={self.source}", f"target={self.target}"]
        if self.read_only:
            fields.append("readonly")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(fields)
        return buffer.getvalue()


def _device_request(request: GpuRequest) -> DeviceRequest:
    return DeviceRequest(
        count=request.count,
        device_ids=list(request.device_ids),
        capabilities=[list(request.capabilities)],
    )


def _gpus_flag(request: GpuRequest) -> str:
    if not request.device_ids:
        return "all"
    # The CLI reads --gpus as CSV: the quotes keep the comma of the id list inside one field.
    return f'"device={",".join(request.device_ids)}"'


@dataclass(frozen=True)
class ContainerSpec:
    """Everything docker needs to create one Run's container; never holds a secret's value."""

    image: str
    command: tuple[str, ...]
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

    def _shown_env(self) -> dict[str, str]:
        shown = redact_env(self.environment, secret_values(self.environment))
        # HF_TOKEN_PATH has a secret-looking name but holds a path, not the token: show it.
        if TOKEN_PATH_VAR in self.environment:
            shown[TOKEN_PATH_VAR] = self.environment[TOKEN_PATH_VAR]
        return shown

    def to_docker_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for docker-py's `containers.create(**kwargs)`."""
        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": list(self.command),
            "environment": dict(self.environment),
            "labels": dict(self.labels),
            "mounts": [m.to_docker() for m in self.mounts],
            "privileged": self.privileged,
        }
        optional: dict[str, Any] = {
            "name": self.name,
            "devices": list(self.devices),
            "device_requests": [_device_request(r) for r in self.device_requests],
            "group_add": list(self.group_add),
            "cap_add": list(self.cap_add),
            "security_opt": list(self.security_opt),
            "ipc_mode": self.ipc_mode,
            "shm_size": self.shm_size,
            "ulimits": [DockerUlimit(name=u.name, soft=u.soft, hard=u.hard) for u in self.ulimits],
            "cpuset_cpus": self.cpuset_cpus,
            "working_dir": self.working_dir,
            "user": self.user,
        }
        kwargs.update({k: v for k, v in optional.items() if v not in (None, [])})
        return kwargs

    def redacted(self) -> dict[str, Any]:
        """The spec as plain JSON for provenance and --dry-run, secret values replaced."""
        return {
            "image": self.image,
            "name": self.name,
            "command": list(self.command),
            "environment": self._shown_env(),
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
            "mounts": [m.to_dict() for m in self.mounts],
            "labels": dict(self.labels),
            "privileged": self.privileged,
            "cpuset_cpus": self.cpuset_cpus,
            "working_dir": self.working_dir,
            "user": self.user,
        }

    def docker_run_flags(self) -> list[list[str]]:
        """The `docker run` flags equivalent to `to_docker_kwargs()`, one flag per item."""
        flags: list[list[str]] = []
        if self.name is not None:
            flags.append(["--name", self.name])
        flags += [["--label", f"{k}={v}"] for k, v in self.labels.items()]
        flags += [["--device", d] for d in self.devices]
        flags += [["--gpus", _gpus_flag(r)] for r in self.device_requests]
        flags += [["--group-add", g] for g in self.group_add]
        flags += [["--cap-add", c] for c in self.cap_add]
        flags += [["--security-opt", s] for s in self.security_opt]
        if self.ipc_mode is not None:
            flags.append(["--ipc", self.ipc_mode])
        if self.shm_size is not None:
            flags.append(["--shm-size", self.shm_size])
        flags += [["--ulimit", f"{u.name}={u.soft}:{u.hard}"] for u in self.ulimits]
        if self.cpuset_cpus is not None:
            flags.append(["--cpuset-cpus", self.cpuset_cpus])
        if self.privileged:
            flags.append(["--privileged"])
        if self.working_dir is not None:
            flags.append(["--workdir", self.working_dir])
        if self.user is not None:
            flags.append(["--user", self.user])
        flags += [["--mount", m.cli_value()] for m in self.mounts]
        flags += [["-e", f"{k}={v}"] for k, v in self._shown_env().items()]
        return flags

    def docker_run_line(self) -> str:
        """The equivalent `docker run` command for humans, one flag per line, secrets redacted."""
        lines = ["docker run", *(shlex.join(flag) for flag in self.docker_run_flags())]
        lines.append(shlex.join([self.image, *self.command]))
        return " \\\n  ".join(lines)


def _absolute(path: Path, what: str) -> str:
    if not PurePosixPath(path).is_absolute():
        raise PlanError(f"{what} {path} must be an absolute path to mount it into a container")
    return str(path)


def _volume(name: str, what: str) -> str:
    if not _VOLUME_NAME.match(name):
        raise PlanError(
            f"{what} {name!r} is not a docker volume name (letters, digits, _ . -; two or more)"
        )
    return name


def build_spec(
    run: Run,
    *,
    image: str,
    profile: VendorProfile,
    gpus: tuple[int, ...] = (),
    cpus: str | None = None,
    shm_size: str | None = None,
    privileged: bool = False,
    run_dir_host: Path,
    model_host_dir: Path | None = None,
    dataset_host_file: Path | None = None,
    hf_cache_host: Path | None = None,
    hf_token_file: Path | None = None,
    compile_cache_volume: str | None = None,
    tunableop_volume: str | None = None,
    run_id: str | None = None,
    tool_version: str = __version__,
    group_id: Callable[[str], int | None] = host_group_id,
) -> ContainerSpec:
    """The container of one Run: its vendor's devices and limits, mounts, labels, the agent.

    Pure: paths are checked for shape only; `runner.vendors.check_host` checks the host.
    """
    run_id = run_id or run.run_id
    if profile.name != run.vendor:
        raise PlanError(f"the {profile.name} profile cannot run a {run.vendor} run")
    if gpus and not profile.uses_gpus:
        raise PlanError(f"--gpus: the {profile.name} vendor uses no GPUs; drop --gpus")
    if gpus and len(gpus) < run.engine.tp:
        raise PlanError(
            f"--tp {run.engine.tp} needs {run.engine.tp} GPUs, but --gpus names {len(gpus)}"
        )
    shm = shm_size or profile.default_shm_size
    if not _SHM_SIZE.match(shm):
        raise PlanError(f"--shm-size {shm!r}: give a size such as 16g, 512m or 8gb")

    env = vendor_env(run)
    for key in env:
        if is_secret_name(key) and key != TOKEN_PATH_VAR:
            raise PlanError(
                f"--env {key}: a container's environment shows in `docker inspect`; the docker "
                "executor passes the Hugging Face token as a mounted file (set HF_TOKEN on the "
                "host) and takes no other secret through --env"
            )

    # Set by the tool; a different --env value would silently break what they arrange.
    owned: dict[str, str] = {"PYTHONUNBUFFERED": "1"}  # events reach `docker logs` as they happen
    owned.update(profile.gpu_environment(gpus))
    mounts: list[MountSpec] = [
        MountSpec("bind", _absolute(run_dir_host, "the output directory"), RUNS_DIR)
    ]
    if model_host_dir is not None and in_hf_cache(model_host_dir, hf_cache_host) is None:
        source = _absolute(model_host_dir, "the model directory")
        mounts.append(MountSpec("bind", source, container_model_dir(model_host_dir), True))
    if dataset_host_file is not None:
        source = _absolute(dataset_host_file, "the dataset file")
        mounts.append(MountSpec("bind", source, container_dataset_path(dataset_host_file), True))
    if hf_cache_host is not None:
        source = _absolute(hf_cache_host, "the Hugging Face cache")
        mounts.append(MountSpec("bind", source, HF_CACHE_DIR))
        owned["HF_HOME"] = HF_CACHE_DIR  # an image's own HF_HOME would bypass the shared cache
    if hf_token_file is not None:
        source = _absolute(hf_token_file, "the Hugging Face token file")
        mounts.append(MountSpec("bind", source, HF_TOKEN_FILE, True))
        owned[TOKEN_PATH_VAR] = HF_TOKEN_FILE  # huggingface_hub reads the token from this file
    if compile_cache_volume is not None:
        volume = _volume(compile_cache_volume, "the compile cache volume")
        mounts.append(MountSpec("volume", volume, VLLM_CACHE_DIR))
        owned["VLLM_CACHE_ROOT"] = VLLM_CACHE_DIR  # so an image's own setting cannot bypass it
    if tunableop_volume is not None and profile.tunableop_dir is not None:
        volume = _volume(tunableop_volume, "the TunableOp volume")
        mounts.append(MountSpec("volume", volume, profile.tunableop_dir))
    for key, value in owned.items():
        if key in env and env[key] != value:
            raise PlanError(
                f"--env {key}={env[key]}: the docker executor sets {key}={value} itself "
                "(see bench-run --help); drop it from --env"
            )
    env.update(owned)

    labels = {
        LABEL_RUN_ID: run_id,
        LABEL_TOOL_VERSION: tool_version,
        LABEL_MANAGED: "true",  # what `bench-run cleanup` looks for
    }
    if gpus:
        labels[LABEL_GPUS] = ",".join(str(i) for i in gpus)  # the host's ids, for people

    return ContainerSpec(
        image=image,
        command=tuple(agent_command(run_id)),
        environment=env,
        devices=profile.devices(gpus),
        device_requests=profile.device_requests(gpus),
        group_add=container_groups(profile.group_add, group_id),
        cap_add=profile.cap_add,
        security_opt=profile.security_opt,
        ipc_mode=profile.ipc_mode,
        shm_size=shm,
        ulimits=profile.ulimits,
        mounts=tuple(mounts),
        labels=labels,
        name=f"vllm-bench-{run_id}",
        privileged=privileged,
        cpuset_cpus=parse_cpuset(cpus) if cpus is not None else None,
    )
