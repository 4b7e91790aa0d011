"""Copied-sysfs trees of AMD hosts (KFD topology, DRM devices, PCI links, /dev/dri) for tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The PCI buses of an 8 x MI300X platform's GPUs, as `lspci` lists them
MI300X_BUSES = (0x05, 0x26, 0x46, 0x65, 0x85, 0xA6, 0xC6, 0xE5)
NODES = "sys/class/kfd/kfd/topology/nodes"
SLOTS_PER_GPU = 8  # the driver makes a DRM device per possible partition, in SPX mode too


@dataclass(frozen=True)
class Host:
    """What the tree holds: physical GPUs, partitions each, a BMC's card0, partition modes."""

    gpus: int = 8
    partitions: int = 1  # KFD nodes per physical GPU: 1 in SPX, 8 in CPX on an MI300X
    bmc: bool = False  # an ast VGA device: card0 and no render node
    compute: str | None = "SPX"
    memory: str | None = "NPS1"
    dev: bool = True  # /dev/dri with every node (a host); False: a sysfs copy alone
    cpu_nodes: int = 2


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _drm_device(root: Path, device: Path, card: int, minor: int | None) -> None:
    """A DRM device's card (and render) node as sysfs lays them out, with class links."""
    names = [f"card{card}"] + ([f"renderD{minor}"] if minor is not None else [])
    for name in names:
        node = device / "drm" / name
        node.mkdir(parents=True)
        (node / "device").symlink_to(Path("../.."))  # drm/<node>/device -> the device
        link = root / "sys/class/drm" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(node)
        if (root / "dev/dri").is_dir():
            (root / "dev/dri" / name).touch()


def _kfd_node(root: Path, node: int, gpu_id: int, props: dict[str, int]) -> None:
    _write(root / NODES / str(node) / "gpu_id", f"{gpu_id}\n")
    text = "".join(f"{key} {value}\n" for key, value in props.items())
    _write(root / NODES / str(node) / "properties", text)


def build(root: Path, host: Host = Host()) -> Path:
    """Write the tree under `root`; GPU g's slot s is renderD(128+8g+s), card(8g+s) (+1: BMC)."""
    if host.dev:
        (root / "dev/dri").mkdir(parents=True)
        (root / "dev/kfd").touch()
    if host.bmc:
        _drm_device(root, root / "sys/devices/pci0000:00/0000:02:00.0", 0, None)
    for node in range(host.cpu_nodes):
        _kfd_node(root, node, 0, {"cpu_cores_count": 96, "simd_count": 0})
    node = host.cpu_nodes
    for gpu in range(host.gpus):
        bdf = f"0000:{MI300X_BUSES[gpu]:02x}:00.0"
        pci = root / "sys/devices/pci0000:00" / bdf
        for slot in range(SLOTS_PER_GPU):
            card, minor = SLOTS_PER_GPU * gpu + slot + host.bmc, 128 + SLOTS_PER_GPU * gpu + slot
            xcp = root / f"sys/devices/platform/amdgpu_xcp_{gpu * (SLOTS_PER_GPU - 1) + slot - 1}"
            _drm_device(root, pci if slot == 0 else xcp, card, minor)
        for name, value in (("compute", host.compute), ("memory", host.memory)):
            if value is not None:
                _write(pci / f"current_{name}_partition", f"{value}\n")
        link = root / "sys/bus/pci/devices" / bdf
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(pci)
        for part in range(host.partitions):
            location = MI300X_BUSES[gpu] << 8 | (part if host.partitions > 1 else 0)
            props = {
                "cpu_cores_count": 0,
                "simd_count": 1216 // host.partitions,
                "location_id": location,
                "domain": 0,
                "drm_render_minor": 128 + SLOTS_PER_GPU * gpu + part,
            }
            _kfd_node(root, node, 1000 + node, props)
            node += 1
    return root
