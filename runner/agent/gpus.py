"""GPU discovery through the vendors' own tools (nvidia-smi, amd-smi, rocm-smi), as data."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

QUERY_TIMEOUT_S = 20


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    vendor: str
    driver: str | None = None
    memory_mib: int | None = None
    bus_id: str | None = None
    uuid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Runner = Callable[[list[str]], str | None]


def run_tool(argv: list[str]) -> str | None:
    """Run a discovery tool; None when it is absent, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    digits = "".join(ch for ch in str(text).split(".")[0] if ch.isdigit())
    return int(digits) if digits else None


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Parse `nvidia-smi --query-gpu=index,name,driver_version,memory.total,pci.bus_id,uuid
    --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6 or not fields[0].isdigit():
            continue
        gpus.append(
            Gpu(
                index=int(fields[0]),
                name=fields[1],
                vendor="nvidia",
                driver=fields[2] or None,
                memory_mib=_int(fields[3]),
                bus_id=fields[4] or None,
                uuid=fields[5] or None,
            )
        )
    return gpus


NVIDIA_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,name,driver_version,memory.total,pci.bus_id,uuid",
    "--format=csv,noheader,nounits",
]


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
        memory = _int(size.get("value") if isinstance(size, dict) else size)
        gpus.append(
            Gpu(
                index=_int(str(item.get("gpu", pos))) or pos,
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
                index=_int(key[4:]) or 0,
                name=str(name or "AMD GPU"),
                vendor="amd",
                driver=str(driver) if driver else None,
                bus_id=card.get("PCI Bus"),
            )
        )
    return sorted(gpus, key=lambda g: g.index)


AMD_SMI_QUERY = ["amd-smi", "static", "--asic", "--driver", "--vram", "--bus", "--json"]
ROCM_SMI_QUERY = ["rocm-smi", "--showproductname", "--showdriverversion", "--showbus", "--json"]

# Vendor -> the queries that discover its GPUs, tried in order, with their parsers.
DISCOVERY: dict[str, list[tuple[list[str], Callable[[str], list[Gpu]]]]] = {
    "nvidia": [(NVIDIA_QUERY, parse_nvidia_smi)],
    "amd": [(AMD_SMI_QUERY, parse_amd_smi_static), (ROCM_SMI_QUERY, parse_rocm_smi)],
    "cpu": [],
}


def discover(vendor: str, runner: Runner = run_tool) -> list[Gpu]:
    """The GPUs of one vendor on this host (empty when its tools are absent or see none)."""
    for argv, parse in DISCOVERY.get(vendor, []):
        output = runner(argv)
        if output is None:
            continue
        gpus = parse(output)
        if gpus:
            return gpus
    return []


def detect_vendor(runner: Runner = run_tool) -> str:
    """nvidia if nvidia-smi sees a GPU, then amd if amd-smi or rocm-smi does, else cpu."""
    for vendor in ("nvidia", "amd"):
        if discover(vendor, runner):
            return vendor
    return "cpu"
