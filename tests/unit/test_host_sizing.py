"""The CPU backend's KV cache is sized from free memory only when the user sized nothing."""

from __future__ import annotations

from pathlib import Path

from runner.agent.host import KV_ENV, available_memory, size_cpu_kv_cache

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
    assert size_cpu_kv_cache("cpu", {}, [SERVE], 20 * GIB, tuned) is None  # 4 <= 5: kept
    lowered = size_cpu_kv_cache("cpu", {}, [SERVE], 8 * GIB, tuned)
    assert lowered is not None and lowered.gib == 2
    assert "instead of the tuned 4" in lowered.note
