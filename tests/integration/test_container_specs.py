"""Each vendor's ContainerSpec created (never started) on the real engine, read back by inspect.

No GPU and no ROCm driver here: the containers are only created. Docker Engine 20.10 accepts
device nodes that do not exist on the host (/dev/kfd, /dev/dri/renderD128) and GPU device
requests with no NVIDIA runtime at create time; it only refuses them when the container starts.
So `HostConfig` shows exactly what the spec asked for, which is what these tests pin down.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.executors.container_paths import HF_CACHE_DIR, HF_TOKEN_FILE, RUNS_DIR, map_paths
from runner.executors.container_spec import (
    LABEL_GPUS,
    LABEL_MANAGED,
    LABEL_RUN_ID,
    ContainerSpec,
    build_spec,
    container_groups,
    host_group_id,
)
from runner.executors.render.docker_api import to_docker_kwargs
from runner.plan import EngineConfig, ModelRef, Run
from runner.vendors import PROFILES, amd_topology, check_host

TOKEN = "hf_integration_secret_123"
# On every container made here: `docker ps -a --filter label=vllm-bench.test=container-specs`
# finds one a crashed run left behind.
TEST_LABEL = ("vllm-bench.test", "container-specs")
STACK = 67108864
GPU_ULIMITS = [
    {"Name": "memlock", "Soft": -1, "Hard": -1},
    {"Name": "stack", "Soft": STACK, "Hard": STACK},
]
GIB = 1024**3
# The engine appends this to SecurityOpt itself whenever the container shares the host's IPC
# namespace (also for --pid host and --privileged): SELinux labelling is off for such containers.
ENGINE_HOST_IPC_OPT = "label=disable"


@pytest.fixture(autouse=True)
def _no_host_topology(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AMD device nodes by the no-topology rule, whatever GPUs the test machine has."""
    monkeypatch.setattr(amd_topology, "HOST_ROOT", str(tmp_path_factory.mktemp("no-kfd")))


@dataclass
class Made:
    """One created container, its spec and the host paths mounted into it."""

    spec: ContainerSpec
    attrs: dict[str, Any]
    run_id: str
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def host(self) -> dict[str, Any]:
        host: dict[str, Any] = self.attrs["HostConfig"]
        return host

    @property
    def env(self) -> list[str]:
        return self.attrs["Config"]["Env"] or []


@pytest.fixture
def make(docker_client: Any, base_image: str, tmp_path: Path) -> Iterator[Callable[..., Made]]:
    """Build a vendor's spec on real tmp paths and create (not start) its container."""
    created: list[Any] = []

    def _make(vendor: str, gpus: tuple[int, ...] = (), cpus: str | None = None) -> Made:
        base = tmp_path / vendor
        paths = {
            "runs": base / "runs",
            "model": base / "models" / "tiny-llama",
            "hf_cache": base / "hf-cache",
            "token": base / "secrets" / "hf_token",
        }
        for key in ("runs", "model", "hf_cache"):
            paths[key].mkdir(parents=True)
        (paths["model"] / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
        paths["token"].parent.mkdir()
        paths["token"].write_text(TOKEN + "\n")
        paths = {key: path.resolve() for key, path in paths.items()}

        run_id = f"itest-{uuid.uuid4().hex[:12]}-{vendor}"
        run = Run(
            run_id=run_id,
            vendor=vendor,
            model=ModelRef(source=str(paths["model"]), local_path=str(paths["model"])),
            engine=EngineConfig(tp=1),
        )
        profile = PROFILES[vendor]
        if profile.uses_gpus:
            # No GPU here: pretend every node exists, and record what the check asked about.
            asked: list[str] = []

            def exists(path: str) -> bool:
                asked.append(path)
                return True

            check_host(profile, gpus, exists=exists)
            assert set(profile.devices(gpus)) <= set(asked)
        mapped = map_paths(
            run,
            profile,
            run_dir_host=paths["runs"],
            hf_cache_host=paths["hf_cache"],
            hf_token_file=paths["token"],
        )
        spec = build_spec(
            run, image=base_image, profile=profile, paths=mapped, gpus=gpus, cpus=cpus
        )
        kwargs = to_docker_kwargs(spec)
        kwargs["labels"] = {**kwargs["labels"], TEST_LABEL[0]: TEST_LABEL[1]}
        container = docker_client.containers.create(**kwargs)
        created.append(container)
        container.reload()
        return Made(spec=spec, attrs=container.attrs, run_id=run_id, paths=paths)

    try:
        yield _make
    finally:
        for container in created:
            container.remove(force=True)


def _devices(paths: list[str]) -> list[dict[str, str]]:
    return [{"PathOnHost": p, "PathInContainer": p, "CgroupPermissions": "rwm"} for p in paths]


def _assert_common(made: Made) -> None:
    """Mounts, labels, the command and the token's absence: the same for every vendor."""
    attrs, paths = made.attrs, made.paths
    assert attrs["State"]["Status"] == "created"
    assert attrs["Name"] == f"/vllm-bench-{made.run_id}"

    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    expected = {
        RUNS_DIR: (str(paths["runs"]), True),
        "/models/tiny-llama": (str(paths["model"]), False),
        HF_CACHE_DIR: (str(paths["hf_cache"]), True),
        HF_TOKEN_FILE: (str(paths["token"]), False),
    }
    assert set(mounts) == set(expected)
    for destination, (source, rw) in expected.items():
        mount = mounts[destination]
        assert (mount["Type"], mount["Source"], mount["RW"]) == ("bind", source, rw), mount
    host_mounts = {m["Target"]: m for m in made.host["Mounts"]}
    assert host_mounts["/models/tiny-llama"]["ReadOnly"] is True
    assert host_mounts[HF_TOKEN_FILE]["ReadOnly"] is True
    assert not host_mounts[RUNS_DIR].get("ReadOnly", False)

    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_RUN_ID] == made.run_id
    assert labels[LABEL_MANAGED] == "true"
    assert labels[TEST_LABEL[0]] == TEST_LABEL[1]
    assert attrs["Config"]["Cmd"] == list(made.spec.command)

    env = made.env
    assert f"HF_TOKEN_PATH={HF_TOKEN_FILE}" in env
    assert f"HF_HOME={HF_CACHE_DIR}" in env
    assert "HF_HUB_OFFLINE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert not [entry for entry in env if entry.startswith("HF_TOKEN=")]
    # The token is only in the mounted file: nothing docker inspect shows holds its value.
    assert TOKEN not in json.dumps(made.attrs)


