"""The vendors (one module each), registered here in detection order; the public names."""

from __future__ import annotations

from runner.vendors.amd import AMD, amd_gpu_nodes
from runner.vendors.amd_topology import (
    AmdGpuNode,
    amd_gpu_topology,
    partition_modes,
    read_kfd_topology,
    topology_partition,
)
from runner.vendors.base import Gpu, GpuRequest, Query, Runner, Ulimit, VendorProfile, run_tool
from runner.vendors.checks import (
    DriverMissing,
    GpuNotFound,
    PartitionMismatch,
    check_gpu_ids,
    check_host,
    check_partition,
    parse_cpuset,
    parse_gpus,
    parse_partition,
)
from runner.vendors.cpu import CPU
from runner.vendors.host import numa_balancing, numa_balancing_mode
from runner.vendors.nvidia import NVIDIA
from runner.vendors.registry import (
    PROFILES,
    detect_vendor,
    discover,
    gpu_topology,
    names,
    profile_for,
    register,
    unregister,
    vendor_help,
)

# Detection tries them in this order; the first that needs no GPU (cpu) is the fallback.
register(NVIDIA)
register(AMD)
register(CPU)

__all__ = [
    "PROFILES",
    "AmdGpuNode",
    "DriverMissing",
    "Gpu",
    "GpuNotFound",
    "GpuRequest",
    "PartitionMismatch",
    "Query",
    "Runner",
    "Ulimit",
    "VendorProfile",
    "amd_gpu_nodes",
    "amd_gpu_topology",
    "check_gpu_ids",
    "check_host",
    "check_partition",
    "detect_vendor",
    "discover",
    "gpu_topology",
    "names",
    "numa_balancing",
    "numa_balancing_mode",
    "parse_cpuset",
    "parse_gpus",
    "parse_partition",
    "partition_modes",
    "profile_for",
    "read_kfd_topology",
    "register",
    "run_tool",
    "topology_partition",
    "unregister",
    "vendor_help",
]
