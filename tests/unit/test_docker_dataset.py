"""--dataset-path with --executor docker: the file mounted read-only, the job pointed at it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import PlanError
from runner.executors.container_paths import MountSpec, container_dataset_path, map_paths
from runner.executors.container_spec import build_spec
from runner.executors.docker import DockerExecutor, DockerSettings
from runner.executors.render.docker_cli import docker_run_line
from runner.plan import EngineConfig, ModelRef, Run
from runner.scenarios.serve import ServeParams
from runner.vendors import PROFILES

RUN_ID = "20261122-031500-tiny-llama-cpu-da7a00"


def make_run(dataset: str, dataset_path: Path) -> Run:
    return Run(
        run_id=RUN_ID,
        vendor="cpu",
        model=ModelRef(source="org/model"),
        engine=EngineConfig(),
        params={
            "serve": ServeParams(
                qps=(2.0,), num_prompts=10, dataset=dataset, dataset_path=str(dataset_path)
            )
        },
        input_len=256,
        output_len=32,
    )


def test_the_spec_mounts_the_dataset_file_read_only(tmp_path: Path) -> None:
    data = tmp_path / "share gpt.json"
    run, profile = make_run("sharegpt", data), PROFILES["cpu"]
    paths = map_paths(run, profile, run_dir_host=tmp_path / "runs")
    spec = build_spec(run, image="img:1", profile=profile, paths=paths)
    assert MountSpec("bind", str(data), "/datasets/share gpt.json", True) in spec.mounts
    assert f"source={data}" in docker_run_line(spec)
    with pytest.raises(PlanError, match="absolute path"):
        map_paths(make_run("sharegpt", Path("relative.json")), profile, run_dir_host=tmp_path)


@pytest.mark.parametrize("dataset", ["sharegpt", "sonnet"])
def test_the_job_reads_the_dataset_where_the_container_has_it(dataset: str, tmp_path: Path) -> None:
    data = tmp_path / f"{dataset}.data"
    data.write_text("{}")
    executor = DockerExecutor(DockerSettings(out_root=tmp_path / "runs", image="img:1"))
    run = make_run(dataset, data)
    prepared = executor.prepare(run, None)
    spec, job = prepared.spec, prepared.job.to_dict()
    inside = container_dataset_path(data)
    assert inside == f"/datasets/{dataset}.data"
    assert any(m.source == str(data) and m.target == inside and m.read_only for m in spec.mounts)
    text = json.dumps(job)
    assert str(data) not in text, "the host path would not exist in the container"
    (point,) = job["points"]
    if dataset == "sharegpt":
        argv = point["argv"]
        assert argv[argv.index("--dataset-path") + 1] == inside
    else:  # the agent builds the sonnet prompts from the mounted source
        assert point["sonnet"]["source"] == inside
