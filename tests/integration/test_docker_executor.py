"""bench-run --executor docker on the real engine: a CPU sweep in a container, and its cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import main as run_main
from tests.integration.conftest import docker_run_args, managed_containers

SECRET = "hf_integration_token_9876"
BENCH_RUN = str(Path(sys.executable).parent / "bench-run")


def test_cpu_sweep_in_a_container(
    docker_client: Any, cpu_image: str, tiny_model: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = tmp_path / "runs"
    args = docker_run_args(
        tiny_model, cpu_image, out, "--pull", "never", "--qps", "4,inf", "--num-prompts", "8"
    )
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "ok"
    # One load generator ran the sweep inside the container, with the image's own Python.
    assert status["client"]["mode"] == "persistent", status.get("client")
    assert (run_dir / "logs" / "loadgen.log").is_file()
    for point in ("serve-qps4", "serve-qpsinf"):
        raw = json.loads((run_dir / "raw" / f"{point}.json").read_text())
        assert raw["completed"] == 8 and raw["failed"] == 0
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["container"]["image"] == cpu_image
    assert prov["container"]["image_id"].startswith("sha256:")
    assert prov["container"]["image_labels"]["vllm-bench.vendor"] == "cpu"
    assert prov["vllm_version"].startswith("0.32")
    assert str(run_dir) in result.stderr, "progress names the host's run directory"
    # The token was mounted as a file: it is in no file of the run directory.
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    assert not managed_containers(docker_client, status["run_id"]), "the container was not removed"
    assert not (out / ".jobs" / f"{status['run_id']}.json").exists()


def test_a_run_stopped_midway_leaves_no_container(
    docker_client: Any, cpu_image: str, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    flags = ("--pull", "never", "--qps", "2", "--num-prompts", "4")
    argv = [BENCH_RUN, *docker_run_args(tiny_model, cpu_image, out, *flags)]
    env = {**os.environ, "HF_TOKEN": SECRET}
    before = {c.id for c in managed_containers(docker_client)}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 120
        ours: list[Any] = []
        while not ours and time.monotonic() < deadline:
            ours = [c for c in managed_containers(docker_client) if c.id not in before]
            time.sleep(0.5)
        assert ours, "no container appeared"
        time.sleep(5)
        inspected = json.dumps(docker_client.api.inspect_container(ours[0].id))
        assert SECRET not in inspected, "the token shows in docker inspect"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    left = [c for c in managed_containers(docker_client) if c.id not in before]
    assert not left, "a container was left"
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"


def test_cleanup_reaps_leftover_containers(docker_client: Any, base_image: str) -> None:
    # What a SIGKILLed bench-run leaves: a labelled container still running.
    leftover = docker_client.containers.run(
        base_image, ["sleep", "300"], detach=True,
        labels={"vllm-bench.managed": "true", "vllm-bench.run-id": "leftover-run"},
    )  # fmt: skip
    try:
        listed = CliRunner().invoke(run_main, ["cleanup", "--dry-run"], catch_exceptions=False)
        assert listed.exit_code == 0
        assert f"would remove {leftover.id[:12]} (run leftover-run, running)" in listed.stdout
        assert managed_containers(docker_client, "leftover-run"), "--dry-run removed it"
        result = CliRunner().invoke(run_main, ["cleanup"], catch_exceptions=False)
        assert result.exit_code == 0
        assert f"removed {leftover.id[:12]}" in result.stdout
        assert not managed_containers(docker_client, "leftover-run")
    finally:
        if managed_containers(docker_client, "leftover-run"):
            leftover.remove(force=True)
