"""--replicas with --executor docker on the real engine: one container per replica on the run's
own network, vllm-router in the agent's container in front of them, everything removed after.

Two tiny-model replicas, one core each (about 2-3 minutes here: both start side by side), and
an image without vllm-router refused in one line before anything starts (seconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.agent.pinning import allowed_cpus, format_cpulist, split_evenly
from runner.cli import main as run_main
from tests.conftest import missing
from tests.integration.conftest import docker_run_args, managed_containers

PROMPTS = 12


def _networks(docker_client: Any, run_id: str | None = None) -> list[Any]:
    label = f"vllm-bench.run-id={run_id}" if run_id else "vllm-bench.managed=true"
    return list(docker_client.networks.list(filters={"label": label}))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_router_in_front_of_two_replica_containers(
    docker_client: Any, cpu_image: str, tiny_model: Path, tmp_path: Path
) -> None:
    if len(allowed_cpus()) < 2:
        missing("two replicas on one core each need 2 CPUs")
    out = tmp_path / "runs"
    args = docker_run_args(
        tiny_model, cpu_image, out, "--pull", "never", "--qps", "inf",
        "--num-prompts", str(PROMPTS), "--replicas", "2", "--spread", "router",
    )  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    status = _load(run_dir / "status.json")
    assert status["status"] == "ok", status
    (point,) = status["points"]
    raw = _load(run_dir / "raw" / f"{point['id']}.json")
    assert raw["completed"] == PROMPTS and raw["failed"] == 0  # every request completed
    counts = point["replicas"]  # what each replica's own /metrics says it served
    assert len(counts) == 2 and all(c > 0 for c in counts), counts
    assert sum(counts) == PROMPTS, counts
    shares = split_evenly(allowed_cpus(), 2)
    assert [r["cpus"] for r in status["replicas"]] == shares
    assert [r["url"] for r in status["replicas"]] == [f"http://replica-{k}:8000" for k in (0, 1)]
    assert [r["exit_status"] for r in status["replicas"]] == [0, 0]  # stopped by the agent
    assert (run_dir / "router.log").is_file()
    prov = _load(run_dir / "provenance.json")
    replicas = prov["container"]["replicas"]
    assert [r["cpuset_cpus"] for r in replicas] == [format_cpulist(s) for s in shares]
    assert all(r["id"] and r["host"] == f"replica-{k}" for k, r in enumerate(replicas))
    for k in range(2):
        log = (run_dir / f"server-{k}.log").read_text()
        assert "Application startup complete" in log, log[-2000:]
        assert f"VLLM_CPU_OMP_THREADS_BIND='{shares[k][0]}'" in log  # bound to its cpuset
    # every container and the network removed; the staging logs too
    run_id = status["run_id"]
    assert not managed_containers(docker_client, run_id)
    assert not _networks(docker_client, run_id)
    assert not (out / ".replicas").exists()


def test_an_image_without_the_router_is_refused_before_anything_starts(
    docker_client: Any, base_image: str, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    before = {c.id for c in managed_containers(docker_client)}
    args = docker_run_args(
        tiny_model, base_image, out, "--pull", "never", "--replicas", "2", "--spread", "router",
    )  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if "vllm-router" in line]
    assert len(lines) == 1 and f"image {base_image} has none" in lines[0], result.stderr
    assert {c.id for c in managed_containers(docker_client)} == before
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]


@pytest.fixture(autouse=True)
def _no_network_left(docker_client: Any) -> Any:
    before = {n.id for n in _networks(docker_client)}
    yield
    assert {n.id for n in _networks(docker_client)} <= before
