"""The CPU backend's KV cache is sized from free memory only when the user sized nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.agent.host import (
    KV_ENV,
    ConfigRejected,
    available_memory,
    host_settings,
    size_cpu_kv_cache,
)
from runner.rundir import Job

GIB = 1024**3
SERVE = ["vllm", "serve", "/m", "--dtype", "bfloat16"]


def test_nothing_set_sizes_it_from_available_memory() -> None:
    sizing = size_cpu_kv_cache("cpu", {}, [SERVE], 20 * GIB)
    assert sizing is not None
    assert sizing.gib == 5  # 25% of 20 GiB
    assert KV_ENV in sizing.note and "20.0 GiB available" in sizing.note


def test_at_least_one_gib() -> None:
    sizing = size_cpu_kv_cache("cpu", {}, [SERVE], GIB // 2)
    assert sizing is not None and sizing.gib == 1


def test_the_users_choice_is_left_alone() -> None:
    assert size_cpu_kv_cache("cpu", {KV_ENV: "4"}, [SERVE], 20 * GIB) is None
    for flag in (["--gpu-memory-utilization", "0.5"], ["--gpu-memory-utilization=0.5"],
                 ["--kv-cache-memory-bytes", "1000000"]):  # fmt: skip
        assert size_cpu_kv_cache("cpu", {}, [[*SERVE, *flag]], 20 * GIB) is None


def test_only_the_cpu_vendor_and_only_when_memory_is_known() -> None:
    assert size_cpu_kv_cache("nvidia", {}, [SERVE], 20 * GIB) is None
    assert size_cpu_kv_cache("cpu", {}, [SERVE], None) is None


def test_available_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   2048 kB\n")
    assert available_memory(meminfo) == 2048 * 1024
    assert available_memory(tmp_path / "missing") is None
    assert available_memory() is not None  # this Linux host's own


def test_a_tuned_size_is_kept_when_it_fits_and_lowered_when_not() -> None:
    tuned = {KV_ENV: "4"}
    kept = size_cpu_kv_cache("cpu", {}, [SERVE], 20 * GIB, tuned)  # 4 <= 5: kept, and said
    assert kept is not None and kept.gib == 4 and "tuning's fixed size" in kept.note
    lowered = size_cpu_kv_cache("cpu", {}, [SERVE], 8 * GIB, tuned)
    assert lowered is not None and lowered.gib == 2
    assert "instead of the tuned 4" in lowered.note


def _job(vendor: str, strict: bool = False) -> Job:
    return Job(run={"run_id": "r", "vendor": vendor}, vllm="vllm", points=(), strict_host=strict)


def _host_with_numa_balancing(tmp_path: Path, value: str) -> str:
    target = tmp_path / "proc" / "sys" / "kernel" / "numa_balancing"
    target.parent.mkdir(parents=True)
    target.write_text(value + "\n")
    return str(tmp_path)


def test_numa_balancing_on_an_amd_host_is_warned_and_recorded(tmp_path: Path) -> None:
    root = _host_with_numa_balancing(tmp_path, "1")
    found, warnings = host_settings(_job("amd"), root)
    assert found == {"numa_balancing": 1}
    (warning,) = warnings
    assert "sudo sysctl kernel.numa_balancing=0" in warning


def test_strict_host_refuses_it(tmp_path: Path) -> None:
    root = _host_with_numa_balancing(tmp_path, "1")
    with pytest.raises(ConfigRejected, match="--strict-host"):
        host_settings(_job("amd", strict=True), root)


def test_off_unknown_or_another_vendor_says_nothing(tmp_path: Path) -> None:
    off = _host_with_numa_balancing(tmp_path, "0")
    assert host_settings(_job("amd", strict=True), off) == ({"numa_balancing": 0}, [])
    assert host_settings(_job("amd", strict=True), str(tmp_path / "nothing")) == (
        {"numa_balancing": None},
        [],
    )
    assert host_settings(_job("nvidia", strict=True), off) == ({}, [])
