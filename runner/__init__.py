"""Plan, run and collect vLLM inference benchmarks on NVIDIA, AMD and CPU hosts."""

__version__ = "0.1.0"
