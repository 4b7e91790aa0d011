"""What a vendor is (standard library only: the agent imports it inside any vLLM image)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

QUERY_TIMEOUT_S = 20
STACK_BYTES = 67108864  # 64 MiB, the stack limit the vendors' own docker run lines use


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    vendor: str
    driver: str | None = None
    memory_mib: int | None = None
    bus_id: str | None = None
    uuid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Runner = Callable[[list[str]], str | None]
Parser = Callable[[str], list[Gpu]]


def run_tool(argv: list[str]) -> str | None:
    """Run a discovery tool; None when it is absent, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def leading_int(text: str | None) -> int | None:
    """The digits before any decimal point of a tool's field ("81559 MiB" -> 81559), or None."""
    if text is None:
        return None
    digits = "".join(ch for ch in str(text).split(".")[0] if ch.isdigit())
    return int(digits) if digits else None


@dataclass(frozen=True)
class Query:
    """One discovery command of a vendor's tool and the parser of its output."""

    argv: tuple[str, ...]
    parse: Parser


@dataclass(frozen=True)
class Ulimit:
    """One resource limit of the container (`--ulimit name=soft:hard`); -1 means unlimited."""

    name: str
    soft: int
    hard: int


GPU_ULIMITS = (Ulimit("memlock", -1, -1), Ulimit("stack", STACK_BYTES, STACK_BYTES))


@dataclass(frozen=True)
class GpuRequest:
    """A docker device request for GPUs (`--gpus`): all of them, or the ids given."""

    device_ids: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ("gpu",)

    @property
    def count(self) -> int:
        return 0 if self.device_ids else -1  # the engine reads -1 as "all GPUs"


@dataclass(frozen=True)
class VendorProfile:
    """Everything about one vendor: its GPUs' discovery, its containers, its images."""

    name: str
    k8s_resource: str | None  # the device plugin's resource name, for the Kubernetes executor
    template_family: str  # templates/dockerfile/<family>.Dockerfile.j2, templates/entrypoint/...
    # The catalog variant a container run uses when --image is not given; its `env` in
    # images/<variant>.yaml is the vendor's tuned environment.
    default_image: str
    # Discovery commands, tried in order until one finds GPUs; none means the vendor has no GPUs.
    queries: tuple[Query, ...] = ()
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
    # Host settings the vendor's guides want off: NUMA auto-balancing's page migrations stall
    # GPU transfers on ROCm (warned and recorded; --strict-host refuses).
    numa_balancing_off: bool = False
    # The host's GPU index -> device node map for provenance ({"source", "gpus": [...]}), if
    # the vendor numbers GPUs in a way worth recording (AMD: render nodes and partitions).
    topology: Callable[[Runner], dict[str, Any] | None] | None = None

    @property
    def tools(self) -> str:
        """The discovery tools, for messages: "amd-smi / rocm-smi"."""
        return " / ".join(query.argv[0] for query in self.queries)

    def discover(self, runner: Runner = run_tool) -> list[Gpu]:
        """This vendor's GPUs on this host (empty when its tools are absent or see none)."""
        for query in self.queries:
            output = runner(list(query.argv))
            if output is None:
                continue
            gpus = query.parse(output)
            if gpus:
                return gpus
        return []

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
