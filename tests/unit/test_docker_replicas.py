"""--replicas with --executor docker: each replica's container spec, the dry run's lines, the
agent's side of a replica it did not start (runner/agent/remote.py) with real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.agent.procs import ServerFailed
from runner.agent.remote import RemoteServer, wrapper_argv
from runner.executors.container_spec import LABEL_GPUS, LABEL_MANAGED, LABEL_RUN_ID
from runner.executors.docker import CONTAINER_PORT, DockerExecutor, DockerSettings
from runner.executors.docker_replicas import LABEL_REPLICA, log_dir_container, network_name
from runner.executors.render.docker_api import to_docker_kwargs
from runner.executors.render.docker_cli import docker_run_flags
from runner.plan import Plan, Run
from runner.replicas import Replicas
from tests.unit.job_runs import local_model, make_run

SETS_2 = ((), ())


def _run(tmp_path: Path, vendor: str, spread: str, sets: tuple[tuple[int, ...], ...]) -> Run:
    replicas = Replicas(len(sets), spread, sets)
    return make_run(
        local_model(tmp_path), vendor=vendor, scenarios=("serve",), replicas=replicas,
        run_id="r1", env=(("VLLM_CPU_KVCACHE_SPACE", "1"),),
    )  # fmt: skip


def _executor(tmp_path: Path, **settings: object) -> DockerExecutor:
    return DockerExecutor(DockerSettings(out_root=tmp_path / "runs", image="img:1", **settings))  # type: ignore[arg-type]


def test_cpu_replicas_get_a_container_each_on_the_run_network(tmp_path: Path) -> None:
    run = _run(tmp_path, "cpu", "router", SETS_2)
    prepared = _executor(tmp_path, cpus="0-3").prepare(run, None)
    agent, replicas = prepared.spec, prepared.replicas
    assert agent.network == network_name("r1") and agent.cpuset_cpus == "0-3"
    assert len(replicas) == 2
    for k, spec in enumerate(replicas):
        assert spec.name == f"vllm-bench-r1-replica-{k}"
        assert spec.network == agent.network and spec.network_aliases == (f"replica-{k}",)
        assert spec.labels[LABEL_MANAGED] == "true" and spec.labels[LABEL_RUN_ID] == "r1"
        assert spec.labels[LABEL_REPLICA] == str(k)
        assert spec.mounts == agent.mounts  # the same model, output root and caches
        # an even share of --cpus, and vLLM's CPU backend told to bind its threads to it
        assert spec.cpuset_cpus == ["0-1", "2-3"][k]
        assert spec.environment["VLLM_CPU_OMP_THREADS_BIND"] == spec.cpuset_cpus
        assert spec.environment["VLLM_CPU_KVCACHE_SPACE"] == "1"  # --env over the tuning
        log = f"{log_dir_container('r1')}/server-{k}.log"
        assert spec.command[:3] == ("-c", wrapper_argv("/bin/sh", log, [])[2], log)
        server = list(spec.command[3:])
        assert server[:3] == ["vllm", "serve", "/models/tiny-llama"]
        assert server[server.index("--host") + 1] == "0.0.0.0"  # noqa: S104
        assert server[server.index("--port") + 1] == str(CONTAINER_PORT)
    servers = prepared.job.replicas["servers"]  # type: ignore[index]
    assert [s["base_url"] for s in servers] == ["http://replica-0:8000", "http://replica-1:8000"]
    assert [s["remote"]["cpus"] for s in servers] == [[0, 1], [2, 3]]
    router = prepared.job.replicas["router"]["argv"]  # type: ignore[index]
    urls = router[router.index("--worker-urls") + 1 : router.index("--policy")]
    assert urls == ["http://replica-0:8000", "http://replica-1:8000"]
    assert router[router.index("--port") + 1] == "8000"  # in the agent's container


@pytest.mark.parametrize(
    ("vendor", "visible"), [("amd", "HIP_VISIBLE_DEVICES"), ("nvidia", "CUDA_VISIBLE_DEVICES")]
)
def test_gpu_replicas_get_only_their_gpus(tmp_path: Path, vendor: str, visible: str) -> None:
    run = _run(tmp_path, vendor, "clients", ((2, 3), (4, 5)))
    prepared = _executor(tmp_path).prepare(run, None)
    for k, spec in enumerate(prepared.replicas):
        gpus = [(2, 3), (4, 5)][k]
        assert spec.labels[LABEL_GPUS] == ",".join(map(str, gpus))  # the host's ids
        if vendor == "amd":  # the replica's render nodes only, and numbered from 0 inside
            nodes = [d for d in spec.devices if "renderD" in d]
            assert nodes == [f"/dev/dri/renderD{128 + g}" for g in gpus]
        else:
            assert [list(r.device_ids) for r in spec.device_requests] == [[str(g) for g in gpus]]
        if visible in spec.environment:
            assert spec.environment[visible] == "0,1"
        server = prepared.job.replicas["servers"][k]  # type: ignore[index]
        assert server["env"] == {}  # the container's own variables select its GPUs
    assert prepared.spec.device_requests or prepared.spec.devices  # the agent sees them all


def test_dp_is_one_server_in_the_agent_container(tmp_path: Path) -> None:
    run = _run(tmp_path, "nvidia", "dp", ((2,), (3,)))
    prepared = _executor(tmp_path, gpus=(2, 3)).prepare(run, None)
    assert prepared.replicas == () and prepared.spec.network is None
    server = prepared.job.replicas["servers"][0]  # type: ignore[index]
    assert server["env"] == {"CUDA_VISIBLE_DEVICES": "0,1"}  # the container's numbering
    assert "--data-parallel-size" in server["argv"]


def test_network_and_alias_reach_the_engine_and_the_cli_line(tmp_path: Path) -> None:
    spec = _executor(tmp_path).prepare(_run(tmp_path, "cpu", "router", SETS_2), None).replicas[1]
    kwargs = to_docker_kwargs(spec)
    assert kwargs["network"] == "vllm-bench-r1"
    assert kwargs["networking_config"] == {"vllm-bench-r1": {"Aliases": ["replica-1"]}}
    flags = docker_run_flags(spec)
    assert ["--network", "vllm-bench-r1"] in flags and ["--network-alias", "replica-1"] in flags
    assert ["--cpuset-cpus", spec.cpuset_cpus] in flags


def test_dry_run_shows_every_container_and_the_network(tmp_path: Path) -> None:
    run = _run(tmp_path, "cpu", "router", SETS_2)
    text = _executor(tmp_path, cpus="0-1").describe(Plan(runs=(run,)))
    assert "docker network create --label=vllm-bench.run-id=r1" in text
    assert text.count("docker run \\") == 3  # the agent's and one per replica
    assert "--name vllm-bench-r1-replica-0" in text and "--name vllm-bench-r1-replica-1" in text
    assert "--network-alias replica-1" in text and "--cpuset-cpus 1" in text
    assert "vllm-router" in text and "docker network rm vllm-bench-r1" in text


# -- the agent's side: a replica it did not start, through the wrapper, real processes ----------
_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404); self.end_headers()
    def log_message(self, *a): print("GET", self.path, flush=True)
print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wrapped(tmp_path: Path, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "server-0.log"
    return subprocess.Popen(wrapper_argv("/bin/sh", str(log), argv)), log


def test_remote_server_ready_then_stopped_through_the_stop_file(tmp_path: Path) -> None:
    port = _free_port()
    wrapper, log = _wrapped(tmp_path, [sys.executable, "-c", _SERVER, str(port)])
    copy = tmp_path / "run" / "server-0.log"
    copy.parent.mkdir()
    server = RemoteServer(
        ["vllm"], log=log, copy_to=copy, health_url=f"http://127.0.0.1:{port}/health",
        stop_timeout_s=20,
    )  # fmt: skip
    try:
        assert server.wait_ready(30) >= 0
        server.check_alive()
        assert server.stop() == 143  # SIGTERM, from the wrapper's watcher
        assert wrapper.wait(10) == 143
        assert (tmp_path / "server-0.log.exit").read_text().strip() == "143"
        assert "serving" in copy.read_text()  # the log, in the run directory
    finally:
        wrapper.kill()


def test_remote_server_that_dies_fails_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('CUDA out of memory', flush=True); sys.exit(3)"
    wrapper, log = _wrapped(tmp_path, [sys.executable, "-c", code])
    server = RemoteServer(
        ["vllm"], log=log, copy_to=tmp_path / "copy.log",
        health_url=f"http://127.0.0.1:{_free_port()}/health", stop_timeout_s=5,
    )  # fmt: skip
    assert wrapper.wait(10) == 3
    with pytest.raises(ServerFailed) as caught:
        server.wait_ready(30)
    assert "exited with status 3 before it was ready" in caught.value.reason
    assert any("CUDA out of memory" in line for line in caught.value.log_tail)
    assert server.stop() == 3


def test_docker_stop_reaches_the_server_through_the_wrapper(tmp_path: Path) -> None:
    """`docker stop` sends SIGTERM to the wrapper (the container's PID 1): the server gets it."""
    port = _free_port()
    wrapper, log = _wrapped(tmp_path, [sys.executable, "-c", _SERVER, str(port)])
    deadline = time.monotonic() + 30
    while "serving" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    wrapper.terminate()
    assert wrapper.wait(10) == 143
    assert json.loads((tmp_path / "server-0.log.exit").read_text()) == 143


def test_remote_server_whose_flags_vllm_refuses_is_a_rejected_configuration(
    tmp_path: Path,
) -> None:
    code = (
        "import sys; print('usage: vllm serve [-h]', file=sys.stderr); "
        "print('vllm serve: error: unrecognized arguments: --no-such-flag', file=sys.stderr); "
        "sys.exit(2)"
    )
    wrapper, log = _wrapped(tmp_path, [sys.executable, "-c", code])
    server = RemoteServer(
        ["vllm"], log=log, copy_to=tmp_path / "copy.log",
        health_url=f"http://127.0.0.1:{_free_port()}/health", stop_timeout_s=5,
    )  # fmt: skip
    assert wrapper.wait(10) == 2
    with pytest.raises(ServerFailed) as caught:
        server.wait_ready(30)
    assert caught.value.rejected
    assert caught.value.cause == "vllm serve: error: unrecognized arguments: --no-such-flag"
