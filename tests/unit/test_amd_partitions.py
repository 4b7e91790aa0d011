"""AMD partition modes: detected (sysfs, recorded amd-smi output), expected, refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.agent import host as agent_host
from runner.agent.tunableop import config_dir, gpu_key
from runner.cli import main
from runner.errors import PlanError
from runner.plan import EngineConfig, ModelRef, Plan, Run
from runner.preflight import check_partitions, partition_line
from runner.rundir import Job
from runner.vendors import (
    PartitionMismatch,
    Runner,
    amd_gpu_topology,
    check_partition,
    parse_partition,
    partition_modes,
    topology_partition,
)
from runner.vendors import amd_topology as topology
from runner.vendors.amd_topology import AMD_SMI_PARTITION_QUERY
from runner.vendors.checks import set_partition_commands
from tests.unit.kfd_trees import Host, build

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "amd-smi"


def amd_smi(name: str) -> Runner:
    """amd-smi answering `static --bus --partition --json` with a recorded sample, and no more."""
    text = (SAMPLES / name).read_text()

    def run(argv: list[str]) -> str | None:
        return text if tuple(argv) == AMD_SMI_PARTITION_QUERY else None

    return run


def cpx_node(tmp_path: Path) -> Path:
    """Two MI300X in CPX/NPS4 whose sysfs does not expose the modes (amd-smi tells them)."""
    return build(tmp_path, Host(gpus=2, partitions=8, compute=None, memory=None))


def test_cpx_detected_from_recorded_amd_smi_output(tmp_path: Path) -> None:
    found = amd_gpu_topology(cpx_node(tmp_path), amd_smi("static-partition-cpx.json"))
    assert found is not None and len(found["gpus"]) == 16  # each XCD a device
    assert partition_modes(found) == ("CPX", "NPS4")
    assert topology_partition(found) == "cpx/nps4"
    assert [g["partition"] for g in found["gpus"][:9]] == [0, 1, 2, 3, 4, 5, 6, 7, 0]


def test_cpx_detected_from_newer_amd_smi_output(tmp_path: Path) -> None:
    # ROCm 6.4+: {"gpu_data": [...]}, and accelerator_partition for compute_partition
    found = amd_gpu_topology(cpx_node(tmp_path), amd_smi("static-partition-cpx-rocm7.json"))
    assert found is not None and topology_partition(found) == "cpx/nps4"


def test_spx_detected_from_recorded_amd_smi_output(tmp_path: Path) -> None:
    root = build(tmp_path, Host(gpus=8, partitions=1, compute=None, memory=None))
    found = amd_gpu_topology(root, amd_smi("static-partition-spx.json"))
    assert found is not None and len(found["gpus"]) == 8
    assert topology_partition(found) == "spx/nps1"


def test_modes_from_sysfs_alone(tmp_path: Path) -> None:
    root = build(tmp_path, Host(gpus=1, partitions=8, compute="CPX", memory="NPS4"))
    assert topology_partition(amd_gpu_topology(root)) == "cpx/nps4"
    spx = build(tmp_path / "spx", Host(gpus=2, compute="SPX", memory=None))
    assert topology_partition(amd_gpu_topology(spx)) == "spx"  # memory mode unread


def test_modes_unknown_mixed_and_per_gpu() -> None:
    assert topology_partition(None) is None
    assert topology_partition({"gpus": [{"index": 0, "compute_partition": None}]}) is None
    mixed = {
        "gpus": [
            {"index": 0, "compute_partition": "CPX", "memory_partition": "NPS4"},
            {"index": 1, "compute_partition": "SPX", "memory_partition": "NPS1"},
        ]
    }
    assert topology_partition(mixed) == "cpx+spx/nps1+nps4"
    assert partition_modes(mixed, (1,)) == ("SPX", "NPS1")


@pytest.mark.parametrize(
    ("text", "label"),
    [("cpx", "cpx"), ("CPX/NPS4", "cpx/nps4"), ("nps4/cpx", "cpx/nps4"), ("nps1", "nps1")],
)
def test_parse_partition(text: str, label: str) -> None:
    assert parse_partition(text) == label


@pytest.mark.parametrize("text", ["xpx", "cpx/spx", "nps3", "cpx/", ""])
def test_parse_partition_refuses(text: str) -> None:
    with pytest.raises(PlanError, match=r"^--partition .*: give a compute mode"):
        parse_partition(text)


def test_cpx_expected_on_spx_node_is_refused_with_the_command(tmp_path: Path) -> None:
    root = build(tmp_path, Host(gpus=8, partitions=1, compute=None, memory=None))
    spx = amd_gpu_topology(root, amd_smi("static-partition-spx.json"))
    with pytest.raises(PartitionMismatch) as caught:
        check_partition("cpx/nps4", spx)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert "\n" not in message
    assert "this node's AMD GPUs are in SPX/NPS1" in message
    assert (
        "`sudo amd-smi set --compute-partition CPX` then `sudo amd-smi set --memory-partition "
        "NPS4`" in message
    )
    check_partition("spx", spx)
    check_partition("spx/nps1", spx)
    with pytest.raises(PartitionMismatch, match="could not be read"):
        check_partition("cpx", None)


def test_cpx_expected_on_cpx_node_passes(tmp_path: Path) -> None:
    cpx = amd_gpu_topology(cpx_node(tmp_path), amd_smi("static-partition-cpx.json"))
    check_partition("cpx", cpx)
    check_partition("cpx/nps4", cpx, (0, 9))
    with pytest.raises(PartitionMismatch, match=r"GPUs 0,9 are in CPX/NPS4.*--memory-partition"):
        check_partition("cpx/nps1", cpx, (0, 9))


def test_set_commands_order() -> None:
    # MI300X: CPX before NPS4 (NPS4 needs CPX), NPS1 before SPX (leaving NPS4 first)
    assert set_partition_commands("cpx/nps4").index("CPX") < set_partition_commands(
        "cpx/nps4"
    ).index("NPS4")
    back = set_partition_commands("spx/nps1")
    assert back.index("NPS1") < back.index("SPX")
    assert set_partition_commands("dpx") == "`sudo amd-smi set --compute-partition DPX`"


def _run(vendor: str, partition: str | None, run_id: str = "r") -> Run:
    return Run(
        run_id=run_id,
        vendor=vendor,
        model=ModelRef(source="org/m"),
        engine=EngineConfig(),
        expect_partition=partition,
    )


def test_run_carries_the_expected_partition() -> None:
    run = _run("amd", "CPX/NPS4")
    assert run.expect_partition == "cpx/nps4"
    assert run.to_dict()["expect_partition"] == "cpx/nps4"
    assert "expect_partition" not in _run("amd", None).to_dict()
    with pytest.raises(PlanError, match=r"^--partition cpx is for AMD GPUs.*--vendor nvidia"):
        _run("nvidia", "cpx")


def test_preflight_and_agent_refuse_a_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build(tmp_path, Host(gpus=2, partitions=1, compute="SPX", memory="NPS1"))
    monkeypatch.setattr(topology, "HOST_ROOT", str(root))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(PartitionMismatch, match="are in SPX/NPS1"):
        check_partitions(Plan(runs=(_run("amd", "cpx"),)))
    check_partitions(Plan(runs=(_run("amd", "spx"), _run("amd", None, "r2"))))
    job = Job(run=_run("amd", "cpx").to_dict(), vllm="vllm", points=())
    with pytest.raises(agent_host.ConfigRejected, match="are in SPX/NPS1"):
        agent_host.check_gpus(job)


def test_dry_run_says_what_is_expected_and_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build(tmp_path / "host", Host(gpus=2, partitions=1, compute="SPX", memory="NPS1"))
    monkeypatch.setattr(topology, "HOST_ROOT", str(root))
    assert partition_line(_run("amd", "cpx/nps4")) == (
        "# --partition cpx/nps4: checked before anything starts (this host's GPUs: spx/nps1); "
        "bench-run never changes the modes"
    )
    assert partition_line(_run("amd", None)) is None
    monkeypatch.setattr(topology, "HOST_ROOT", str(tmp_path / "nothing"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    assert "(this host's GPUs: not readable)" in (partition_line(_run("amd", "cpx")) or "")


def test_bench_run_partition_cpx_on_spx_node_exits_2_starting_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build(tmp_path / "host", Host(gpus=8, partitions=1, compute="SPX", memory="NPS1"))
    monkeypatch.setattr(topology, "HOST_ROOT", str(root))
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    vllm = tmp_path / "bin" / "vllm"
    vllm.parent.mkdir()
    vllm.write_text("#!/bin/sh\necho 'vllm must not run' >&2\nexit 1\n")
    vllm.chmod(vllm.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "runs"
    args = ["--vendor", "amd", "--model", str(model), "--partition", "cpx", "--vllm", str(vllm)]
    result = CliRunner().invoke(
        main,
        [*args, "--out", str(out)],
        env={"BENCH_EXECUTOR": "local", "PATH": str(tmp_path / "bin")},
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "sudo amd-smi set --compute-partition CPX" in lines[0]
    assert not out.exists() or not any(out.iterdir())  # no run directory


def test_tunableop_results_are_kept_per_partition_mode() -> None:
    run = {"engine": {"tp": 1, "dtype": "bfloat16"}, "model": {"source": "org/m"}}
    whole = config_dir("/t", "AMD Instinct MI300X", run)
    assert whole == config_dir("/t", "AMD Instinct MI300X", run, "spx/nps1")
    cpx = config_dir("/t", "AMD Instinct MI300X", run, "cpx/nps4")
    assert cpx != whole
    assert (
        cpx.parts[2] == gpu_key("AMD Instinct MI300X", "cpx/nps4") == "AMD-Instinct-MI300X-cpx-nps4"
    )
