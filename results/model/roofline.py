"""How close a decode-heavy point came to the GPU's memory bandwidth: a roofline's one number.

Each decode step reads every weight once (batched sequences share the read), so a point's
achieved memory bandwidth is at least

    weight bytes per GPU x decode steps per second,  steps/s = 1000 / TPOT mean (ms),

plus the KV-cache reads, which this lower bound leaves out unless vLLM reports its own estimate
of bytes read (vllm:estimated_read_bytes_per_gpu_total, recorded as server_read_bytes_per_gpu;
then that over the benchmark's duration is used instead). The agent records the weight bytes
(runner/agent/roofline.py); the fraction is the bound over the GPU's peak memory bandwidth from
PEAK_BANDWIDTH, each entry with its source.

Decode-heavy: the point generated at least as many tokens as it read (output >= input tokens);
elsewhere prefill dominates and the bound says little.
"""

from __future__ import annotations

# GPU model -> (peak memory bandwidth in GB/s, source). Matched on the name a driver reports.
PEAK_BANDWIDTH: dict[str, tuple[float, str]] = {
    "H200": (4800.0, "https://www.nvidia.com/en-us/data-center/h200/ (H200 SXM: 4.8 TB/s)"),
    "H100 SXM": (3350.0, "https://www.nvidia.com/en-us/data-center/h100/ (H100 SXM: 3.35 TB/s)"),
    "H100 NVL": (3900.0, "https://www.nvidia.com/en-us/data-center/h100/ (H100 NVL: 3.9 TB/s)"),
    "H100 PCIe": (2000.0, "https://www.nvidia.com/en-us/data-center/h100/ (H100 PCIe: 2 TB/s)"),
    "A100 80GB": (
        2039.0,
        "https://www.nvidia.com/en-us/data-center/a100/ (A100 80GB SXM: 2,039 GB/s)",
    ),
    "A100 40GB": (
        1555.0,
        "https://www.nvidia.com/en-us/data-center/a100/ (A100 40GB PCIe: 1,555 GB/s)",
    ),
    "L40S": (864.0, "https://www.nvidia.com/en-us/data-center/l40s/ (L40S: 864 GB/s)"),
    "MI300X": (
        5300.0,
        "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html (5.3 TB/s)",
    ),
    "MI325X": (
        6000.0,
        "https://www.amd.com/en/products/accelerators/instinct/mi300/mi325x.html (6 TB/s)",
    ),
}


def peak_bandwidth(gpu_model: str | None) -> tuple[float, str] | None:
    """The table's entry for a GPU name such as 'NVIDIA H100 80GB HBM3' (H100 SXM), or None."""
    if not gpu_model:
        return None
    name = gpu_model.upper()
    if "H100" in name:
        key = "H100 NVL" if "NVL" in name else "H100 PCIe" if "PCIE" in name else "H100 SXM"
        return PEAK_BANDWIDTH[key]
    if "A100" in name:
        return PEAK_BANDWIDTH["A100 40GB" if "40GB" in name else "A100 80GB"]
    for key in ("H200", "L40S", "MI325X", "MI300X"):
        if key in name:
            return PEAK_BANDWIDTH[key]
    return None


def achieved_bandwidth(metrics: dict[str, float], gpu_model: str | None) -> dict[str, float]:
    """achieved_bandwidth_gbs and bandwidth_fraction for a decode-heavy point, else {}."""
    inputs, outputs = metrics.get("total_input_tokens"), metrics.get("total_output_tokens")
    if inputs is None or outputs is None or outputs < inputs:
        return {}
    read, duration = metrics.get("server_read_bytes_per_gpu"), metrics.get("duration_s")
    if read and duration:
        achieved = read / duration / 1e9
    else:
        weights, tpot = metrics.get("model_weight_bytes_per_gpu"), metrics.get("tpot_mean_ms")
        if not weights or not tpot:
            return {}
        achieved = weights * (1000.0 / tpot) / 1e9
    found = {"achieved_bandwidth_gbs": achieved}
    peak = peak_bandwidth(gpu_model)
    if peak is not None:
        found["bandwidth_fraction"] = achieved / peak[0]
    return found
