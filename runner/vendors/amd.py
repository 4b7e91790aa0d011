"""AMD: GPUs found by amd-smi or rocm-smi, /dev/kfd and render nodes in containers; ROCm images."""

from __future__ import annotations

import json
from typing import Any

from runner.errors import PlanError
from runner.vendors.amd_topology import PathLike, amd_gpu_topology, read_kfd_topology
from runner.vendors.base import GPU_ULIMITS, Gpu, Query, Runner, VendorProfile, leading_int
from runner.vendors.checks import check_gpu_ids

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


def amd_gpu_nodes(index: int, root: PathLike | None = None) -> tuple[str, ...]:
    """The /dev/dri nodes of AMD GPU `index` (HIP's numbering): its render node and card.

    Taken from the KFD topology (amd_topology.read_kfd_topology): MI300-class GPUs have 8
    render nodes each (one per possible partition), so GPU 1 is renderD136 in SPX mode, and
    in CPX mode each partition is a GPU with its own node; a display device without a render
    node (a server's BMC VGA) takes a card number but no render minor. A host whose topology
    cannot be read has no AMD GPU for a container anyway (`check_host` refuses it for lack of
    /dev/kfd); its spec keeps the one-render-node-per-GPU rule, renderD<128+index> and
    card<index>. An id beyond the topology's GPUs is GpuNotFound. The card goes in for tools
    such as amd-smi (HIP needs only the render node and /dev/kfd); `check_host` verifies every
    node exists before a container is made.
    """
    if index < 0:
        raise PlanError(f"GPU index {index} is negative")
    gpus = read_kfd_topology(root)
    if not gpus:
        return (f"/dev/dri/renderD{RENDER_NODE_BASE + index}", f"/dev/dri/card{index}")
    check_gpu_ids((index,), len(gpus), "amd")
    return gpus[index].device_nodes()


def _topology(runner: Runner) -> dict[str, Any] | None:
    return amd_gpu_topology(runner=runner)


AMD = VendorProfile(
    name="amd",
    k8s_resource="amd.com/gpu",
    template_family="rocm",
    # vLLM's ROCm release image: the same vLLM release as the NVIDIA and CPU defaults, so that
    # cross-vendor results compare like with like (AMD's own builds lag; --image rocm-amd)
    default_image="rocm-vllm-openai",
    queries=(Query(AMD_SMI_QUERY, parse_amd_smi_static), Query(ROCM_SMI_QUERY, parse_rocm_smi)),
    shared_devices=("/dev/kfd",),  # the compute interface all GPUs share
    all_gpu_devices=("/dev/dri",),
    gpu_devices=amd_gpu_nodes,
    topology=_topology,  # index -> render node, card, PCI address, partition, for provenance
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
    numa_balancing_off=True,  # AMD's MI300X tuning guides: kernel.numa_balancing=0
    tunableop_dir="/var/lib/bench/tunableop",  # PYTORCH_TUNABLEOP_FILENAME's directory
)
