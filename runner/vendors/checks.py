"""The --gpus and --cpus flags, and the host's device nodes, checked against a vendor."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from runner.errors import PlanError, PreflightError
from runner.vendors.amd_topology import (
    COMPUTE_MODES,
    MEMORY_MODES,
    partition_label,
    partition_modes,
)
from runner.vendors.base import VendorProfile
from runner.vendors.registry import numbering_tools

Exists = Callable[[str], bool]


class DriverMissing(PreflightError):
    """The host lacks the kernel driver a vendor's containers need (e.g. /dev/kfd for ROCm)."""


class GpuNotFound(PreflightError):
    """`--gpus` names GPUs this host does not have."""


def parse_gpus(text: str) -> tuple[int, ...]:
    """Parse `--gpus 0,2` into sorted GPU ids; `all` gives () (every GPU of the host)."""
    text = text.strip()
    if text.lower() == "all":
        return ()
    ids: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item.isdigit() or not item.isascii():
            raise PlanError(
                f"--gpus: {item!r} is not a GPU id; give ids such as 0,1 (as "
                f"{numbering_tools()} number them) or all"
            )
        ids.append(int(item))
    if len(set(ids)) != len(ids):
        raise PlanError(f"--gpus {text!r} names a GPU twice")
    return tuple(sorted(ids))


def check_gpu_ids(gpus: tuple[int, ...], found: int, vendor: str) -> None:
    """Refuse GPU ids beyond the `found` GPUs discovered on this host."""
    missing = [i for i in gpus if i >= found]
    if not missing:
        return
    names = ", ".join(str(i) for i in missing)
    noun = "GPU" if len(missing) == 1 else "GPUs"
    have = (
        f"no {vendor} GPUs were found on this host"
        if found == 0
        else f"this host has {found} {vendor} GPU{'s' if found != 1 else ''} (ids 0-{found - 1})"
    )
    raise GpuNotFound(f"--gpus names {noun} {names}, but {have}: choose ids that exist")


_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_cpuset(text: str) -> str:
    """Validate `--cpus` as a cpuset list such as 0-3,8 (ascending ranges, no repeats)."""
    value = text.replace(" ", "")
    if not _CPUSET.match(value) or not value.isascii():
        raise PlanError(f"--cpus {text!r} is not a CPU list: give cores and ranges such as 0-3,8")
    seen: set[int] = set()
    for part in value.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first > last:
            raise PlanError(f"--cpus {text!r}: the range {part} runs backwards")
        cores = set(range(first, last + 1))
        if cores & seen:
            raise PlanError(f"--cpus {text!r} names a core twice")
        seen |= cores
    return value


def check_host(
    profile: VendorProfile, gpus: tuple[int, ...], exists: Exists = os.path.exists
) -> None:
    """Check the device nodes a container of this vendor would get exist on this host."""
    for path in profile.driver_paths:
        if not exists(path):
            raise DriverMissing(profile.driver_hint)
    for path in profile.devices(gpus):
        if not exists(path):
            raise GpuNotFound(
                f"{path} does not exist on this host: --gpus {','.join(map(str, gpus)) or 'all'} "
                f"needs it for its {profile.name} GPUs: check the ids against the vendor's tool"
            )


class PartitionMismatch(PlanError):
    """The GPUs are not in the partition mode `--partition` expects (exit 2, nothing started)."""


def parse_partition(text: str) -> str:
    """`--partition cpx`, `cpx/nps4` or `nps4` as the record spells it (lower case)."""
    compute: str | None = None
    memory: str | None = None
    for part in (p.strip().upper() for p in text.split("/")):
        if part in COMPUTE_MODES and compute is None:
            compute = part
        elif part in MEMORY_MODES and memory is None:
            memory = part
        else:
            raise PlanError(
                f"--partition {text!r}: give a compute mode ({', '.join(COMPUTE_MODES).lower()}), "
                f"a memory mode ({', '.join(MEMORY_MODES).lower()}) or both, as in cpx/nps4"
            )
    label = partition_label(compute, memory)
    assert label is not None  # text.split gives at least one part, each one a mode
    return label


def set_partition_commands(expected: str) -> str:
    """The amd-smi commands (root; they reset the GPUs) that put a node in `expected`'s modes."""
    modes = expected.upper().split("/")
    if modes[-1] == "NPS1":
        modes.reverse()  # NPS1 before SPX: MI300X leaves NPS4 only for NPS1 (AMD's guide)
    steps = []  # and CPX before NPS4: MI300X takes NPS4 only in CPX
    for mode in modes:
        flag = "--compute-partition" if mode in COMPUTE_MODES else "--memory-partition"
        steps.append(f"`sudo amd-smi set {flag} {mode}`")
    return " then ".join(steps)


def check_partition(
    expected: str, topology: dict[str, Any] | None, gpus: tuple[int, ...] = ()
) -> None:
    """Refuse GPUs not in the `expected` partition modes ("cpx/nps4"); never change them.

    `topology` is gpu_topology's (the KFD topology, with amd-smi's modes where sysfs has none);
    `gpus` the ids the run uses (all when empty). Changing a mode needs root and resets the
    GPUs, which a benchmark must not do to a shared node: the line says how, and nothing starts.
    """
    compute, memory = partition_modes(topology, gpus)
    found = partition_label(compute, memory)
    want = expected.split("/")
    have = (found or "").split("/") if found else []
    missing = [mode for mode in want if mode not in have]
    if not missing:
        return
    which = f"GPUs {','.join(map(str, gpus))}" if gpus else "this node's AMD GPUs"
    if not found:
        raise PartitionMismatch(
            f"--partition {expected}: the partition modes of {which} could not be read "
            "(/sys/class/drm/card*/device/current_compute_partition, amd-smi static "
            "--partition): run on the AMD node itself, with amd-smi on PATH, or drop --partition"
        )
    raise PartitionMismatch(
        f"--partition {expected}: {which} are in {found.upper()}; bench-run never changes it "
        f"(root, and it resets the GPUs): when the GPUs are idle run "
        f"{set_partition_commands(expected)}, or drop --partition"
    )
