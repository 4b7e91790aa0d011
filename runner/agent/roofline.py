"""The served model's weight bytes per GPU, recorded beside each serving point for the roofline
(results/model/roofline.py: achieved memory bandwidth of decode-heavy points against the GPU's
peak). Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

_WEIGHTS = ("*.safetensors", "*.bin", "*.pt")
_TP = re.compile(r"^(--tensor-parallel-size|-tp)(=(\d+))?$")


def weight_bytes_per_gpu(argv: Sequence[str]) -> float | None:
    """The bytes of the served model's weight files over its tensor-parallel size; None for a
    model that is not a local directory (a hub id the agent does not look up)."""
    if len(argv) < 3 or argv[1] != "serve":
        return None
    model = Path(argv[2])
    if not model.is_dir():
        return None
    total = 0
    for pattern in _WEIGHTS:
        total = sum(p.stat().st_size for p in model.glob(pattern))
        if total:
            break
    if not total:
        return None
    tp = 1
    for index, arg in enumerate(argv):
        match = _TP.match(arg)
        if match and match.group(3):
            tp = int(match.group(3))
        elif match and index + 1 < len(argv) and argv[index + 1].isdigit():
            tp = int(argv[index + 1])
    return total / tp
