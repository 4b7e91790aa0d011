"""Host kernel settings that GPU benchmarks depend on, read from /proc (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path

NUMA_BALANCING = "proc/sys/kernel/numa_balancing"


def numa_balancing_mode(root: str | os.PathLike[str] = "/") -> int | None:
    """The kernel's NUMA auto-balancing mode: 0 off, 1 on, 2 memory tiering, 3 both.

    None where the file is absent or unreadable: a kernel built without NUMA balancing, or
    not Linux.
    """
    try:
        text = (Path(root) / NUMA_BALANCING).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def numa_balancing(root: str | os.PathLike[str] = "/") -> bool | None:
    """Whether NUMA auto-balancing is on (AMD's guides want it off: its page migrations stall
    GPU transfers); None when the host does not say."""
    mode = numa_balancing_mode(root)
    return None if mode is None else mode != 0
