"""CPU: no GPUs and no discovery tool (the fallback of detection); vLLM's CPU backend images."""

from __future__ import annotations

from runner.vendors.base import VendorProfile

CPU = VendorProfile(
    name="cpu",
    k8s_resource=None,
    template_family="cpu",
    default_image="cpu-vllm-openai",
    cap_add=("SYS_NICE",),  # vLLM's CPU backend binds threads to cores and NUMA nodes
    security_opt=("seccomp=unconfined",),  # get_mempolicy/set_mempolicy for NUMA binding
    uses_gpus=False,
    default_shm_size="4g",
)
