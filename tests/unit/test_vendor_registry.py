"""The vendor registry: detection order, one clear line for an unknown vendor, a vendor added."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runner import vendors
from runner.cli import main
from runner.errors import PlanError
from runner.plan import EngineConfig, ModelRef, Run
from runner.vendors import Gpu, Query, VendorProfile, detect_vendor, names, profile_for

FAKE_TOOL = ("fake-smi", "--list")


def parse_fake_smi(text: str) -> list[Gpu]:
    return [Gpu(index=int(i), name="Fake Accelerator", vendor="fake") for i in text.split()]


# A vendor as a new module would define it: its own tool, template family and default image.
FAKE = VendorProfile(
    name="fake",
    k8s_resource="fake.example.com/accelerator",
    template_family="cpu",
    default_image="cpu-vllm-openai",
    queries=(Query(FAKE_TOOL, parse_fake_smi),),
    shared_devices=("/dev/fake0",),
)


@pytest.fixture
def fake_vendor() -> Iterator[VendorProfile]:
    vendors.register(FAKE)
    try:
        yield FAKE
    finally:
        vendors.unregister(FAKE.name)


def tools_answering(outputs: dict[str, str]) -> vendors.Runner:
    return lambda argv: outputs.get(argv[0])


def test_builtin_vendors_in_detection_order() -> None:
    assert names() == ("nvidia", "amd", "cpu")
    assert vendors.vendor_help() == (
        "nvidia, amd or cpu (default: detect with nvidia-smi, then amd-smi / rocm-smi, else cpu)"
    )
    assert [profile_for(name).template_family for name in names()] == ["cuda", "rocm", "cpu"]


def test_detection_follows_registration_and_falls_back_to_cpu(
    fake_vendor: VendorProfile,
) -> None:
    assert names() == ("nvidia", "amd", "cpu", "fake")
    assert detect_vendor(tools_answering({"fake-smi": "0 1"})) == "fake"
    # Registered earlier, detected first; cpu (no GPUs) is the fallback wherever it stands.
    assert detect_vendor(tools_answering({"fake-smi": "0", "rocm-smi": "not json"})) == "fake"
    assert (
        detect_vendor(tools_answering({"fake-smi": "0", "nvidia-smi": "0, H100, 1, 2, b, u"}))
        == "nvidia"
    )
    assert detect_vendor(tools_answering({"fake-smi": ""})) == "cpu"
    assert vendors.discover("fake", tools_answering({"fake-smi": "3"}))[0].index == 3
    assert "then fake-smi, else cpu" in vendors.vendor_help()
    assert fake_vendor.tools == "fake-smi"


def test_registering_a_name_twice_is_refused(fake_vendor: VendorProfile) -> None:
    with pytest.raises(ValueError, match="'fake' is registered twice"):
        vendors.register(fake_vendor)


def test_unknown_vendor_is_one_line_naming_the_registered_ones(
    fake_vendor: VendorProfile,
) -> None:
    with pytest.raises(PlanError) as info:
        profile_for("gaudi")
    assert str(info.value) == "unknown vendor 'gaudi': choose one of nvidia, amd, cpu, fake"
    with pytest.raises(PlanError, match=r"choose one of nvidia, amd, cpu, fake$"):
        Run(run_id="r", vendor="gaudi", model=ModelRef(source="org/m"), engine=EngineConfig())


@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", str(tmp_path))  # no fake-smi, nvidia-smi or vllm is ever run
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    return model


def dry_run(vendor: str, model: Path, out: Path) -> Result:
    return CliRunner().invoke(
        main,
        ["--executor", "local", "--vendor", vendor, "--model", str(model), "--qps", "1",
         "--num-prompts", "2", "--dry-run", "--out", str(out)],
        catch_exceptions=False,
    )  # fmt: skip


def test_a_registered_vendor_dry_runs_through_the_cli(
    fake_vendor: VendorProfile, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    result = dry_run("fake", tiny_model, out)
    assert result.exit_code == 0, result.output
    assert "vllm serve" in result.stdout
    assert "# point serve-qps1:" in result.stdout
    assert "--num-prompts 2 --request-rate 1 " in result.stdout
    assert not out.exists()


def test_an_unregistered_vendor_is_refused_by_the_cli(tiny_model: Path, tmp_path: Path) -> None:
    result = dry_run("fake", tiny_model, tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr == "error: unknown vendor 'fake': choose one of nvidia, amd, cpu\n"
