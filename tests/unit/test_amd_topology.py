"""AMD GPUs from the KFD topology and amd-smi: HIP's order, render nodes, partitions, NUMA."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.vendors import (
    PROFILES,
    DriverMissing,
    GpuNotFound,
    Runner,
    amd_gpu_nodes,
    amd_gpu_topology,
    check_host,
    gpu_topology,
    numa_balancing,
    numa_balancing_mode,
    read_kfd_topology,
)
from runner.vendors import amd_topology as topology
from runner.vendors.amd_topology import (
    AMD_SMI_LIST_QUERIES,
    AMD_SMI_PARTITION_QUERY,
    AmdGpuNode,
    parse_amd_smi_list,
    parse_amd_smi_partitions,
    parse_properties,
)
from tests.unit.kfd_trees import NODES, Host, build

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "amd-smi"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def runner_of(outputs: dict[tuple[str, ...], str]) -> tuple[list[list[str]], Runner]:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> str | None:
        calls.append(argv)
        return outputs.get(tuple(argv))

    return calls, run


def test_spx_node_has_eight_render_nodes_per_gpu(tmp_path: Path) -> None:
    root = build(tmp_path, Host())
    assert len(list((root / "dev/dri").glob("renderD*"))) == 64  # renderD128..renderD191
    gpus = read_kfd_topology(root)
    assert [g.render_minor for g in gpus] == [128 + 8 * i for i in range(8)]
    assert [g.card for g in gpus] == [8 * i for i in range(8)]
    assert gpus[1] == AmdGpuNode(
        index=1,
        render_minor=136,
        card=8,
        pci_address="0000:26:00.0",
        partition=0,
        kfd_node=3,
        gpu_id=1003,
        compute_partition="SPX",
        memory_partition="NPS1",
    )
    # The bug this module fixes: GPU 1 is renderD136, not renderD129.
    assert amd_gpu_nodes(1, root) == ("/dev/dri/renderD136", "/dev/dri/card8")
    assert amd_gpu_nodes(7, root) == ("/dev/dri/renderD184", "/dev/dri/card56")


def test_profile_devices_and_host_check_follow_the_topology(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(topology, "HOST_ROOT", str(build(tmp_path, Host())))
    amd = PROFILES["amd"]
    assert amd.devices((0, 2)) == (
        "/dev/kfd",
        "/dev/dri/renderD128",
        "/dev/dri/card0",
        "/dev/dri/renderD144",
        "/dev/dri/card16",
    )
    assert amd.devices(()) == ("/dev/kfd", "/dev/dri")
    # Only those GPUs are in the container, where ROCm numbers them from 0.
    assert amd.gpu_environment((0, 2)) == {"HIP_VISIBLE_DEVICES": "0,1"}
    present = {"/dev/kfd", "/dev/dri/renderD128", "/dev/dri/card0", "/dev/dri/renderD144"}
    check_host(amd, (0,), exists=present.__contains__)
    with pytest.raises(GpuNotFound, match="/dev/dri/card16 does not exist"):
        check_host(amd, (0, 2), exists=present.__contains__)
    with pytest.raises(GpuNotFound, match=r"GPU 8, but this host has 8 amd GPUs \(ids 0-7\)"):
        check_host(amd, (0, 8), exists=lambda path: True)


def test_cpx_node_is_64_gpus_each_a_partition(tmp_path: Path) -> None:
    root = build(tmp_path, Host(partitions=8, compute="CPX", memory="NPS4"))
    gpus = read_kfd_topology(root)
    assert len(gpus) == 64
    assert [g.render_minor for g in gpus] == list(range(128, 192))
    assert [g.kfd_node for g in gpus] == list(range(2, 66))
    nine = gpus[9]  # the second partition of the second MI300X
    assert (nine.render_node, nine.card_node) == ("/dev/dri/renderD137", "/dev/dri/card9")
    assert (nine.pci_address, nine.partition) == ("0000:26:00.0", 1)
    assert (nine.compute_partition, nine.memory_partition) == ("CPX", "NPS4")
    assert {g.pci_address for g in gpus[8:16]} == {"0000:26:00.0"}
    assert [g.partition for g in gpus[8:16]] == list(range(8))
    assert amd_gpu_nodes(63, root) == ("/dev/dri/renderD191", "/dev/dri/card63")


def test_bmc_display_takes_card0_but_no_render_node(tmp_path: Path) -> None:
    root = build(tmp_path, Host(gpus=2, bmc=True))
    assert (root / "dev/dri/card0").exists() and not (root / "sys/class/drm/renderD127").exists()
    assert amd_gpu_nodes(0, root) == ("/dev/dri/renderD128", "/dev/dri/card1")
    assert amd_gpu_nodes(1, root) == ("/dev/dri/renderD136", "/dev/dri/card9")


def test_order_is_the_kfd_node_order_numerically(tmp_path: Path) -> None:
    root = build(tmp_path, Host(gpus=8, cpu_nodes=4))  # GPU nodes 4..11: node 10 after node 9
    assert [g.kfd_node for g in read_kfd_topology(root)] == list(range(4, 12))
    # HIP follows the nodes, not the render minors: swap two nodes' properties.
    nodes = root / NODES
    first, second = (nodes / "4/properties").read_text(), (nodes / "5/properties").read_text()
    (nodes / "4/properties").write_text(second)
    (nodes / "5/properties").write_text(first)
    assert [g.render_minor for g in read_kfd_topology(root)][:2] == [136, 128]


def test_a_container_sees_only_its_render_nodes_numbered_from_0(tmp_path: Path) -> None:
    root = build(tmp_path, Host(gpus=4))
    for node in (root / "dev/dri").iterdir():
        if node.name not in ("renderD136", "card8", "renderD152", "card24"):
            node.unlink()
    gpus = read_kfd_topology(root)
    assert [(g.index, g.render_minor, g.pci_address) for g in gpus] == [
        (0, 136, "0000:26:00.0"),
        (1, 152, "0000:65:00.0"),
    ]


def test_a_sysfs_copy_without_dev_maps_every_gpu(tmp_path: Path) -> None:
    root = build(tmp_path, Host(gpus=2, dev=False, compute=None, memory=None))
    gpus = read_kfd_topology(root)
    assert [g.render_node for g in gpus] == ["/dev/dri/renderD128", "/dev/dri/renderD136"]
    assert gpus[0].compute_partition is None and gpus[0].memory_partition is None


def test_not_an_amd_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_kfd_topology(tmp_path) == []
    assert amd_gpu_topology(tmp_path) is None
    calls, run = runner_of({})
    assert amd_gpu_topology(tmp_path, run) is None
    assert calls == [list(q) for q in AMD_SMI_LIST_QUERIES]
    # Today's rule and error path where there is no topology: /dev/kfd missing is one line.
    assert amd_gpu_nodes(2, tmp_path) == ("/dev/dri/renderD130", "/dev/dri/card2")
    monkeypatch.setattr(topology, "HOST_ROOT", str(tmp_path))
    assert gpu_topology("amd", run) is None
    with pytest.raises(DriverMissing, match="/dev/kfd does not exist"):
        check_host(PROFILES["amd"], (0,), exists=lambda path: False)


def test_topology_for_provenance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topology, "HOST_ROOT", str(build(tmp_path, Host(gpus=2))))
    calls, run = runner_of({})
    found = gpu_topology("amd", run)
    assert calls == []  # sysfs said everything: no amd-smi
    assert found is not None and found["source"] == "kfd"
    assert found["gpus"][1] == {
        "index": 1,
        "render_minor": 136,
        "card": 8,
        "pci_address": "0000:26:00.0",
        "partition": 0,
        "kfd_node": 3,
        "gpu_id": 1003,
        "compute_partition": "SPX",
        "memory_partition": "NPS1",
        "render_node": "/dev/dri/renderD136",
        "card_node": "/dev/dri/card8",
    }
    assert gpu_topology("nvidia", run) is None
    assert gpu_topology("cpu", run) is None
    assert gpu_topology("tpu", run) is None


def test_partition_modes_from_amd_smi_when_sysfs_lacks_them(tmp_path: Path) -> None:
    root = build(tmp_path, Host(gpus=2, partitions=8, compute=None, memory=None))
    outputs: dict[tuple[str, ...], str] = {
        AMD_SMI_PARTITION_QUERY: sample("static-partition-cpx.json")
    }
    calls, run = runner_of(outputs)
    found = amd_gpu_topology(root, run)
    assert calls == [list(AMD_SMI_PARTITION_QUERY)]
    assert found is not None and len(found["gpus"]) == 16
    assert {(g["compute_partition"], g["memory_partition"]) for g in found["gpus"]} == {
        ("CPX", "NPS4")
    }


def test_amd_smi_list_is_the_second_source(tmp_path: Path) -> None:
    outputs: dict[tuple[str, ...], str] = {AMD_SMI_LIST_QUERIES[0]: sample("list-e-spx.json")}
    calls, run = runner_of(outputs)
    found = amd_gpu_topology(tmp_path, run)
    assert found is not None and found["source"] == "amd-smi"
    assert [g["render_node"] for g in found["gpus"]][:2] == [
        "/dev/dri/renderD128",
        "/dev/dri/renderD136",
    ]
    assert calls == [list(AMD_SMI_LIST_QUERIES[0]), list(AMD_SMI_PARTITION_QUERY)]


def test_parse_amd_smi_list_samples() -> None:
    gpus = parse_amd_smi_list(sample("list-e-spx.json"))
    assert len(gpus) == 8
    assert gpus[1] == AmdGpuNode(
        index=1,
        render_minor=136,
        card=9,
        pci_address="0000:26:00.0",
        partition=0,
        kfd_node=3,
        gpu_id=46523,
    )
    assert gpus[1].device_nodes() == ("/dev/dri/renderD136", "/dev/dri/card9")
    older = parse_amd_smi_list(sample("list-spx-rocm6.2.json"))  # no -e: no render nor card
    assert [(g.index, g.kfd_node, g.render_node) for g in older] == [(0, 2, None), (1, 3, None)]
    assert older[0].device_nodes() == ()
    one = parse_amd_smi_list('{"gpu": 0, "bdf": "N/A", "render": "N/A", "hip_id": "N/A"}')
    assert one == [AmdGpuNode(index=0, render_minor=None)]
    assert parse_amd_smi_list("not json") == parse_amd_smi_list('"x"') == []


def test_parse_amd_smi_partitions_sample() -> None:
    modes = parse_amd_smi_partitions(sample("static-partition-cpx.json"))
    assert modes == {"0000:05:00": ("CPX", "NPS4"), "0000:26:00": ("CPX", "NPS4")}
    assert parse_amd_smi_partitions('[{"gpu": 0, "bus": {"bdf": "0000:05:00.0"}}]') == {}
    assert parse_amd_smi_partitions("[]") == parse_amd_smi_partitions("oops") == {}
    na = '[{"gpu": 0, "bus": {"bdf": "0000:05:00.0"}, "partition": {"compute_partition": "N/A"}}]'
    assert parse_amd_smi_partitions(na) == {}


def test_parse_properties_skips_what_is_not_a_pair() -> None:
    text = "cpu_cores_count 0\nsimd_count 304\nmarketing_name x y\nbad\nlocation_id 1280\n"
    assert parse_properties(text) == {"cpu_cores_count": 0, "simd_count": 304, "location_id": 1280}


def test_unreadable_gpu_nodes_are_skipped(tmp_path: Path) -> None:
    root = build(tmp_path, Host(gpus=3))
    shutil.rmtree(root / NODES / "3")  # a node without properties is not a GPU HIP can use
    (root / NODES / "4/properties").write_text("simd_count 304\n")  # no render minor
    assert [g.kfd_node for g in read_kfd_topology(root)] == [2]


@pytest.mark.parametrize(
    ("text", "mode", "on"),
    [("1\n", 1, True), ("0\n", 0, False), ("2", 2, True), ("3\n", 3, True), ("x", None, None)],
)
def test_numa_balancing(tmp_path: Path, text: str, mode: int | None, on: bool | None) -> None:
    path = tmp_path / "proc/sys/kernel/numa_balancing"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert numa_balancing_mode(tmp_path) == mode
    assert numa_balancing(tmp_path) is on


def test_numa_balancing_absent(tmp_path: Path) -> None:
    assert numa_balancing_mode(tmp_path) is None
    assert numa_balancing(str(tmp_path)) is None
