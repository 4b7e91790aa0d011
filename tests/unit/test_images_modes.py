"""Partition modes of the image set: the ROCm variants in CPX mode (TP=1 servers on partitions),
each change with its reason, in render's output, the Dockerfile and the run-time tuning."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.images.catalog import CatalogError, load_catalog
from runner.images.cli import main
from runner.images.modes import CPX, apply_mode, mode_for_run
from runner.images.render import default_tag, env_hash, render_dockerfile
from runner.images.tuning import run_tuning, tuning_line

CATALOG = load_catalog()
AMD = sorted(name for name, v in CATALOG.items() if v.vendor == "amd")


def test_there_are_rocm_variants() -> None:
    assert "rocm-vllm-openai" in AMD and len(AMD) >= 2


@pytest.mark.parametrize("name", AMD)
def test_cpx_drops_collective_tuning_and_keeps_tunableop_apart(name: str) -> None:
    base = CATALOG[name]
    cpx = apply_mode(base, "cpx")
    assert (cpx.name, cpx.mode, cpx.catalog_name) == (f"{name}-cpx", "cpx", name)
    assert "NCCL_MIN_NCHANNELS" in base.env_dict
    assert "NCCL_MIN_NCHANNELS" not in cpx.env_dict
    filename = cpx.env_dict["PYTORCH_TUNABLEOP_FILENAME"]
    assert filename == "/var/lib/bench/tunableop/cpx/tunableop_results.csv"
    assert filename != base.env_dict["PYTORCH_TUNABLEOP_FILENAME"]
    # everything else as the catalog entry has it, in its order
    kept = [v for v in base.env if v.name not in ("NCCL_MIN_NCHANNELS",)]
    assert [v.name for v in cpx.env] == [v.name for v in kept]
    assert all(
        cpx.env_dict[v.name] == v.value for v in kept if v.name != "PYTORCH_TUNABLEOP_FILENAME"
    )
    assert env_hash(cpx.env) != env_hash(base.env)
    assert default_tag(cpx) == f"vllm-bench/{name}-cpx:{base.vllm_version}"
    assert all(var.reason for var in cpx.env)


def test_the_cpx_dockerfile_says_what_changed_and_why() -> None:
    base = CATALOG["rocm-vllm-openai"]
    text = render_dockerfile(apply_mode(base, "cpx"))
    assert (
        text.startswith("# Rendered by bench-images ")
        and "from the catalog entry rocm-vllm-openai in mode cpx" in text.splitlines()[0]
    )
    assert "ENV NCCL_MIN_NCHANNELS" not in text
    assert "# Mode cpx: what it changes in the catalog entry's tuning, and why" in text
    assert f"# NCCL_MIN_NCHANNELS not set: {CPX.unset[0].reason}" in text
    assert "# HIP_VISIBLE_DEVICES: one partition per server" in text
    assert 'vllm-bench.variant="rocm-vllm-openai-cpx"' in text
    assert "RUN mkdir -p /var/lib/bench/tunableop/cpx" in text
    plain = render_dockerfile(base)
    assert "Mode cpx" not in plain and "ENV NCCL_MIN_NCHANNELS" in plain


def test_mode_refusals() -> None:
    with pytest.raises(CatalogError, match="mode cpx is for amd variants; cpu-pip is a cpu"):
        apply_mode(CATALOG["cpu-pip"], "cpx")
    with pytest.raises(CatalogError, match="unknown mode 'spx': choose one of cpx"):
        apply_mode(CATALOG["rocm-vllm-openai"], "spx")


def test_bench_images_render_mode_cpx(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    result = CliRunner().invoke(
        main, ["render", "rocm-vllm-openai", "--mode", "cpx", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "mode cpx: NCCL_MIN_NCHANNELS not set: TP=1 on one partition" in result.output
    assert "ENV NCCL_MIN_NCHANNELS" not in (out / "Dockerfile").read_text()
    bad = CliRunner().invoke(
        main, ["render", "cpu-pip", "--mode", "cpx", "-o", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1
    assert "mode cpx is for amd variants" in bad.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("partition", "tp", "mode"),
    [("cpx", 1, "cpx"), ("cpx/nps4", 1, "cpx"), ("cpx", 2, None), ("spx", 1, None),
     ("nps4", 1, None), (None, 1, None)],
)  # fmt: skip
def test_mode_for_run(partition: str | None, tp: int, mode: str | None) -> None:
    assert mode_for_run(partition, tp) == mode


def test_run_time_tuning_in_cpx_mode() -> None:
    plain = run_tuning("amd", None)
    cpx = run_tuning("amd", None, mode="cpx")
    assert plain.variant == "rocm-vllm-openai" and cpx.variant == "rocm-vllm-openai-cpx"
    assert "NCCL_MIN_NCHANNELS" in plain.env and "NCCL_MIN_NCHANNELS" not in cpx.env
    assert {k: v for k, v in plain.env.items() if k != "NCCL_MIN_NCHANNELS"} == cpx.env
    assert "catalog rocm-vllm-openai-cpx" in tuning_line(cpx)


def test_a_partition_cpx_run_gets_the_cpx_tuning() -> None:
    from runner.executors.local import local_tuning
    from runner.plan import EngineConfig, ModelRef, Run

    def run(partition: str | None, tp: int = 1) -> Run:
        model = ModelRef(source="org/m")
        engine = EngineConfig(tp=tp)
        return Run("r", "amd", model, engine, expect_partition=partition)

    assert "NCCL_MIN_NCHANNELS" not in local_tuning(run("cpx/nps4")).env
    assert "NCCL_MIN_NCHANNELS" in local_tuning(run(None)).env
    assert "NCCL_MIN_NCHANNELS" in local_tuning(run("cpx", tp=2)).env
