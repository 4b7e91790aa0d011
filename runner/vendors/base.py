"""Each vendor's container needs (devices, groups, capabilities, limits) as data in one table."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from runner.errors import PlanError, PreflightError

RENDER_NODE_BASE = 128  # the kernel's DRM render minors start at 128 (renderD128)
STACK_BYTES = 67108864  # 64 MiB, the stack limit the vendors' own docker run lines use

Exists = Callable[[str], bool]


class DriverMissing(PreflightError):
    """The host lacks the kernel driver a vendor's containers need (e.g. /dev/kfd for ROCm)."""


class GpuNotFound(PreflightError):
    """`--gpus` names GPUs this host does not have."""


@dataclass(frozen=True)
class Ulimit:
    """One resource limit of the container (`--ulimit name=soft:hard`); -1 means unlimited."""

    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class GpuRequest:
    """A docker device request for GPUs (`--gpus`): all of them, or the ids given."""

    device_ids: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ("gpu",)

    @property
    def count(self) -> int:
        return 0 if self.device_ids else -1  # the engine reads -1 as "all GPUs"


def amd_gpu_nodes(index: int) -> tuple[str, ...]:
    """The /dev/dri nodes of AMD GPU `index`: renderD<128+index> and card<index>.

    The kernel numbers DRM render minors from 128 in probe (PCI) order, so with only AMD GPUs
    bound to DRM the i-th GPU that amd-smi / rocm-smi list is renderD(128+i). A display device
    without a render node (a server's BMC VGA) does not shift the render nodes, but it can take
    card0; the card node is passed for tools such as amd-smi, HIP compute needs only the render
    node and /dev/kfd. `check_host` verifies every node exists before a container is made.
    """
    if index < 0:
        raise PlanError(f"GPU index {index} is negative")
    return (f"/dev/dri/renderD{RENDER_NODE_BASE + index}", f"/dev/dri/card{index}")


@dataclass(frozen=True)
class VendorProfile:
    """What one vendor's benchmark container needs from docker and from the host."""

    name: str
    k8s_resource: str | None  # the device plugin's resource name, for the Kubernetes executor
    # Device nodes every container of the vendor gets, then those for "all GPUs", or per GPU.
    shared_devices: tuple[str, ...] = ()
    all_gpu_devices: tuple[str, ...] = ()
    gpu_devices: Callable[[int], tuple[str, ...]] | None = None
    gpu_request: bool = False  # GPUs come through a docker device request (the NVIDIA runtime)
    gpu_env: str | None = None  # the variable that lists the GPUs the runtime should use
    driver_paths: tuple[str, ...] = ()  # host paths whose absence means the driver is missing
    driver_hint: str = ""
    group_add: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    ipc_mode: str | None = None
    ulimits: tuple[Ulimit, ...] = ()
    tunableop_dir: str | None = None  # where the image keeps PyTorch TunableOp results
    uses_gpus: bool = True
    default_shm_size: str = "16g"
    default_image: str = ""  # the catalog variant a container run uses when --image is not given

    def devices(self, gpus: tuple[int, ...]) -> tuple[str, ...]:
        """The host device nodes to pass: the shared ones plus all GPUs', or the chosen GPUs'."""
        if not gpus or self.gpu_devices is None:
            return self.shared_devices + self.all_gpu_devices
        per_gpu = tuple(node for index in gpus for node in self.gpu_devices(index))
        return self.shared_devices + per_gpu

    def device_requests(self, gpus: tuple[int, ...]) -> tuple[GpuRequest, ...]:
        if not self.gpu_request:
            return ()
        return (GpuRequest(device_ids=tuple(str(i) for i in gpus)),)

    def gpu_environment(self, gpus: tuple[int, ...]) -> dict[str, str]:
        """The GPU-selection variable, in the container's own numbering.

        Only the chosen GPUs' render nodes are inside the container, and ROCm enumerates only
        the GPUs whose render node it can open, so host GPUs 0,2 are GPUs 0,1 in there: the host
        ids would name a GPU that is not there. The host ids go on a label instead.
        """
        if self.gpu_env is None or not gpus:
            return {}
        return {self.gpu_env: ",".join(str(i) for i in range(len(gpus)))}


_GPU_ULIMITS = (Ulimit("memlock", -1, -1), Ulimit("stack", STACK_BYTES, STACK_BYTES))

