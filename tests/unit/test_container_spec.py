"""The container spec (runner/executors/container_spec.py) for each vendor, argument by argument."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from docker.types import DeviceRequest, Mount, Ulimit

from runner import __version__
from runner.errors import PlanError
from runner.executors.agent_mount import LAUNCHER
from runner.executors.container_paths import (
    HF_TOKEN_FILE,
    MountSpec,
    container_job_path,
    container_model_dir,
    host_job_path,
    map_paths,
)
from runner.executors.container_spec import ContainerSpec, build_spec, container_groups
from runner.executors.render.docker_api import to_docker_kwargs
from runner.executors.render.docker_cli import docker_run_line, mount_value
from runner.plan import EngineConfig, ModelRef, Run
from runner.vendors import PROFILES, amd_topology

RUN_ID = "20261122-031500-tiny-llama-amd-1a2b3c"
TOKEN = "hf_SuperSecretTokenValue123"
IMAGE = "vllm-bench/rocm-vllm-openai:0.32.0"
# The launcher script, then the agent's arguments (the image's ENTRYPOINT is replaced by sh).
COMMAND = [
    "-c", LAUNCHER, "vllm-bench-launcher",
    "--job", f"/runs/.jobs/{RUN_ID}.json",
    "--out-root", "/runs",
]  # fmt: skip
GPU_ULIMITS = [
    Ulimit(name="memlock", soft=-1, hard=-1),
    Ulimit(name="stack", soft=67108864, hard=67108864),
]


@pytest.fixture(autouse=True)
def _no_host_topology(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AMD device nodes by the no-topology rule, whatever GPUs the test machine has."""
    monkeypatch.setattr(amd_topology, "HOST_ROOT", str(tmp_path_factory.mktemp("no-kfd")))


def make_run(vendor: str, *, tp: int = 1, env: tuple[tuple[str, str], ...] = ()) -> Run:
    return Run(
        run_id=RUN_ID,
        vendor=vendor,
        model=ModelRef(source="meta-llama/Llama-3.1-8B-Instruct"),
        engine=EngineConfig(tp=tp),
        env=env,
    )


PATH_ARGUMENTS = ("run_dir_host", "hf_cache_host", "hf_token_file", "compile_cache_volume",
                  "tunableop_volume")  # fmt: skip


def spec_for(vendor: str, tmp_path: Path, **overrides: Any) -> ContainerSpec:
    token_file = tmp_path / "hf_token"
    token_file.write_text(TOKEN)
    where: dict[str, Any] = {
        "run_dir_host": Path("/srv/runs"),
        "hf_cache_host": Path("/home/me/.cache/huggingface"),
        "hf_token_file": token_file,
        "compile_cache_volume": "vllm-bench-compile-cache",
        "tunableop_volume": "vllm-bench-tunableop",
    }
    arguments: dict[str, Any] = {
        "image": IMAGE,
        "run_id": RUN_ID,
        "tool_version": "1.2.3",
        "group_id": {"video": 44, "render": 109}.get,
    }
    run = overrides.pop("run", None) or make_run(vendor)
    where.update({k: overrides.pop(k) for k in PATH_ARGUMENTS if k in overrides})
    arguments.update(overrides)
    profile = PROFILES[vendor]
    paths = map_paths(run, profile, **where)
    return build_spec(run, profile=profile, paths=paths, **arguments)


def common_mounts(tmp_path: Path) -> list[Mount]:
    return [
        Mount(target="/runs", source="/srv/runs", type="bind"),
        Mount(target="/root/.cache/huggingface", source="/home/me/.cache/huggingface", type="bind"),
        Mount(
            target="/run/secrets/hf_token",
            source=str(tmp_path / "hf_token"),
            type="bind",
            read_only=True,
        ),
        Mount(target="/root/.cache/vllm", source="vllm-bench-compile-cache", type="volume"),
    ]


COMMON_ENV = {
    "PYTHONUNBUFFERED": "1",
    "HF_HOME": "/root/.cache/huggingface",
    "HF_TOKEN_PATH": "/run/secrets/hf_token",
    "VLLM_CACHE_ROOT": "/root/.cache/vllm",
}
# AMD: the agent decides TunableOp's tuning (a warm-up pass), so the entrypoint must not
AMD_ENV = {**COMMON_ENV, "PYTORCH_TUNABLEOP_TUNING": "0"}
LABELS = {
    "vllm-bench.run-id": RUN_ID,
    "vllm-bench.tool-version": "1.2.3",
    "vllm-bench.managed": "true",
}