def _assert_gpu_limits(made: Made) -> None:
    host = made.host
    assert host["IpcMode"] == "host"
    assert host["ShmSize"] == 16 * GIB
    assert host["Ulimits"] == GPU_ULIMITS
    assert not host["Privileged"]


def test_amd_all_gpus(make: Callable[..., Made]) -> None:
    made = make("amd")
    host = made.host
    assert host["Devices"] == _devices(["/dev/kfd", "/dev/dri"])
    assert host["GroupAdd"] == list(container_groups(("video", "render"), host_group_id))
    assert host["SecurityOpt"] == ["seccomp=unconfined", ENGINE_HOST_IPC_OPT]
    assert host["CapAdd"] == ["SYS_PTRACE"]
    assert not host["DeviceRequests"]
    assert not host["CpusetCpus"]
    _assert_gpu_limits(made)
    # All GPUs: the whole /dev/dri, so no selection variable and no gpus label.
    assert not [e for e in made.env if e.startswith("HIP_VISIBLE_DEVICES=")]
    assert LABEL_GPUS not in made.attrs["Config"]["Labels"]
    _assert_common(made)


def test_amd_chosen_gpus(make: Callable[..., Made]) -> None:
    made = make("amd", gpus=(0, 2))
    host = made.host
    assert host["Devices"] == _devices(
        [
            "/dev/kfd",
            "/dev/dri/renderD128",
            "/dev/dri/card0",
            "/dev/dri/renderD130",
            "/dev/dri/card2",
        ]
    )
    assert host["GroupAdd"] == list(container_groups(("video", "render"), host_group_id))
    assert host["SecurityOpt"] == ["seccomp=unconfined", ENGINE_HOST_IPC_OPT]
    assert host["CapAdd"] == ["SYS_PTRACE"]
    assert not host["DeviceRequests"]
    _assert_gpu_limits(made)
    # Host GPUs 0,2 are the container's GPUs 0,1; the host ids go on a label.
    assert "HIP_VISIBLE_DEVICES=0,1" in made.env
    assert made.attrs["Config"]["Labels"][LABEL_GPUS] == "0,2"
    _assert_common(made)


@pytest.mark.parametrize(
    ("gpus", "count", "device_ids"),
    [((), -1, []), ((0, 1), 0, ["0", "1"])],
    ids=["all", "ids-0-1"],
)
def test_nvidia(
    make: Callable[..., Made], gpus: tuple[int, ...], count: int, device_ids: list[str]
) -> None:
    made = make("nvidia", gpus=gpus)
    host = made.host
    (request,) = host["DeviceRequests"]
    assert request["Driver"] == ""
    assert request["Count"] == count
    assert (request["DeviceIDs"] or []) == device_ids
    assert request["Capabilities"] == [["gpu"]]
    # GPUs come through the device request alone: no device nodes, groups or extra powers.
    assert not host["Devices"]
    assert not host["GroupAdd"]
    assert not host["CapAdd"]
    assert host["SecurityOpt"] == [ENGINE_HOST_IPC_OPT]  # none of ours, only the engine's
    _assert_gpu_limits(made)
    assert not [e for e in made.env if e.startswith(("NVIDIA_VISIBLE_DEVICES=", "HIP_"))]
    labels = made.attrs["Config"]["Labels"]
    assert labels.get(LABEL_GPUS) == (",".join(map(str, gpus)) or None)
    _assert_common(made)


def test_cpu_cpuset(make: Callable[..., Made]) -> None:
    made = make("cpu", cpus="0")
    host = made.host
    assert host["CpusetCpus"] == "0"
    assert host["CapAdd"] == ["SYS_NICE"]
    assert host["SecurityOpt"] == ["seccomp=unconfined"]  # no host IPC: nothing added
    assert host["ShmSize"] == 4 * GIB
    assert host["IpcMode"] != "host"  # the engine's default (private or shareable)
    assert not host["Devices"]
    assert not host["DeviceRequests"]
    assert not host["GroupAdd"]
    assert not host["Ulimits"]
    assert not host["Privileged"]
    assert LABEL_GPUS not in made.attrs["Config"]["Labels"]
    _assert_common(made)
