"""Which CPUs each replica runs on: its GPUs' NUMA node, or an even share (stdlib only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def parse_cpulist(text: str) -> list[int]:
    """A kernel CPU list ('0-3,8,10-11') as sorted ids; [] for an empty or unreadable one."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            cpus.update(range(int(low), int(high or low) + 1))
        except ValueError:
            return []
    return sorted(cpus)


def format_cpulist(cpus: Sequence[int]) -> str:
    """Sorted ids as a kernel CPU list: [0, 1, 2, 5] -> '0-2,5'."""
    parts: list[str] = []
    ordered = sorted(set(cpus))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity: a container's --cpus, taskset, ...)."""
    return sorted(os.sched_getaffinity(0))


def numa_nodes(root: Path = Path("/")) -> dict[int, list[int]]:
    """Each NUMA node's CPUs, from /sys/devices/system/node/node*/cpulist."""
    nodes: dict[int, list[int]] = {}
    base = root / "sys/devices/system/node"
    for entry in sorted(base.glob("node[0-9]*")):
        try:
            nodes[int(entry.name[4:])] = parse_cpulist((entry / "cpulist").read_text())
        except (OSError, ValueError):
            continue
    return nodes


def pci_address(bus_id: str) -> str:
    """nvidia-smi's '00000000:17:00.0' or amd-smi's '0000:17:00.0' as sysfs names it."""
    domain, _, rest = bus_id.strip().lower().partition(":")
    return f"{domain[-4:]:0>4}:{rest}" if rest else bus_id.lower()


def gpu_numa_node(bus_id: str | None, root: Path = Path("/")) -> int | None:
    """The NUMA node of the PCI device; None when unknown (-1, no sysfs entry)."""
    if not bus_id:
        return None
    path = root / "sys/bus/pci/devices" / pci_address(bus_id) / "numa_node"
    try:
        node = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None


def split_evenly(cpus: Sequence[int], count: int) -> list[list[int]]:
    """`count` disjoint, contiguous shares of cpus, as even as can be (the first ones larger)."""
    if count < 1 or len(cpus) < count:
        raise ValueError(f"{len(cpus)} CPUs cannot give {count} replicas one each")
    size, extra = divmod(len(cpus), count)
    shares: list[list[int]] = []
    start = 0
    for k in range(count):
        end = start + size + (1 if k < extra else 0)
        shares.append(list(cpus[start:end]))
        start = end
    return shares


def gpu_set_cpus(
    bus_ids: Sequence[str | None], allowed: Sequence[int], root: Path = Path("/")
) -> list[int] | None:
    """The allowed CPUs of the NUMA nodes of a replica's GPUs; None when no node is known."""
    nodes = numa_nodes(root)
    wanted = {gpu_numa_node(bus, root) for bus in bus_ids}
    cpus = {cpu for node in wanted if node is not None for cpu in nodes.get(node, [])}
    pinned = sorted(cpus & set(allowed))
    return pinned or None


def replica_cpus(
    gpu_bus_ids: Sequence[Sequence[str | None]],
    allowed: Sequence[int],
    *,
    uses_gpus: bool,
    root: Path = Path("/"),
) -> list[list[int] | None]:
    """Each replica's CPUs: its GPUs' NUMA node (GPU vendors), else an even share of `allowed`."""
    if not uses_gpus:
        return list(split_evenly(sorted(allowed), len(gpu_bus_ids)))
    return [gpu_set_cpus(buses, allowed, root) for buses in gpu_bus_ids]
