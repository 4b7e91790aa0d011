"""GPU discovery through the vendors' tools (runner/vendors/): parsers, fallbacks, detection."""

from __future__ import annotations

import json

import pytest

from runner.vendors import Gpu, Runner, detect_vendor, discover, run_tool
from runner.vendors.amd import AMD_SMI_QUERY, ROCM_SMI_QUERY, parse_amd_smi_static, parse_rocm_smi
from runner.vendors.nvidia import NVIDIA_QUERY, parse_nvidia_smi

NVIDIA_LINE = (
    "0, NVIDIA H100 80GB HBM3, 550.54.15, 81559, 00000000:18:00.0, "
    "GPU-7a1b2c3d-0000-1111-2222-333344445555"
)
NVIDIA_TWO = (
    NVIDIA_LINE
    + "\n1, NVIDIA H100 80GB HBM3, 550.54.15, 81559, 00000000:2A:00.0, "
    + "GPU-8b2c3d4e-0000-1111-2222-333344445555\n"
)
AMD_ITEM = {
    "gpu": 0,
    "asic": {"market_name": "AMD Instinct MI300X", "asic_serial": "0xABCDEF"},
    "driver": {"name": "amdgpu", "version": "6.8.5"},
    "vram": {"type": "HBM", "size": {"value": 196592, "unit": "MB"}},
    "bus": {"bdf": "0000:05:00.0"},
}
AMD_ITEM_1 = {**AMD_ITEM, "gpu": 1, "bus": {"bdf": "0000:26:00.0"}}
ROCM_JSON = {
    "card1": {"Card Series": "AMD Instinct MI300X", "PCI Bus": "0000:26:00.0"},
    "card0": {"Card Series": "AMD Instinct MI300X", "PCI Bus": "0000:05:00.0"},
    "system": {"Driver version": "6.8.0"},
}


def test_parse_nvidia_smi_one_line() -> None:
    assert parse_nvidia_smi(NVIDIA_LINE) == [
        Gpu(
            index=0,
            name="NVIDIA H100 80GB HBM3",
            vendor="nvidia",
            driver="550.54.15",
            memory_mib=81559,
            bus_id="00000000:18:00.0",
            uuid="GPU-7a1b2c3d-0000-1111-2222-333344445555",
        )
    ]


def test_parse_nvidia_smi_two_lines_and_noise() -> None:
    found = parse_nvidia_smi("No devices were found? no\n" + NVIDIA_TWO + "\n")
    assert [g.index for g in found] == [0, 1]
    assert [g.bus_id for g in found] == ["00000000:18:00.0", "00000000:2A:00.0"]
    assert found[1].to_dict() == {
        "index": 1,
        "name": "NVIDIA H100 80GB HBM3",
        "vendor": "nvidia",
        "driver": "550.54.15",
        "memory_mib": 81559,
        "bus_id": "00000000:2A:00.0",
        "uuid": "GPU-8b2c3d4e-0000-1111-2222-333344445555",
    }
    assert parse_nvidia_smi("") == []
    assert parse_nvidia_smi("0, [N/A], x") == []
    assert parse_nvidia_smi("0, GPU, 1.0, [N/A], 0:0, U")[0].memory_mib is None


def test_parse_amd_smi_list_form() -> None:
    found = parse_amd_smi_static(json.dumps([AMD_ITEM, AMD_ITEM_1]))
    assert found == [
        Gpu(0, "AMD Instinct MI300X", "amd", "6.8.5", 196592, "0000:05:00.0", "0xABCDEF"),
        Gpu(1, "AMD Instinct MI300X", "amd", "6.8.5", 196592, "0000:26:00.0", "0xABCDEF"),
    ]


def test_parse_amd_smi_gpu_data_form() -> None:
    item = {**AMD_ITEM, "vram": {"size": "196592 MB"}}
    found = parse_amd_smi_static(json.dumps({"gpu_data": [item]}))
    assert found == [
        Gpu(0, "AMD Instinct MI300X", "amd", "6.8.5", 196592, "0000:05:00.0", "0xABCDEF")
    ]


def test_parse_amd_smi_garbage() -> None:
    assert parse_amd_smi_static("not json") == []
    assert parse_amd_smi_static("{}") == []
    assert parse_amd_smi_static('"text"') == []
    assert parse_amd_smi_static("[1, 2]") == []


def test_parse_rocm_smi() -> None:
    found = parse_rocm_smi(json.dumps(ROCM_JSON))
    assert found == [
        Gpu(0, "AMD Instinct MI300X", "amd", "6.8.0", None, "0000:05:00.0", None),
        Gpu(1, "AMD Instinct MI300X", "amd", "6.8.0", None, "0000:26:00.0", None),
    ]
    assert parse_rocm_smi("nope") == []
    assert parse_rocm_smi("[]") == []


def fake_runner(outputs: dict[str, str | None]) -> Runner:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> str | None:
        calls.append(argv)
        return outputs.get(argv[0])

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_discover_nvidia() -> None:
    runner = fake_runner({"nvidia-smi": NVIDIA_TWO})
    assert [g.uuid for g in discover("nvidia", runner)] == [
        "GPU-7a1b2c3d-0000-1111-2222-333344445555",
        "GPU-8b2c3d4e-0000-1111-2222-333344445555",
    ]
    assert runner.calls == [list(NVIDIA_QUERY)]  # type: ignore[attr-defined]


def test_discover_amd_falls_back_to_rocm_smi() -> None:
    runner = fake_runner({"amd-smi": "[]", "rocm-smi": json.dumps(ROCM_JSON)})
    assert [g.bus_id for g in discover("amd", runner)] == ["0000:05:00.0", "0000:26:00.0"]
    assert runner.calls == [list(AMD_SMI_QUERY), list(ROCM_SMI_QUERY)]  # type: ignore[attr-defined]


def test_discover_amd_prefers_amd_smi() -> None:
    runner = fake_runner({"amd-smi": json.dumps([AMD_ITEM]), "rocm-smi": json.dumps(ROCM_JSON)})
    assert [g.driver for g in discover("amd", runner)] == ["6.8.5"]
    assert runner.calls == [list(AMD_SMI_QUERY)]  # type: ignore[attr-defined]


def test_discover_cpu_and_unknown_run_nothing() -> None:
    runner = fake_runner({"nvidia-smi": NVIDIA_LINE})
    assert discover("cpu", runner) == []
    assert discover("tpu", runner) == []
    assert runner.calls == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("outputs", "vendor"),
    [
        ({"nvidia-smi": NVIDIA_LINE}, "nvidia"),
        ({"nvidia-smi": NVIDIA_LINE, "amd-smi": json.dumps([AMD_ITEM])}, "nvidia"),
        ({"nvidia-smi": "", "amd-smi": json.dumps([AMD_ITEM])}, "amd"),
        ({"amd-smi": json.dumps({"gpu_data": [AMD_ITEM]})}, "amd"),
        ({"rocm-smi": json.dumps(ROCM_JSON)}, "amd"),
        ({"nvidia-smi": "", "amd-smi": "[]", "rocm-smi": "{}"}, "cpu"),
        ({}, "cpu"),
    ],
)
def test_detect_vendor(outputs: dict[str, str | None], vendor: str) -> None:
    assert detect_vendor(fake_runner(outputs)) == vendor


def test_run_tool_absent_returns_none() -> None:
    assert run_tool(["no-such-tool-for-bench-tests-xyz", "--json"]) is None
