"""The registered vendors, in detection order: lookup, GPU discovery and vendor detection."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from runner.errors import PlanError, PreflightError
from runner.vendors.base import Gpu, Runner, VendorProfile, run_tool

_VENDORS: dict[str, VendorProfile] = {}
PROFILES: Mapping[str, VendorProfile] = MappingProxyType(_VENDORS)


def register(vendor: VendorProfile) -> VendorProfile:
    """Add a vendor; detection tries the vendors in the order they were registered."""
    if vendor.name in _VENDORS:
        raise ValueError(f"vendor {vendor.name!r} is registered twice")
    _VENDORS[vendor.name] = vendor
    return vendor


def unregister(name: str) -> None:
    """Remove a vendor (a plugin unloaded, a test's fake vendor); unknown names are ignored."""
    _VENDORS.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered vendors' names, in detection order."""
    return tuple(_VENDORS)


def _choice(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def profile_for(vendor: str) -> VendorProfile:
    """The registered vendor called `vendor`; one PlanError line listing them otherwise."""
    try:
        return _VENDORS[vendor]
    except KeyError:
        raise PlanError(f"unknown vendor {vendor!r}: choose one of {', '.join(names())}") from None


def discover(vendor: str, runner: Runner = run_tool) -> list[Gpu]:
    """The GPUs of one vendor on this host (empty when its tools are absent or see none).

    An unknown vendor finds none: the agent may run a job planned by a newer runner.
    """
    found = _VENDORS.get(vendor)
    return found.discover(runner) if found is not None else []


def gpu_topology(vendor: str, runner: Runner = run_tool) -> dict[str, Any] | None:
    """How the vendor's GPUs map to this host's device nodes (None: not recorded or no GPUs)."""
    found = _VENDORS.get(vendor)
    return found.topology(runner) if found is not None and found.topology is not None else None


def _fallback() -> VendorProfile:
    for vendor in _VENDORS.values():
        if not vendor.uses_gpus:
            return vendor
    raise PreflightError(
        "no GPU was found and no registered vendor runs without one: give --vendor"
    )


def detect_vendor(runner: Runner = run_tool) -> str:
    """The first vendor whose tools see a GPU (nvidia-smi, then amd-smi / rocm-smi), else cpu."""
    for vendor in _VENDORS.values():
        if vendor.queries and vendor.discover(runner):
            return vendor.name
    return _fallback().name


def vendor_help() -> str:
    """`--vendor`'s help: "nvidia, amd or cpu (default: detect with nvidia-smi, then ...)"."""
    tools = ", then ".join(vendor.tools for vendor in _VENDORS.values() if vendor.queries)
    default = f"detect with {tools}, else {_fallback().name}" if tools else _fallback().name
    return f"{_choice(names())} (default: {default})"


def numbering_tools() -> str:
    """The tools whose GPU numbering --gpus follows, for messages: "nvidia-smi or amd-smi"."""
    return _choice(tuple(v.queries[0].argv[0] for v in _VENDORS.values() if v.queries))
