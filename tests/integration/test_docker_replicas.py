"""--replicas with --executor docker on the real engine: one container per replica on the run's
own network, vllm-router in the agent's container in front of them (or a client per replica),
everything removed after.

Two tiny-model replicas, one core each, per spread (45-85 s each here: both start side by side);
Ctrl-C while they load and a flag their vLLM refuses (seconds each); an image without vllm-router
refused in one line before anything starts; `bench-run cleanup` reaping a leftover network.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.agent.pinning import allowed_cpus, format_cpulist, split_evenly
from runner.cli import main as run_main
from tests.conftest import missing
from tests.integration.conftest import docker_run_args, managed_containers

PROMPTS = 12
BENCH_RUN = str(Path(sys.executable).parent / "bench-run")


def _networks(docker_client: Any, run_id: str | None = None) -> list[Any]:
    label = f"vllm-bench.run-id={run_id}" if run_id else "vllm-bench.managed=true"
    return list(docker_client.networks.list(filters={"label": label}))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("spread", ["router", "clients"])
def test_two_replica_containers_share_one_load(
    docker_client: Any, cpu_image: str, tiny_model: Path, tmp_path: Path, spread: str
) -> None:
    if len(allowed_cpus()) < 2:
        missing("two replicas on one core each need 2 CPUs")
    out = tmp_path / "runs"
    args = docker_run_args(
        tiny_model, cpu_image, out, "--pull", "never", "--qps", "inf",
        "--num-prompts", str(PROMPTS), "--replicas", "2", "--spread", spread,
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
    if spread == "router":
        assert (run_dir / "router.log").is_file()
    else:  # a client per replica, their results merged into the point's record
        assert raw["clients"] == 2 and counts == [PROMPTS // 2] * 2
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


def test_ctrl_c_while_the_replicas_start_removes_every_container_and_the_network(
    docker_client: Any, cpu_image: str, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    flags = ("--pull", "never", "--num-prompts", "4", "--replicas", "2", "--spread", "clients")
    argv = [BENCH_RUN, *docker_run_args(tiny_model, cpu_image, out, *flags)]
    before = {c.id for c in managed_containers(docker_client)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        ours: list[Any] = []
        while len(ours) < 3 and time.monotonic() < deadline:  # two replicas and the agent
            ours = [c for c in managed_containers(docker_client) if c.id not in before]
            time.sleep(0.5)
        assert len(ours) == 3, ours
        time.sleep(5)  # the servers are loading
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert not [c for c in managed_containers(docker_client) if c.id not in before]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    status = _load(run_dir / "status.json")
    assert status["status"] == "interrupted"
    assert not _networks(docker_client, status["run_id"])
    assert all((run_dir / f"server-{k}.log").is_file() for k in (0, 1))  # kept
    assert not (out / ".replicas").exists()


def test_replicas_vllm_refuses_leave_nothing_behind(
    docker_client: Any, cpu_image: str, tiny_model: Path, tmp_path: Path
) -> None:
    """A failure in the replicas' containers (their vLLM refuses a flag): the run says why in
    one line, and the containers, the network and the staged logs are gone."""
    out = tmp_path / "runs"
    before = {c.id for c in managed_containers(docker_client)}
    args = docker_run_args(
        tiny_model, cpu_image, out, "--pull", "never", "--num-prompts", "4", "--qps", "inf",
        "--replicas", "2", "--spread", "clients", "--engine-arg", "no-such-flag=1",
    )  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code != 0
    assert "error: vLLM rejects the engine flags: vllm: error: unrecognized arguments: " in (
        result.stderr
    )
    assert {c.id for c in managed_containers(docker_client)} == before
    assert not (out / ".replicas").exists()


def test_cleanup_reaps_a_leftover_network(docker_client: Any) -> None:
    """What a SIGKILLed bench-run leaves: its run's labelled network."""
    labels = {"vllm-bench.managed": "true", "vllm-bench.run-id": "leftover-net"}
    network = docker_client.networks.create("vllm-bench-leftover-net", labels=labels)
    try:
        listed = CliRunner().invoke(run_main, ["cleanup", "--dry-run"], catch_exceptions=False)
        assert "would remove network vllm-bench-leftover-net (run leftover-net)" in listed.stdout
        assert _networks(docker_client, "leftover-net"), "--dry-run removed it"
        result = CliRunner().invoke(run_main, ["cleanup"], catch_exceptions=False)
        assert result.exit_code == 0
        assert "removed network vllm-bench-leftover-net" in result.stdout
        assert not _networks(docker_client, "leftover-net")
    finally:
        if _networks(docker_client, "leftover-net"):
            network.remove()


@pytest.fixture(autouse=True)
def _no_network_left(docker_client: Any) -> Any:
    before = {n.id for n in _networks(docker_client)}
    yield
    assert {n.id for n in _networks(docker_client)} <= before
