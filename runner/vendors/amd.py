"""AMD: GPUs found by amd-smi or rocm-smi, /dev/kfd and render nodes in containers; ROCm images."""

from __future__ import annotations

import json
from typing import Any

from runner.errors import PlanError
from runner.vendors.base import GPU_ULIMITS, Gpu, Query, VendorProfile, leading_int

RENDER_NODE_BASE = 128  # the kernel's DRM render minors start at 128 (renderD128)

AMD_SMI_QUERY = ("amd-smi", "static", "--asic", "--driver", "--vram", "--bus", "--json")
ROCM_SMI_QUERY = ("rocm-smi", "--showproductname", "--showdriverversion", "--showbus", "--json")


def _amd_items(data: Any) -> list[dict[str, Any]]:
    # amd-smi has printed a bare list, and {"gpu_data": [...]} in other releases
    if isinstance(data, dict):
        data = data.get("gpu_data", data.get("gpus", []))
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def parse_amd_smi_static(text: str) -> list[Gpu]:
    """Parse `amd-smi static --asic --driver --vram --bus --json`."""
    try:
        items = _amd_items(json.loads(text))
    except json.JSONDecodeError:
        return []
    gpus = []
    for pos, item in enumerate(items):
        asic = item.get("asic") or {}
        driver = item.get("driver") or {}
        vram = item.get("vram") or {}
        bus = item.get("bus") or {}
        size = vram.get("size")
        memory = leading_int(size.get("value") if isinstance(size, dict) else size)
        gpus.append(
            Gpu(
                index=leading_int(str(item.get("gpu", pos))) or pos,
                name=str(asic.get("market_name") or asic.get("device_id") or "AMD GPU"),
                vendor="amd",
                driver=str(driver.get("version")) if driver.get("version") else None,
                memory_mib=memory,
                bus_id=str(bus.get("bdf")) if bus.get("bdf") else None,
                uuid=str(asic.get("asic_serial")) if asic.get("asic_serial") else None,
            )
        )
    return gpus


def parse_rocm_smi(text: str) -> list[Gpu]:
    """Parse `rocm-smi --showproductname --showdriverversion --showbus --json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    driver = None
    system = data.get("system")
    if isinstance(system, dict):
        driver = system.get("Driver version")
    gpus = []
    for key, card in data.items():
        if not key.startswith("card") or not isinstance(card, dict):
            continue
        name = card.get("Card Series") or card.get("Card series") or card.get("Card model")
        gpus.append(
            Gpu(
                index=leading_int(key[4:]) or 0,
                name=str(name or "AMD GPU"),
                vendor="amd",
                driver=str(driver) if driver else None,
                bus_id=card.get("PCI Bus"),
            )
        )
    return sorted(gpus, key=lambda g: g.index)


def amd_gpu_nodes(index: int) -> tuple[str, ...]:
    """The /dev/dri nodes of AMD GPU `index`: renderD<128+index> and card<index>.

    The kernel numbers DRM render minors from 128 in probe (PCI) order, so with only AMD GPUs
    bound to DRM the i-th GPU that amd-smi / rocm-smi list is renderD(128+i). A display device
    without a render node (a server's BMC VGA) does not shift the render nodes, but it can take
    card0; the card node is passed for tools such as amd-smi, HIP compute needs only the render
    node and /dev/kfd. `check_host` verifies every node exists before a container is made.
    """
    if index < 0:
        raise PlanError(f"GPU index {index} is negative")
    return (f"/dev/dri/renderD{RENDER_NODE_BASE + index}", f"/dev/dri/card{index}")


AMD = VendorProfile(
    name="amd",
    k8s_resource="amd.com/gpu",
    template_family="rocm",
    default_image="rocm-amd",  # AMD's own tuned build, what the source documents run
    queries=(Query(AMD_SMI_QUERY, parse_amd_smi_static), Query(ROCM_SMI_QUERY, parse_rocm_smi)),
    shared_devices=("/dev/kfd",),  # the compute interface all GPUs share
    all_gpu_devices=("/dev/dri",),
    gpu_devices=amd_gpu_nodes,
    gpu_env="HIP_VISIBLE_DEVICES",
    driver_paths=("/dev/kfd",),
    driver_hint=(
        "the ROCm kernel driver (amdgpu with KFD) is missing on this host: /dev/kfd does "
        "not exist; install amdgpu-dkms and load the amdgpu module, or choose another --vendor"
    ),
    group_add=("video", "render"),  # the owners of /dev/kfd and /dev/dri/renderD* on hosts
    cap_add=("SYS_PTRACE",),  # ROCm's debugger API and rocprof attach to the process
    security_opt=("seccomp=unconfined",),  # the default profile blocks calls the HSA runtime makes
    ipc_mode="host",  # tensor-parallel workers share memory through /dev/shm and IPC handles
    ulimits=GPU_ULIMITS,  # pinned host memory for DMA; deep stacks in compiled kernels
    tunableop_dir="/var/lib/bench/tunableop",  # PYTORCH_TUNABLEOP_FILENAME's directory
)