def test_paths_inside_the_container() -> None:
    assert container_job_path("r1") == "/runs/.jobs/r1.json"
    assert host_job_path(Path("/srv/runs"), "r1") == Path("/srv/runs/.jobs/r1.json")
    assert container_model_dir(Path("/data/models/llama-8b")) == "/models/llama-8b"


def test_amd_spec_all_gpus(tmp_path: Path) -> None:
    kwargs = to_docker_kwargs(spec_for("amd", tmp_path))
    assert kwargs == {
        "image": IMAGE,
        "entrypoint": ["/bin/sh"],
        "command": COMMAND,
        "name": f"vllm-bench-{RUN_ID}",
        "environment": AMD_ENV,
        "labels": LABELS,
        "devices": ["/dev/kfd", "/dev/dri"],
        "group_add": ["44", "109"],
        "cap_add": ["SYS_PTRACE"],
        "security_opt": ["seccomp=unconfined"],
        "ipc_mode": "host",
        "shm_size": "16g",
        "ulimits": GPU_ULIMITS,
        "mounts": [
            *common_mounts(tmp_path),
            Mount(target="/var/lib/bench/tunableop", source="vllm-bench-tunableop", type="volume"),
        ],
        "privileged": False,
    }


def test_amd_spec_chosen_gpus(tmp_path: Path) -> None:
    spec = spec_for("amd", tmp_path, gpus=(0, 2), privileged=True, shm_size="64g")
    kwargs = to_docker_kwargs(spec)
    assert kwargs["devices"] == [
        "/dev/kfd",
        "/dev/dri/renderD128",
        "/dev/dri/card0",
        "/dev/dri/renderD130",
        "/dev/dri/card2",
    ]
    # Host GPUs 0 and 2 are the container's GPUs 0 and 1: ROCm sees only the nodes passed in.
    assert kwargs["environment"] == {**AMD_ENV, "HIP_VISIBLE_DEVICES": "0,1"}
    assert kwargs["labels"] == {**LABELS, "vllm-bench.gpus": "0,2"}
    assert kwargs["privileged"] is True
    assert kwargs["shm_size"] == "64g"
    assert "device_requests" not in kwargs


def test_nvidia_spec_all_gpus(tmp_path: Path) -> None:
    kwargs = to_docker_kwargs(spec_for("nvidia", tmp_path))
    assert kwargs == {
        "image": IMAGE,
        "entrypoint": ["/bin/sh"],
        "command": COMMAND,
        "name": f"vllm-bench-{RUN_ID}",
        "environment": COMMON_ENV,  # no NVIDIA_VISIBLE_DEVICES: the device request decides
        "labels": LABELS,
        "device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])],
        "ipc_mode": "host",
        "shm_size": "16g",
        "ulimits": GPU_ULIMITS,
        "mounts": common_mounts(tmp_path),  # no TunableOp volume: a ROCm thing
        "privileged": False,
    }


def test_nvidia_spec_chosen_gpus(tmp_path: Path) -> None:
    spec = spec_for("nvidia", tmp_path, gpus=(0, 1), run=make_run("nvidia", tp=2))
    kwargs = to_docker_kwargs(spec)
    assert kwargs["device_requests"] == [
        DeviceRequest(count=0, device_ids=["0", "1"], capabilities=[["gpu"]])
    ]
    assert "devices" not in kwargs
    assert kwargs["environment"] == COMMON_ENV
    assert "--gpus '\"device=0,1\"'" in docker_run_line(spec)


def test_cpu_spec_with_a_cpuset(tmp_path: Path) -> None:
    kwargs = to_docker_kwargs(spec_for("cpu", tmp_path, cpus="0-3,8"))
    assert kwargs == {
        "image": IMAGE,
        "entrypoint": ["/bin/sh"],
        "command": COMMAND,
        "name": f"vllm-bench-{RUN_ID}",
        "environment": COMMON_ENV,
        "labels": LABELS,
        "cap_add": ["SYS_NICE"],
        "security_opt": ["seccomp=unconfined"],
        "shm_size": "4g",
        "cpuset_cpus": "0-3,8",
        "mounts": common_mounts(tmp_path),
        "privileged": False,
    }


def test_local_model_is_mounted_read_only(tmp_path: Path) -> None:
    model = tmp_path / "tiny-llama"
    model.mkdir()
    (model / "config.json").write_text("{}")
    run = Run(RUN_ID, "cpu", ModelRef.resolve(str(model)), EngineConfig())
    spec = spec_for("cpu", tmp_path, run=run, hf_token_file=None)
    mounts = to_docker_kwargs(spec)["mounts"]
    assert Mount(target="/models/tiny-llama", source=str(model), type="bind", read_only=True) in (
        mounts
    )
    assert spec.environment["HF_HUB_OFFLINE"] == "1"
    assert "HF_TOKEN_PATH" not in spec.environment  # no token file, no token path


