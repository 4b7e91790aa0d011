"""A hub snapshot in the HF cache, read inside a real container through the cache mount."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.executors.agent_mount import stage_agent
from runner.executors.docker import DockerExecutor, DockerSettings
from runner.executors.render.docker_api import to_docker_kwargs
from runner.models import HubSettings, ModelFetch, resolve_model
from runner.plan import EngineConfig, ModelRef, Run
from tests.integration.conftest import LABELS
from tests.unit.fake_hub import build_hub_cache

SHA = "89abcdef0123456789abcdef0123456789abcdef"
CONFIG = {"max_position_embeddings": 2048}
READ = "import sys; print(open(sys.argv[1] + '/config.json').read())"


def run_to_end(client: Any, kwargs: dict[str, Any]) -> tuple[int, str]:
    container = client.containers.create(**kwargs)
    try:
        container.start()
        code = int(container.wait(timeout=120)["StatusCode"])
        return code, container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        container.remove(force=True)


def test_the_job_path_of_a_hub_model_reads_in_the_container(
    docker_client: Any, base_image: str, tmp_path: Path
) -> None:
    hf_home = (tmp_path / "hf").resolve()
    files = {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": b"\0" * 64}
    snapshot = build_hub_cache(hf_home / "hub", "org/tiny-llama", files, SHA)
    model = resolve_model(
        ModelRef("org/tiny-llama"), ModelFetch(), HubSettings(hf_home / "hub", offline=True)
    )
    run = Run(f"itest-hub-{tmp_path.name[-12:]}", "cpu", model, EngineConfig())
    (tmp_path / "runs").mkdir()
    executor = DockerExecutor(
        DockerSettings(out_root=tmp_path / "runs", image=base_image, hf_cache=hf_home)
    )
    prepared = executor.prepare(run, None)
    spec = prepared.spec
    inside = prepared.job.to_dict()["server"]["argv"][2]
    stage_agent((tmp_path / "runs").resolve())  # what execute() does before a container starts
    kwargs = to_docker_kwargs(spec)
    # the spec's mounts and environment, but a reader of the job's model path for the agent
    kwargs.update(command=["python3", "-c", READ, inside], labels={**spec.labels, **LABELS})
    kwargs.update(entrypoint=None)
    kwargs.pop("name")
    code, logs = run_to_end(docker_client, kwargs)
    assert code == 0, logs
    assert json.loads(logs) == CONFIG

    # The control: the snapshot directory mounted alone holds only dangling links.
    alone = {
        "image": base_image,
        "command": ["python3", "-c", READ, "/models/snapshot"],
        "volumes": {str(snapshot): {"bind": "/models/snapshot", "mode": "ro"}},
        "labels": LABELS,
    }
    code, logs = run_to_end(docker_client, alone)
    assert code != 0
    assert "No such file or directory" in logs
