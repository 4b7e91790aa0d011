"""What the user asked for, typed: bench-run's flags (later a plan file's keys) as one object."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from runner.agent.pod_contract import DEFAULT_HOLD_S
from runner.errors import PlanError
from runner.models import DEFAULT_EXCLUDE

EXECUTORS = ("auto", "local", "docker", "k8s")
# Flags that only mean something for a container; with --executor auto they choose docker.
CONTAINER_FLAGS = (
    "image", "gpus", "cpus", "shm_size", "privileged", "keep",
    "base_image", "wheelhouse", "pip_extra_index_url",
)  # fmt: skip
# Container flags that make no sense for the local executor (it refuses them).
_LOCAL_REFUSES = ("gpus", "cpus", "shm_size", "base_image", "wheelhouse", "pip_extra_index_url")
# --output-len when not given; sharegpt then keeps its answers' own lengths
DEFAULT_OUTPUT_LEN = 128


def flag_name(field_name: str) -> str:
    """The command-line spelling of a request field: `shm_size` -> `--shm-size`."""
    return f"--{field_name.replace('_', '-')}"


@dataclass(frozen=True)
class RunRequest:
    """bench-run's flags, field for flag (`--kv-cache-dtype` is `kv_cache_dtype`), unvalidated.

    `check()` refuses what can be refused from the request alone; building the plan
    (runner.entry.prepare) validates the rest, once.
    """

    model: str
    vendor: str | None = None
    # the model on the hub
    revision: str | None = None
    hf_include: tuple[str, ...] = ()
    hf_exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    no_download: bool = False
    # what to measure
    scenario: tuple[str, ...] = ()
    qps: str = "1,3,5,7,9"
    seconds_per_point: float = 120.0
    num_prompts: int | None = None
    max_concurrency: int | None = None
    dataset: str = "random"
    dataset_path: str | None = None
    endpoint: str = "completions"
    prefix_len: int | None = None
    skip_chat_template: bool = False
    input_len: int = 1024
    output_len: int | None = None  # DEFAULT_OUTPUT_LEN, or sharegpt's own lengths
    percentiles: str = "50,90,99"
    slo: str | None = None  # "ttft_p99_ms=500,tpot_p99_ms=50"
    find_max_qps: bool = False
    qps_tolerance: str = "5%"
    client_mode: str = "persistent"
    batch_size: int = 8
    iters: int = 10
    warmup_iters: int = 3
    # --scenario accuracy: lm-eval's tasks against the server (runner/scenarios/accuracy.py)
    tasks: str | None = None  # "mmlu_pro,gsm8k"
    limit: int | None = None
    num_fewshot: int | None = None
    task_dir: Path | None = None  # lm-eval's --include_path: local task YAMLs
    # the engine
    tp: int = 1
    # N servers on disjoint GPU sets of --tp GPUs ("auto": GPUs / tp), the load spread over them
    replicas: str = "1"
    spread: str | None = None  # router (default with replicas), dp, clients
    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    chunked_prefill: bool | None = None
    prefix_caching: bool | None = None
    engine_arg: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    # where it runs
    executor: str = "auto"
    pull: str = "missing"
    gpus: str | None = None
    cpus: str | None = None
    shm_size: str | None = None
    privileged: bool = False
    keep: bool = False
    base_image: str | None = None
    wheelhouse: Path | None = None
    pip_extra_index_url: str | None = None
    image: str | None = None
    out_dir: Path = Path("runs")
    vllm_path: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    server_timeout: float = 1200.0
    point_timeout: float = 3600.0
    strict_host: bool = False
    # AMD: the partition modes the GPUs must be in ("cpx", "cpx/nps4"); checked, never set
    partition: str | None = None
    # Kubernetes (bench-run manifests; runner/executors/render/k8s.py): the whole plan's but
    # gpu_product, which a plan matrix may vary
    namespace: str = "default"
    sweep_id: str | None = None
    node_selector: tuple[str, ...] = ()
    gpu_product: str | None = None
    toleration: tuple[str, ...] = ()
    model_pvc: str | None = None
    model_pvc_root: Path | None = None
    hf_token_secret: str | None = None
    parallel: int = 1
    supplemental_group: tuple[str, ...] = ()
    active_deadline: int | None = None
    ttl_after_finished: int = 86400
    backoff_per_index: int = 1
    max_failed_indexes: int | None = None
    hold_s: int = DEFAULT_HOLD_S
    # Kubernetes, bench-run's side (runner/executors/k8s.py): reaching and following a cluster
    context: str | None = None  # the kubeconfig context (default: the current one)
    detach: bool = False  # submit and return; `bench-run k8s status|collect|cancel` later
    pending_timeout: float = 600.0  # seconds a pod may stay Pending for a reason before failing
    dry_run: bool = False

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RunRequest:
        """The request from option values keyed by field name; sequences become tuples."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise PlanError(f"unknown option(s): {', '.join(flag_name(n) for n in unknown)}")
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in options.items()
        }
        return cls(**values)

    def container_flags(self) -> list[str]:
        """The container-only flags given, spelled as on the command line."""
        return [flag_name(name) for name in CONTAINER_FLAGS if getattr(self, name)]

    def check(self) -> None:
        """Refuse what the request alone shows is wrong: one PlanError naming the flag."""
        if self.executor not in EXECUTORS:
            raise PlanError(
                f"unknown executor {self.executor!r}: choose one of {', '.join(EXECUTORS)}"
            )
        if self.port is not None and not 0 < self.port < 65536:
            raise PlanError(f"--port {self.port}: must be between 1 and 65535")
        for name in ("server_timeout", "point_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise PlanError(f"{flag_name(name)} {value}: must be a positive number of seconds")
        if self.executor == "local":
            self.check_local()

    def check_local(self) -> None:
        """Refuse container flags for the local executor, which runs this host's vLLM."""
        if self.image:
            raise PlanError(
                f"--image {self.image} is for container executors; --executor local runs the "
                "vllm of this host: drop --image"
            )
        for name in _LOCAL_REFUSES:
            if name == "gpus" and self.replicas != "1":
                continue  # --replicas splits these GPUs of this host into sets
            if getattr(self, name):
                raise PlanError(f"{flag_name(name)} is for --executor docker")
