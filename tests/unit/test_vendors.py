"""Vendor profiles (runner/vendors/): device flags as data, --gpus and --cpus, host checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import BenchError, PlanError, PreflightError
from runner.vendors import (
    PROFILES,
    DriverMissing,
    GpuNotFound,
    GpuRequest,
    Ulimit,
    amd_gpu_nodes,
    amd_topology,
    check_gpu_ids,
    check_host,
    parse_cpuset,
    parse_gpus,
    profile_for,
)

GPU_ULIMITS = (Ulimit("memlock", -1, -1), Ulimit("stack", 67108864, 67108864))


@pytest.fixture
def no_kfd_topology(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose KFD topology cannot be read, whatever runs the tests (an AMD node too)."""
    monkeypatch.setattr(amd_topology, "HOST_ROOT", str(tmp_path))


def test_one_profile_per_vendor_with_its_kubernetes_resource() -> None:
    assert set(PROFILES) == {"nvidia", "amd", "cpu"}
    assert PROFILES["nvidia"].k8s_resource == "nvidia.com/gpu"
    assert PROFILES["amd"].k8s_resource == "amd.com/gpu"
    assert PROFILES["cpu"].k8s_resource is None
    assert profile_for("amd") is PROFILES["amd"]
    with pytest.raises(PlanError, match="unknown vendor 'tpu'"):
        profile_for("tpu")


def test_amd_profile() -> None:
    amd = PROFILES["amd"]
    assert amd.devices(()) == ("/dev/kfd", "/dev/dri")
    assert amd.group_add == ("video", "render")
    assert amd.cap_add == ("SYS_PTRACE",)
    assert amd.security_opt == ("seccomp=unconfined",)
    assert amd.ipc_mode == "host"
    assert amd.ulimits == GPU_ULIMITS
    assert amd.device_requests(()) == ()
    assert amd.gpu_environment(()) == {}
    assert amd.tunableop_dir == "/var/lib/bench/tunableop"


@pytest.mark.usefixtures("no_kfd_topology")
def test_amd_chosen_gpus_get_their_render_and_card_nodes() -> None:
    # Without a topology, one render node per GPU; test_amd_topology.py has MI300's 8 per GPU.
    assert amd_gpu_nodes(0) == ("/dev/dri/renderD128", "/dev/dri/card0")
    assert amd_gpu_nodes(7) == ("/dev/dri/renderD135", "/dev/dri/card7")
    amd = PROFILES["amd"]
    assert amd.devices((0, 2)) == (
        "/dev/kfd",
        "/dev/dri/renderD128",
        "/dev/dri/card0",
        "/dev/dri/renderD130",
        "/dev/dri/card2",
    )
    # Only the chosen GPUs are in the container, where ROCm numbers them from 0.
    assert amd.gpu_environment((0, 2)) == {"HIP_VISIBLE_DEVICES": "0,1"}
    with pytest.raises(PlanError):
        amd_gpu_nodes(-1)


def test_nvidia_profile_uses_a_device_request() -> None:
    nvidia = PROFILES["nvidia"]
    assert nvidia.devices(()) == ()
    assert nvidia.devices((0, 1)) == ()
    assert nvidia.device_requests(()) == (GpuRequest(),)
    assert nvidia.device_requests(())[0].count == -1
    assert nvidia.device_requests((0, 3)) == (GpuRequest(device_ids=("0", "3")),)
    assert nvidia.device_requests((0, 3))[0].count == 0
    assert nvidia.gpu_environment((0, 3)) == {}  # the NVIDIA runtime sets its own variable
    assert nvidia.ipc_mode == "host"
    assert nvidia.ulimits == GPU_ULIMITS
    assert nvidia.group_add == nvidia.cap_add == nvidia.security_opt == ()


def test_cpu_profile() -> None:
    cpu = PROFILES["cpu"]
    assert cpu.devices(()) == ()
    assert cpu.device_requests(()) == ()
    assert cpu.cap_add == ("SYS_NICE",)
    assert cpu.security_opt == ("seccomp=unconfined",)
    assert cpu.group_add == ()
    assert cpu.ipc_mode is None
    assert cpu.ulimits == ()
    assert not cpu.uses_gpus


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", (0,)), ("0,1", (0, 1)), (" 2, 0 ", (0, 2)), ("all", ()), ("ALL", ()), ("10", (10,))],
)
def test_parse_gpus(text: str, expected: tuple[int, ...]) -> None:
    assert parse_gpus(text) == expected


@pytest.mark.parametrize("text", ["", "a", "0,", "-1", "1.5", "0,0", "0;1", "²"])
def test_parse_gpus_refuses_bad_ids(text: str) -> None:
    with pytest.raises(PlanError, match="--gpus"):
        parse_gpus(text)


def test_gpu_ids_checked_against_the_gpus_found() -> None:
    check_gpu_ids((0, 1), 2, "nvidia")
    check_gpu_ids((), 0, "amd")  # "all" is judged by the tp check, not here
    with pytest.raises(GpuNotFound, match=r"GPU 5, but this host has 2 amd GPUs \(ids 0-1\)"):
        check_gpu_ids((0, 5), 2, "amd")
    with pytest.raises(GpuNotFound, match="GPUs 2, 3, but this host has 2"):
        check_gpu_ids((2, 3), 2, "nvidia")
    with pytest.raises(GpuNotFound, match="no nvidia GPUs were found"):
        check_gpu_ids((0,), 0, "nvidia")
    assert issubclass(GpuNotFound, BenchError)


@pytest.mark.parametrize(
    ("text", "expected"), [("0-3,8", "0-3,8"), ("5", "5"), ("0, 2-3", "0,2-3")]
)
def test_parse_cpuset(text: str, expected: str) -> None:
    assert parse_cpuset(text) == expected


@pytest.mark.parametrize("text", ["", "a", "0-", "-3", "3-1", "0,,1", "0-3,2", "1,1", "0-3;8"])
def test_parse_cpuset_refuses_bad_lists(text: str) -> None:
    with pytest.raises(PlanError, match="--cpus"):
        parse_cpuset(text)


def test_missing_kfd_means_no_rocm_driver() -> None:
    with pytest.raises(DriverMissing, match="ROCm") as info:
        check_host(PROFILES["amd"], (), exists=lambda path: False)
    assert "/dev/kfd" in str(info.value)
    assert isinstance(info.value, PreflightError)


@pytest.mark.usefixtures("no_kfd_topology")
def test_host_check_passes_and_names_a_missing_gpu_node() -> None:
    present = {"/dev/kfd", "/dev/dri", "/dev/dri/renderD128", "/dev/dri/card0"}
    check_host(PROFILES["amd"], (), exists=present.__contains__)
    check_host(PROFILES["amd"], (0,), exists=present.__contains__)
    with pytest.raises(GpuNotFound, match="/dev/dri/renderD129"):
        check_host(PROFILES["amd"], (0, 1), exists=present.__contains__)
    # NVIDIA and CPU containers need no device node of ours.
    check_host(PROFILES["nvidia"], (0,), exists=lambda path: False)
    check_host(PROFILES["cpu"], (), exists=lambda path: False)
