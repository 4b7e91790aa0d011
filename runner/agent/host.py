"""What the agent decides and checks on the host it runs on: the KV-cache size, the GPUs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PlanError
from ..rundir import Job
from ..vendors import (
    check_partition,
    discover,
    gpu_topology,
    names,
    numa_balancing_mode,
    profile_for,
)

KV_ENV = "VLLM_CPU_KVCACHE_SPACE"  # GiB of KV cache for vLLM's CPU backend
# The flags that size the CPU backend's memory themselves; with one of them we choose nothing.
_SIZING_FLAGS = ("--gpu-memory-utilization", "--kv-cache-memory-bytes")
# of the memory available at start: the weights, the OS and the neighbours keep the rest
KV_FRACTION = 0.25
_GIB = 1024**3


@dataclass(frozen=True)
class KvSizing:
    """A KV-cache size chosen for the CPU backend, and the sentence that says so."""

    gib: int
    note: str


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes (what can be had without swapping), None if unreadable."""
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(":")
            if name == "MemAvailable":
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _names_flag(argv: Sequence[str], flag: str) -> bool:
    return any(arg == flag or arg.startswith(f"{flag}=") for arg in argv)


def size_cpu_kv_cache(
    vendor: str,
    env: Mapping[str, str],
    argvs: Sequence[Sequence[str]],
    available: int | None,
    tuned: Mapping[str, str] | None = None,
) -> KvSizing | None:
    """The CPU backend's KV cache when the user sized neither it nor vLLM's memory share.

    Without either, vLLM reserves 0.92 of the NUMA node's memory and refuses to start when less
    is free (page cache and other processes often hold more than 8%). A fixed size from the
    memory available now starts instead; it is said in an event and kept in provenance. The
    vendor's tuned value (`tuned`, the catalog's fixed size) is kept when it fits in that share,
    and lowered to it, saying so, when it does not.
    """
    if vendor not in names() or profile_for(vendor).uses_gpus or env.get(KV_ENV):
        return None  # vLLM's CPU backend only: the vendor without GPUs
    if any(_names_flag(argv, flag) for argv in argvs for flag in _SIZING_FLAGS):
        return None
    if available is None:
        return None
    gib = max(1, int(available * KV_FRACTION // _GIB))
    default = (tuned or {}).get(KV_ENV, "")
    if default.isdigit():
        if int(default) <= gib:  # it fits: kept, so that results do not follow host memory
            note = (
                f"KV cache: {KV_ENV}={default} (GiB), the {vendor} tuning's fixed size (it fits "
                f"in {KV_FRACTION:.0%} of the {available / _GIB:.1f} GiB available at start); "
                "set it or --gpu-memory-utilization to choose"
            )
            return KvSizing(int(default), note)
        note = (
            f"KV cache: {KV_ENV}={gib} (GiB) instead of the tuned {default}, which does not fit in "
            f"{KV_FRACTION:.0%} of the {available / _GIB:.1f} GiB available at start; set it or "
            "--gpu-memory-utilization to choose"
        )
        return KvSizing(gib, note)
    note = (
        f"KV cache: {KV_ENV}={gib} (GiB), {KV_FRACTION:.0%} of the {available / _GIB:.1f} GiB "
        "available at start, since neither it nor --gpu-memory-utilization was set; set either "
        "to choose"
    )
    return KvSizing(gib, note)


class ConfigRejected(Exception):
    """The configuration cannot run here (vLLM refuses its flags, too few GPUs): one line."""


def decide_env(job: Job, chosen: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Variables the agent sets for this host, each with the sentence that says why.

    chosen: the host's environment and the user's --env (a tuned value is a default, not a
    choice, so it is not in it).
    """
    argvs = [p.argv for p in job.points]
    if job.server is not None:
        argvs.append(job.server.argv)
    available = available_memory()
    servers = int((job.replicas or {}).get("count") or 1)  # --replicas: each gets its share
    if available is not None:
        available //= servers
    sizing = size_cpu_kv_cache(job.vendor, chosen, argvs, available, job.tuned_env)
    return {} if sizing is None else {KV_ENV: (str(sizing.gib), sizing.note)}


def check_gpus(job: Job) -> None:
    """The GPUs the agent sees (in a container: those it was given) must hold --tp, in the
    partition modes --partition expects."""
    vendor = job.vendor
    tp = int((job.run.get("engine") or {}).get("tp") or 1)
    if vendor not in names() or not profile_for(vendor).uses_gpus:
        return
    expected = job.run.get("expect_partition")
    if expected:  # bench-run checked its host; a pod's node is checked here
        try:
            check_partition(str(expected), gpu_topology(vendor))
        except PlanError as exc:
            raise ConfigRejected(str(exc)) from None
    found = len(discover(vendor))
    if found < tp:
        raise ConfigRejected(
            f"--tp {tp} needs {tp} {vendor} GPUs but {profile_for(vendor).tools} sees "
            f"{found} where the agent runs: lower --tp or give it more GPUs (--gpus)"
        )


def host_settings(job: Job, root: str = "/") -> tuple[dict[str, object], list[str]]:
    """Host settings the vendor advises against: what was found (for provenance) and warnings.

    With the job's strict_host, a setting advised against is ConfigRejected instead (one line).
    """
    vendor = job.vendor
    if vendor not in names() or not profile_for(vendor).numa_balancing_off:
        return {}, []
    mode = numa_balancing_mode(root)
    found: dict[str, object] = {"numa_balancing": mode}
    if not mode:  # 0 (off) or unknown: nothing to say
        return found, []
    problem = (
        f"NUMA auto-balancing is on on this host (kernel.numa_balancing={mode}); {vendor} GPUs "
        "run slower with it: sudo sysctl kernel.numa_balancing=0"
    )
    if job.strict_host:
        raise ConfigRejected(f"{problem} (--strict-host refuses to run)")
    return found, [problem]
