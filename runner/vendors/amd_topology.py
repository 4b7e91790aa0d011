"""AMD GPUs in HIP's order, each with its render node, card, PCI address and partition."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from runner.vendors.base import Runner, leading_int

# The host's root, read at call time so tests can point it at a copied tree.
HOST_ROOT = "/"
KFD_NODES = "sys/class/kfd/kfd/topology/nodes"

AMD_SMI_LIST_QUERIES = (
    ("amd-smi", "list", "-e", "--json"),  # -e adds render, card, hip_id (ROCm 6.4 and later)
    ("amd-smi", "list", "--json"),
)
AMD_SMI_PARTITION_QUERY = ("amd-smi", "static", "--bus", "--partition", "--json")

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class AmdGpuNode:
    """One GPU as HIP numbers it on this host; a partition of a physical GPU in DPX..CPX modes."""

    index: int  # HIP's device index on this host (HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES)
    render_minor: int | None  # /dev/dri/renderD<minor>
    card: int | None = None  # /dev/dri/card<card>
    pci_address: str | None = None  # the physical GPU: domain:bus:device.function
    partition: int | None = None  # the partition of that GPU (0 in SPX mode)
    kfd_node: int | None = None  # /sys/class/kfd/kfd/topology/nodes/<kfd_node>
    gpu_id: int | None = None  # KFD's gpu_id
    compute_partition: str | None = None  # SPX, DPX, TPX, QPX or CPX
    memory_partition: str | None = None  # NPS1, NPS2, NPS4 or NPS8

    @property
    def render_node(self) -> str | None:
        return None if self.render_minor is None else f"/dev/dri/renderD{self.render_minor}"

    @property
    def card_node(self) -> str | None:
        return None if self.card is None else f"/dev/dri/card{self.card}"

    def device_nodes(self) -> tuple[str, ...]:
        """The /dev/dri nodes a container needs for this GPU: its render node, then its card."""
        return tuple(node for node in (self.render_node, self.card_node) if node is not None)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "render_node": self.render_node, "card_node": self.card_node}


def _root(root: PathLike | None) -> Path:
    return Path(HOST_ROOT if root is None else root)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except PermissionError:
        raise  # KFD answers EPERM for a GPU the device cgroup hides: the caller skips it
    except OSError:
        return None


def parse_properties(text: str) -> dict[str, int]:
    """A KFD topology `properties` file: one `name value` pair a line."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            found[parts[0]] = int(parts[1])
    return found


def _node_ids(nodes: Path) -> list[int]:
    try:
        names = [entry.name for entry in nodes.iterdir()]
    except OSError:
        return []
    return sorted(int(name) for name in names if name.isdigit())  # numerically: 10 after 9


def _gpu_node(nodes: Path, node_id: int) -> tuple[int, dict[str, int]] | None:
    """(gpu_id, properties) of a GPU node; None for a CPU node or one this process cannot see."""
    try:
        gpu_id = leading_int(_read(nodes / str(node_id) / "gpu_id"))
        text = _read(nodes / str(node_id) / "properties")
    except PermissionError:
        return None
    props = parse_properties(text or "")
    # ROCr makes a GPU agent of a node with SIMDs; libhsakmt treats gpu_id 0 as a CPU node.
    if not gpu_id or props.get("simd_count", 0) == 0 or not props.get("drm_render_minor"):
        return None
    return gpu_id, props


def _card_of(root: Path, minor: int) -> int | None:
    # renderD<minor>/device is the DRM device (the PCI function, or the amdgpu_xcp platform
    # device of a partition); its drm/ directory holds the card node of the same device.
    try:
        names = [e.name for e in (root / f"sys/class/drm/renderD{minor}/device/drm").iterdir()]
    except OSError:
        return None
    cards = sorted(n for n in (_prefixed_int(name, "card") for name in names) if n is not None)
    return cards[0] if cards else None


def _pci_parts(props: dict[str, int]) -> tuple[int, int, int]:
    """(domain, bus and device, function) from KFD's location_id and domain."""
    # location_id is the kernel's pci_dev_id(): bus << 8 | device << 3 | function. On a
    # partitioned GPU the driver ORs the partition's node id into it (the function bits; one
    # kernel release used bits 31:28), so only bus and device identify the physical GPU.
    location = props.get("location_id", 0)
    return props.get("domain", 0), (location & 0xFFFF) >> 3, location & 0x7


def _bdf(domain: int, bus_device: int, function: int) -> str:
    return f"{domain:04x}:{bus_device >> 5:02x}:{bus_device & 0x1F:02x}.{function:x}"


