"""NVIDIA: GPUs found by nvidia-smi, handed to containers by the NVIDIA runtime; CUDA images."""

from __future__ import annotations

from runner.vendors.base import GPU_ULIMITS, Gpu, Query, VendorProfile, leading_int

NVIDIA_QUERY = (
    "nvidia-smi",
    "--query-gpu=index,name,driver_version,memory.total,pci.bus_id,uuid",
    "--format=csv,noheader,nounits",
)


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
                memory_mib=leading_int(fields[3]),
                bus_id=fields[4] or None,
                uuid=fields[5] or None,
            )
        )
    return gpus


# NVIDIA_VISIBLE_DEVICES is not set: the device request makes the NVIDIA runtime expose exactly
# the requested GPUs (and set that variable itself); a value of ours could only disagree with it.
NVIDIA = VendorProfile(
    name="nvidia",
    k8s_resource="nvidia.com/gpu",
    template_family="cuda",
    default_image="cuda-vllm-openai",
    queries=(Query(NVIDIA_QUERY, parse_nvidia_smi),),
    gpu_request=True,
    ipc_mode="host",  # NCCL and tensor-parallel workers share memory through IPC
    ulimits=GPU_ULIMITS,
)
