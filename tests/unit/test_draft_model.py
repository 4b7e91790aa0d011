"""The draft model of speculative decoding: resolved on the host and mapped into containers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from runner.engine_flags import draft_model
from runner.entry import _with_draft
from runner.errors import PlanError, PreflightError
from runner.executors.container_paths import (
    DRAFT_MODELS_DIR,
    HF_CACHE_DIR,
    MODELS_DIR,
    MountSpec,
)
from runner.executors.docker import DockerExecutor, DockerSettings
from runner.jobs import Deadlines, PathMap, build_job
from runner.models import HubSettings, ModelFetch, resolve_plan
from runner.plan import EngineConfig, ModelRef, Plan, Run, parse_engine_args
from tests.unit.fake_hub import build_hub_cache
from tests.unit.job_runs import HOST, PORT, VLLM

MAIN, DRAFT = "org/big-llama", "org/draft-llama"
SHA_MAIN, SHA_DRAFT = "1" * 40, "2" * 40
FILES = {"config.json": json.dumps({"max_position_embeddings": 2048}).encode()}


def model_dir(root: Path, name: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    return directory


def spec_model(argv: tuple[str, ...] | list[str]) -> str:
    config = json.loads(argv[list(argv).index("--speculative-config") + 1])
    assert isinstance(config, dict)
    return str(config["model"])


def old_flags(draft: str) -> EngineConfig:
    args = [f"speculative-model={draft}", "num-speculative-tokens=5"]
    return EngineConfig(extra_args=parse_engine_args(args))


def planned(model: ModelRef, engine: EngineConfig) -> Run:
    """A run as entry builds it: the draft checked like --model, its path in the flag."""
    engine, draft = _with_draft(engine)
    return Run("20261122-031500-big-cpu-1a2b3c", "cpu", model, engine, draft_model=draft)


def test_a_local_draft_is_given_to_vllm_as_its_full_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    draft = model_dir(tmp_path, "draft")
    monkeypatch.chdir(tmp_path)
    run = planned(ModelRef.resolve(str(model_dir(tmp_path, "big"))), old_flags("./draft"))
    assert run.draft_model == ModelRef("./draft", str(draft))
    assert draft_model(run.engine.extra_args) == str(draft)
    assert PathMap.host(run).draft_model == str(draft)
    assert run.to_dict()["draft_model"] == {"source": "./draft", "local_path": str(draft)}


def test_a_missing_local_draft_is_refused_like_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as exc:
        _with_draft(old_flags(str(tmp_path / "nope")))
    assert "does not exist: check --engine-arg speculative-config's model" in str(exc.value)


def test_a_hub_draft_is_resolved_from_the_cache_like_the_main_model(tmp_path: Path) -> None:
    cache = tmp_path / "hf" / "hub"
    main = build_hub_cache(cache, MAIN, FILES, SHA_MAIN)
    draft = build_hub_cache(cache, DRAFT, FILES, SHA_DRAFT)
    run = planned(ModelRef.resolve(MAIN), old_flags(DRAFT))
    assert run.draft_model == ModelRef(DRAFT)
    plan = resolve_plan(Plan((run,)), ModelFetch(), HubSettings(cache_dir=cache, offline=True))
    (resolved,) = plan.runs
    assert resolved.model.local_path == str(main)
    assert resolved.draft_model == ModelRef(DRAFT, str(draft))
    assert spec_model(resolved.engine.args(random_data=True)) == str(draft)


def test_a_draft_missing_from_the_cache_fails_naming_the_draft(tmp_path: Path) -> None:
    cache = tmp_path / "hf" / "hub"
    build_hub_cache(cache, MAIN, FILES, SHA_MAIN)
    run = planned(ModelRef.resolve(MAIN), old_flags(DRAFT))
    with pytest.raises(PreflightError) as exc:
        resolve_plan(Plan((run,)), ModelFetch(), HubSettings(cache_dir=cache, offline=True))
    message = str(exc.value)
    assert message.startswith("the draft model (--speculative-config): org/draft-llama is not in")
    assert "HF_HUB_OFFLINE=1" in message and "\n" not in message


def test_a_dry_run_keeps_an_uncached_draft_as_its_repo_id(tmp_path: Path) -> None:
    cache = tmp_path / "hf" / "hub"
    build_hub_cache(cache, MAIN, FILES, SHA_MAIN)
    run = planned(ModelRef.resolve(MAIN), old_flags(DRAFT))
    seen: list[str] = []
    hub = HubSettings(cache_dir=cache, offline=True)
    (resolved,) = resolve_plan(Plan((run,)), ModelFetch(), hub, dry_run=True, note=seen.append).runs
    assert spec_model(resolved.engine.args(random_data=True)) == DRAFT
    assert any(DRAFT in line for line in seen)


def docker_prepare(
    tmp_path: Path, run: Run, hf_home: Path
) -> tuple[dict[str, MountSpec], dict[str, Any]]:
    executor = DockerExecutor(
        DockerSettings(out_root=tmp_path / "runs", image="some/image:1", hf_cache=hf_home)
    )
    prepared = executor.prepare(run, None)
    return {m.target: m for m in prepared.spec.mounts}, prepared.job.to_dict()


def test_docker_mounts_a_local_draft_read_only_and_points_vllm_at_it(tmp_path: Path) -> None:
    draft = model_dir(tmp_path / "drafts", "big")  # the same name as the model: no clash
    run = planned(ModelRef.resolve(str(model_dir(tmp_path, "big"))), old_flags(str(draft)))
    run = dataclasses.replace(run, scenarios=("serve", "latency"))
    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    mounts, job = docker_prepare(tmp_path, run, hf_home)
    inside = f"{DRAFT_MODELS_DIR}/big"
    assert mounts[inside].source == str(draft) and mounts[inside].read_only
    assert f"{MODELS_DIR}/big" in mounts
    assert spec_model(job["server"]["argv"]) == inside
    latency = next(p for p in job["points"] if p["id"] == "latency")
    assert spec_model(latency["argv"]) == inside  # the offline benchmarks too
    assert job["run"]["draft_model"] == {"source": inside, "local_path": inside}
    assert str(draft) not in json.dumps(job)  # no host path reaches the container


def test_docker_reaches_a_hub_draft_through_the_cache_mount(tmp_path: Path) -> None:
    hf_home = tmp_path / "hf"
    build_hub_cache(hf_home / "hub", MAIN, FILES, SHA_MAIN)
    snapshot = build_hub_cache(hf_home / "hub", DRAFT, FILES, SHA_DRAFT)
    run = planned(ModelRef.resolve(MAIN), old_flags(DRAFT))
    hub = HubSettings(cache_dir=hf_home / "hub", offline=True)
    (resolved,) = resolve_plan(Plan((run,)), ModelFetch(), hub).runs
    mounts, job = docker_prepare(tmp_path, resolved, hf_home)
    assert not any(target.startswith(DRAFT_MODELS_DIR) for target in mounts)
    inside = f"{HF_CACHE_DIR}/hub/models--org--draft-llama/snapshots/{SHA_DRAFT}"
    assert spec_model(job["server"]["argv"]) == inside
    assert str(snapshot) not in json.dumps(job)


def test_a_host_job_gives_the_host_path(tmp_path: Path) -> None:
    draft = model_dir(tmp_path, "draft")
    run = planned(ModelRef.resolve(str(model_dir(tmp_path, "big"))), old_flags(str(draft)))
    job = build_job(
        run, vllm=VLLM, host=HOST, port=PORT, deadlines=Deadlines(), executor={}, commit=None
    ).to_dict()
    assert job["server"] is not None and spec_model(job["server"]["argv"]) == str(draft)
    assert job["run"]["engine"]["translated"][0]["asked"].startswith("--speculative-model")