def _partition_mode(root: Path, minor: int, bdf: str, name: str) -> str | None:
    # The partition files live on the physical GPU's PCI device, which is also the render
    # node's device for its first partition; a partition's amdgpu_xcp device has none.
    for path in (
        root / f"sys/class/drm/renderD{minor}/device/{name}",
        root / f"sys/bus/pci/devices/{bdf}/{name}",
    ):
        try:
            value = _read(path)
        except PermissionError:
            value = None
        if value and value.upper() != "N/A":
            return value.upper()
    return None


def _render_usable(root: Path, minor: int) -> bool:
    # libhsakmt drops a GPU whose render node it cannot open (absent in a container that was
    # given other GPUs), which is what renumbers GPUs there; a copied sysfs tree has no dev/.
    dri = root / "dev/dri"
    return not dri.is_dir() or (dri / f"renderD{minor}").exists()


def read_kfd_topology(root: PathLike | None = None) -> list[AmdGpuNode]:
    """This host's AMD GPUs in HIP's order, from the KFD topology in sysfs; [] when unreadable.

    HIP's device order is the order of the KFD topology's GPU nodes: libhsakmt
    (ROCm/ROCR-Runtime libhsakmt/src/topology.c, topology_sysfs_get_system_props) walks
    sysfs node ids from 0 up, keeping CPU nodes (gpu_id 0) and the GPU nodes whose render
    node opens; ROCr (runtime/hsa-runtime/core/runtime/amd_topology.cpp, BuildTopology) makes
    a GPU agent of each node with SIMDs in that order, and ROCR_VISIBLE_DEVICES indexes it;
    HIP (ROCm/clr rocclr/device/rocm/rocdevice.cpp) numbers the GPU agents as ROCr lists them.
    """
    base = _root(root)
    nodes = base / KFD_NODES
    found: list[tuple[int, int, dict[str, int]]] = []
    for node_id in _node_ids(nodes):
        gpu = _gpu_node(nodes, node_id)
        if gpu is not None and _render_usable(base, gpu[1]["drm_render_minor"]):
            found.append((node_id, *gpu))
    physical: dict[tuple[int, int], int] = {}
    for _, _, props in found:
        domain, bus_device, _ = _pci_parts(props)
        physical[domain, bus_device] = physical.get((domain, bus_device), 0) + 1
    seen: dict[tuple[int, int], int] = {}
    gpus = []
    for index, (node_id, gpu_id, props) in enumerate(found):
        domain, bus_device, function = _pci_parts(props)
        partitioned = physical[domain, bus_device] > 1
        partition = seen.get((domain, bus_device), 0)  # the driver adds partitions in order
        seen[domain, bus_device] = partition + 1
        bdf = _bdf(domain, bus_device, 0 if partitioned else function)
        minor = props["drm_render_minor"]
        gpus.append(
            AmdGpuNode(
                index=index,
                render_minor=minor,
                card=_card_of(base, minor),
                pci_address=bdf,
                partition=partition,
                kfd_node=node_id,
                gpu_id=gpu_id,
                compute_partition=_partition_mode(base, minor, bdf, "current_compute_partition"),
                memory_partition=_partition_mode(base, minor, bdf, "current_memory_partition"),
            )
        )
    return gpus