PROFILES: dict[str, VendorProfile] = {
    "amd": VendorProfile(
        name="amd",
        k8s_resource="amd.com/gpu",
        shared_devices=("/dev/kfd",),  # the compute interface all GPUs share
        all_gpu_devices=("/dev/dri",),
        gpu_devices=amd_gpu_nodes,
        gpu_env="HIP_VISIBLE_DEVICES",
        driver_paths=("/dev/kfd",),
        driver_hint=(
            "the ROCm kernel driver (amdgpu with KFD) is missing on this host: /dev/kfd does "
            "not exist; install amdgpu-dkms and load the amdgpu module, or choose another --vendor"
        ),
        group_add=("video", "render"),  # the owners of /dev/kfd and /dev/dri/renderD* on hosts
        cap_add=("SYS_PTRACE",),  # ROCm's debugger API and rocprof attach to the process
        security_opt=(
            "seccomp=unconfined",
        ),  # the default profile blocks calls the HSA runtime makes
        ipc_mode="host",  # tensor-parallel workers share memory through /dev/shm and IPC handles
        ulimits=_GPU_ULIMITS,  # pinned host memory for DMA; deep stacks in compiled kernels
        tunableop_dir="/var/lib/bench/tunableop",  # PYTORCH_TUNABLEOP_FILENAME's directory
        default_image="rocm-amd",  # AMD's own tuned build, what the source documents run
    ),
    # NVIDIA_VISIBLE_DEVICES is not set: the device request makes the NVIDIA runtime expose
    # exactly the requested GPUs (and set that variable itself); a value of ours could only
    # disagree with it.
    "nvidia": VendorProfile(
        name="nvidia",
        k8s_resource="nvidia.com/gpu",
        gpu_request=True,
        ipc_mode="host",  # NCCL and tensor-parallel workers share memory through IPC
        ulimits=_GPU_ULIMITS,
        default_image="cuda-vllm-openai",
    ),
    "cpu": VendorProfile(
        name="cpu",
        k8s_resource=None,
        cap_add=("SYS_NICE",),  # vLLM's CPU backend binds threads to cores and NUMA nodes
        security_opt=("seccomp=unconfined",),  # get_mempolicy/set_mempolicy for NUMA binding
        uses_gpus=False,
        default_shm_size="4g",
        default_image="cpu-vllm-openai",
    ),
}


def profile_for(vendor: str) -> VendorProfile:
    try:
        return PROFILES[vendor]
    except KeyError:
        raise PlanError(
            f"unknown vendor {vendor!r}: choose one of {', '.join(sorted(PROFILES))}"
        ) from None


def parse_gpus(text: str) -> tuple[int, ...]:
    """Parse `--gpus 0,2` into sorted GPU ids; `all` gives () (every GPU of the host)."""
    text = text.strip()
    if text.lower() == "all":
        return ()
    ids: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item.isdigit() or not item.isascii():
            raise PlanError(
                f"--gpus: {item!r} is not a GPU id; give ids such as 0,1 (as nvidia-smi or "
                "amd-smi number them) or all"
            )
        ids.append(int(item))
    if len(set(ids)) != len(ids):
        raise PlanError(f"--gpus {text!r} names a GPU twice")
    return tuple(sorted(ids))


def check_gpu_ids(gpus: tuple[int, ...], found: int, vendor: str) -> None:
    """Refuse GPU ids beyond the `found` GPUs discovered on this host."""
    missing = [i for i in gpus if i >= found]
    if not missing:
        return
    names = ", ".join(str(i) for i in missing)
    noun = "GPU" if len(missing) == 1 else "GPUs"
    have = (
        f"no {vendor} GPUs were found on this host"
        if found == 0
        else f"this host has {found} {vendor} GPU{'s' if found != 1 else ''} (ids 0-{found - 1})"
    )
    raise GpuNotFound(f"--gpus names {noun} {names}, but {have}: choose ids that exist")


_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_cpuset(text: str) -> str:
    """Validate `--cpus` as a cpuset list such as 0-3,8 (ascending ranges, no repeats)."""
    value = text.replace(" ", "")
    if not _CPUSET.match(value) or not value.isascii():
        raise PlanError(f"--cpus {text!r} is not a CPU list: give cores and ranges such as 0-3,8")
    seen: set[int] = set()
    for part in value.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first > last:
            raise PlanError(f"--cpus {text!r}: the range {part} runs backwards")
        cores = set(range(first, last + 1))
        if cores & seen:
            raise PlanError(f"--cpus {text!r} names a core twice")
        seen |= cores
    return value


def check_host(
    profile: VendorProfile, gpus: tuple[int, ...], exists: Exists = os.path.exists
) -> None:
    """Check the device nodes a container of this vendor would get exist on this host."""
    for path in profile.driver_paths:
        if not exists(path):
            raise DriverMissing(profile.driver_hint)
    for path in profile.devices(gpus):
        if not exists(path):
            raise GpuNotFound(
                f"{path} does not exist on this host: --gpus {','.join(map(str, gpus)) or 'all'} "
                f"needs it for its {profile.name} GPUs: check the ids against the vendor's tool"
            )