def test_user_env_reaches_the_container(tmp_path: Path) -> None:
    run = make_run("cpu", env=(("VLLM_CPU_KVCACHE_SPACE", "4"),))
    spec = spec_for("cpu", tmp_path, run=run)
    assert spec.environment == {**COMMON_ENV, "VLLM_CPU_KVCACHE_SPACE": "4"}
    assert "-e VLLM_CPU_KVCACHE_SPACE=4" in docker_run_line(spec)


def test_the_token_is_nowhere(tmp_path: Path) -> None:
    spec = spec_for("amd", tmp_path, gpus=(0,))
    kwargs = to_docker_kwargs(spec)
    assert "HF_TOKEN" not in kwargs["environment"]
    assert TOKEN not in repr(kwargs)
    assert TOKEN not in json.dumps(spec.redacted())
    assert TOKEN not in docker_run_line(spec)
    assert spec.redacted()["environment"]["HF_TOKEN_PATH"] == HF_TOKEN_FILE  # a path: shown


def test_a_secret_in_env_is_refused(tmp_path: Path) -> None:
    run = make_run("cpu", env=(("HF_TOKEN", TOKEN),))
    with pytest.raises(PlanError, match=r"--env HF_TOKEN: .*docker inspect") as info:
        spec_for("cpu", tmp_path, run=run)
    assert TOKEN not in str(info.value)


def test_env_that_contradicts_the_tool_is_refused(tmp_path: Path) -> None:
    run = make_run("amd", env=(("HIP_VISIBLE_DEVICES", "3"),))
    with pytest.raises(PlanError, match="HIP_VISIBLE_DEVICES=0"):
        spec_for("amd", tmp_path, run=run, gpus=(2,))
    # Without --gpus, choosing GPUs through --env is the user's business.
    assert spec_for("amd", tmp_path, run=run).environment["HIP_VISIBLE_DEVICES"] == "3"


def test_redacted_is_plain_json(tmp_path: Path) -> None:
    spec = spec_for("nvidia", tmp_path, gpus=(1,))
    data = json.loads(json.dumps(spec.redacted()))
    assert data["device_requests"] == [{"count": 0, "device_ids": ["1"], "capabilities": ["gpu"]}]
    assert data["ulimits"] == [
        {"name": "memlock", "soft": -1, "hard": -1},
        {"name": "stack", "soft": 67108864, "hard": 67108864},
    ]
    assert data["mounts"][0] == {
        "type": "bind",
        "source": "/srv/runs",
        "target": "/runs",
        "read_only": False,
    }
    assert data["command"] == COMMAND
    assert data["labels"] == {**LABELS, "vllm-bench.gpus": "1"}


def test_docker_run_line_amd(tmp_path: Path) -> None:
    spec = spec_for("amd", tmp_path, gpus=(0, 2), privileged=True)
    line = docker_run_line(spec)
    lines = line.split(" \\\n  ")
    assert lines[0] == "docker run"
    assert lines[-1] == shlex.join([IMAGE, *COMMAND])
    assert "--entrypoint /bin/sh" in lines
    for flag in (
        "--device /dev/kfd",
        "--device /dev/dri/renderD128",
        "--device /dev/dri/card0",
        "--device /dev/dri/renderD130",
        "--device /dev/dri/card2",
        "--group-add 44",
        "--group-add 109",
        "--cap-add SYS_PTRACE",
        "--security-opt seccomp=unconfined",
        "--ipc host",
        "--shm-size 16g",
        "--ulimit memlock=-1:-1",
        "--ulimit stack=67108864:67108864",
        "--privileged",
        "--mount type=bind,source=/srv/runs,target=/runs",
        f"--mount type=bind,source={tmp_path}/hf_token,target=/run/secrets/hf_token,readonly",
        "--mount type=volume,source=vllm-bench-tunableop,target=/var/lib/bench/tunableop",
        "--label vllm-bench.managed=true",
        f"--label vllm-bench.run-id={RUN_ID}",
        "-e HIP_VISIBLE_DEVICES=0,1",
        "-e HF_TOKEN_PATH=/run/secrets/hf_token",
        f"--name vllm-bench-{RUN_ID}",
    ):
        assert flag in lines, flag
    # One line per flag, and every line after the first but the last is a flag.
    assert all(part.startswith("-") for part in lines[1:-1])


