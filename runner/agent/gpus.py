"""GPU discovery for the agent and the CLI: the registered vendors' tools (runner.vendors)."""

from __future__ import annotations

from ..vendors import Gpu, Runner, detect_vendor, discover, run_tool

__all__ = ["Gpu", "Runner", "detect_vendor", "discover", "run_tool"]