def _items(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return []
    if isinstance(data, dict):  # one GPU, or {"gpu_data": [...]} in some releases
        data = data.get("gpu_data", [data] if "gpu" in data else [])
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _prefixed_int(value: Any, prefix: str) -> int | None:
    text = str(value) if value is not None else ""
    text = text[len(prefix) :] if text.startswith(prefix) else text
    return int(text) if text.isdigit() else None


def parse_amd_smi_list(text: str) -> list[AmdGpuNode]:
    """Parse `amd-smi list --json` (with -e: render, card, hip_id), in HIP's order.

    Each item: gpu, bdf, uuid, kfd_id, node_id (the KFD topology node), partition_id, and with
    -e render ("renderD136"), card ("card1"), hsa_id, hip_id. amd-smi's own `gpu` index is
    used where hip_id is absent; "N/A" fields are left unknown.
    """
    gpus = []
    for pos, item in enumerate(_items(text)):
        hip = _prefixed_int(item.get("hip_id"), "")
        smi = _prefixed_int(item.get("gpu"), "")
        bdf = item.get("bdf")
        gpus.append(
            AmdGpuNode(
                index=hip if hip is not None else smi if smi is not None else pos,
                render_minor=_prefixed_int(item.get("render"), "renderD"),
                card=_prefixed_int(item.get("card"), "card"),
                pci_address=str(bdf) if bdf and bdf != "N/A" else None,
                partition=_prefixed_int(item.get("partition_id"), ""),
                kfd_node=_prefixed_int(item.get("node_id"), ""),
                gpu_id=_prefixed_int(item.get("kfd_id"), ""),
            )
        )
    return sorted(gpus, key=lambda gpu: gpu.index)


def _physical(bdf: str | None) -> str | None:
    # domain:bus:device, without the function a partition may be numbered by
    return bdf.rsplit(".", 1)[0].lower() if bdf else None


def _mode(value: Any) -> str | None:
    text = str(value).strip().upper() if value is not None else ""
    return text if text and text != "N/A" else None


def parse_amd_smi_partitions(text: str) -> dict[str, tuple[str | None, str | None]]:
    """Parse `amd-smi static --bus --partition --json`: domain:bus:device -> (compute, memory).

    The compute mode is `compute_partition` in amd-smi of ROCm 6.3 and before, and
    `accelerator_partition` since (ROCm/amdsmi amdsmi_cli/amdsmi_commands.py, static).
    """
    modes: dict[str, tuple[str | None, str | None]] = {}
    for item in _items(text):
        bus, part = item.get("bus"), item.get("partition")
        if not isinstance(bus, dict) or not isinstance(part, dict):
            continue
        key = _physical(str(bus.get("bdf") or "") or None)
        if key is None:
            continue
        compute = _mode(part.get("accelerator_partition") or part.get("compute_partition"))
        memory = _mode(part.get("memory_partition"))
        if compute or memory:
            modes[key] = (compute, memory)
    return modes


def _with_modes(
    gpus: list[AmdGpuNode], modes: dict[str, tuple[str | None, str | None]]
) -> list[AmdGpuNode]:
    merged = []
    for gpu in gpus:
        compute, memory = modes.get(_physical(gpu.pci_address) or "", (None, None))
        merged.append(
            replace(
                gpu,
                compute_partition=gpu.compute_partition or compute,
                memory_partition=gpu.memory_partition or memory,
            )
        )
    return merged


def _from_amd_smi(runner: Runner) -> list[AmdGpuNode]:
    for argv in AMD_SMI_LIST_QUERIES:
        output = runner(list(argv))
        gpus = parse_amd_smi_list(output) if output is not None else []
        if gpus:
            return gpus
    return []


def amd_gpu_topology(
    root: PathLike | None = None, runner: Runner | None = None
) -> dict[str, Any] | None:
    """The GPU map for provenance: {"source", "gpus": [...]}; None on a host without AMD GPUs.

    The KFD topology first; amd-smi's list when sysfs cannot be read. Partition modes that
    sysfs does not expose are taken from amd-smi's static output when a runner is given.
    """
    gpus, source = read_kfd_topology(root), "kfd"
    if not gpus and runner is not None:
        gpus, source = _from_amd_smi(runner), "amd-smi"
    if not gpus:
        return None
    if runner is not None and any(g.compute_partition is None for g in gpus):
        output = runner(list(AMD_SMI_PARTITION_QUERY))
        gpus = _with_modes(gpus, parse_amd_smi_partitions(output) if output else {})
    return {"source": source, "gpus": [gpu.to_dict() for gpu in gpus]}


# The modes of an MI300-class GPU: compute (accelerator) partitions, and memory (NUMA per socket)
# partitions (AMD SMI's partition guide; the amdgpu driver's current_compute_partition and
# current_memory_partition files). Which combinations a GPU accepts depends on its ASIC and
# firmware (MI300X: CPX with NPS1 or NPS4; the rest with NPS1).
COMPUTE_MODES = ("SPX", "DPX", "TPX", "QPX", "CPX")
MEMORY_MODES = ("NPS1", "NPS2", "NPS4", "NPS8")


def _summary(values: list[str | None]) -> str | None:
    known = sorted({value for value in values if value})
    return "+".join(known) if known else None  # GPUs in different modes: "CPX+SPX"


def partition_modes(
    topology: dict[str, Any] | None, gpus: tuple[int, ...] = ()
) -> tuple[str | None, str | None]:
    """(compute, memory) mode of the GPUs used (`gpus`; all when empty), e.g. ("CPX", "NPS4").

    None where no GPU's mode could be read; GPUs in different modes give "CPX+SPX".
    """
    nodes = [n for n in (topology or {}).get("gpus") or [] if isinstance(n, dict)]
    if gpus:
        nodes = [n for n in nodes if n.get("index") in gpus]
    return (
        _summary([n.get("compute_partition") for n in nodes]),
        _summary([n.get("memory_partition") for n in nodes]),
    )


def partition_label(compute: str | None, memory: str | None) -> str | None:
    """The record's `partition`: "cpx/nps4", "spx" (memory mode unknown), None (neither known)."""
    parts = [mode.lower() for mode in (compute, memory) if mode]
    return "/".join(parts) if parts else None


def topology_partition(topology: dict[str, Any] | None) -> str | None:
    """partition_label of every GPU in a gpu_topology (provenance's), e.g. "cpx/nps4"."""
    return partition_label(*partition_modes(topology))