def test_docker_run_line_matches_the_kwargs(tmp_path: Path) -> None:
    for vendor, extra in (("amd", {}), ("nvidia", {"gpus": (3,)}), ("cpu", {"cpus": "0-1"})):
        spec = spec_for(vendor, tmp_path, **extra)
        kwargs = to_docker_kwargs(spec)
        words = shlex.split(docker_run_line(spec).replace("\\\n", " "))
        pairs = list(zip(words, [*words[1:], ""], strict=True))
        assert [v for f, v in pairs if f == "--device"] == kwargs.get("devices", [])
        assert [v for f, v in pairs if f == "--cap-add"] == kwargs.get("cap_add", [])
        assert [v for f, v in pairs if f == "--group-add"] == kwargs.get("group_add", [])
        assert [v for f, v in pairs if f == "--security-opt"] == kwargs.get("security_opt", [])
        assert [v for f, v in pairs if f == "--ulimit"] == [
            f"{u['Name']}={u['Soft']}:{u['Hard']}" for u in kwargs.get("ulimits", [])
        ]
        assert len([f for f, _ in pairs if f == "--mount"]) == len(kwargs["mounts"])
        assert dict(v.split("=", 1) for f, v in pairs if f == "-e") == kwargs["environment"]
        assert dict(v.split("=", 1) for f, v in pairs if f == "--label") == kwargs["labels"]
        assert [v for f, v in pairs if f == "--cpuset-cpus"] == (
            [kwargs["cpuset_cpus"]] if "cpuset_cpus" in kwargs else []
        )
        gpus = [v for f, v in pairs if f == "--gpus"]
        assert gpus == (['"device=3"'] if vendor == "nvidia" else [])


def test_mount_values_with_commas_are_quoted_for_the_cli() -> None:
    mount = MountSpec("bind", "/data/a,b", "/models/a,b", read_only=True)
    assert mount_value(mount) == 'type=bind,"source=/data/a,b","target=/models/a,b",readonly'


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="uses no GPUs"):
        spec_for("cpu", tmp_path, gpus=(0,))
    with pytest.raises(PlanError, match="--tp 2 needs 2 GPUs"):
        spec_for("nvidia", tmp_path, gpus=(0,), run=make_run("nvidia", tp=2))
    with pytest.raises(PlanError, match="--cpus"):
        spec_for("cpu", tmp_path, cpus="3-1")
    with pytest.raises(PlanError, match="--shm-size"):
        spec_for("cpu", tmp_path, shm_size="lots")
    with pytest.raises(PlanError, match="absolute"):
        spec_for("cpu", tmp_path, run_dir_host=Path("runs"))
    with pytest.raises(PlanError, match="volume name"):
        spec_for("cpu", tmp_path, compile_cache_volume="bad name")
    with pytest.raises(PlanError, match="amd profile"):
        spec_for("amd", tmp_path, run=make_run("cpu"))


def test_defaults_come_from_the_run(tmp_path: Path) -> None:
    run, profile = make_run("cpu"), PROFILES["cpu"]
    paths = map_paths(run, profile, run_dir_host=tmp_path)
    spec = build_spec(run, image=IMAGE, profile=profile, paths=paths)
    assert spec.labels["vllm-bench.run-id"] == RUN_ID
    assert spec.labels["vllm-bench.tool-version"] == __version__
    assert [m.target for m in spec.mounts] == ["/runs"]
    assert spec.environment == {"PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("vendor", ["amd", "nvidia", "cpu"])
def test_docker_py_accepts_the_kwargs(vendor: str, tmp_path: Path) -> None:
    # docker-py's own translation into the API's HostConfig (no daemon): a misspelt keyword
    # fails here, not first on a real engine.
    from docker.models.containers import _create_container_args  # type: ignore[attr-defined]

    spec = spec_for(vendor, tmp_path, cpus="0-1")
    args = _create_container_args({**to_docker_kwargs(spec), "version": "1.44"})
    host = args["host_config"]
    assert host["CpusetCpus"] == "0-1"
    assert len(host["Mounts"]) == len(spec.mounts)
    assert host.get("CapAdd", []) == list(spec.cap_add)
    assert host.get("Ulimits", []) == [
        {"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits
    ]
    assert args["labels"] == spec.labels


def test_groups_are_the_hosts_numeric_ids_and_absent_ones_are_dropped() -> None:
    # A name would be looked up in the image's /etc/group at start (and fail where it is absent)
    assert container_groups(("video", "render"), {"video": 44, "render": 109}.get) == ("44", "109")
    assert container_groups(("video", "render"), {"video": 44}.get) == ("44",)
    assert container_groups(("video",), {}.get) == ()
