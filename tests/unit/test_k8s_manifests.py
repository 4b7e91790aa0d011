"""bench-run manifests: the plan as Kubernetes objects, validated against Kubernetes' schemas."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from runner.agent.pod_contract import (
    ANNOTATION_RUN_IDS,
    COLLECT_PORT,
    JOBS_DIR,
    LABEL_MANAGED,
    LABEL_SWEEP,
    RUNS_DIR,
    job_file_name,
)
from runner.cli import main
from runner.errors import PlanError
from runner.executors.agent_mount import NO_PYTHON_EXIT
from runner.executors.container_paths import AGENT_DIR, HF_TOKEN_FILE
from runner.executors.k8s_settings import manifests_for
from runner.executors.render.k8s import SUPPORTED_K8S, manifest_files, render_plan, to_yaml
from runner.images.catalog import load_catalog
from runner.images.resources import agent_sources
from runner.request import RunRequest
from runner.rundir import EXIT_BAD_JOB
from tests.conftest import missing

TOKEN = "hf_NotARealTokenButLooksLikeOne123"  # a fake, to prove it never appears


def validate(objects: list[dict[str, Any]]) -> None:
    """Every object strictly valid for the oldest and the newest Kubernetes supported."""
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate: pip install -e '.[dev]'")
    for obj in objects:
        for version in SUPPORTED_K8S:
            kubernetes_validate.validate(obj, f"{version}.0", strict=True)
        assert_apply_fits(obj)


def assert_apply_fits(obj: dict[str, Any]) -> None:
    """`kubectl apply -f` can create it: its annotations plus kubectl's copy of the whole object
    (last-applied-configuration, compact JSON) fit the API's 256 KiB of annotations."""
    copy = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    own = obj["metadata"].get("annotations") or {}
    total = sum(len(k.encode()) + len(v.encode()) for k, v in own.items())
    total += len("kubectl.kubernetes.io/last-applied-configuration") + len(copy.encode())
    assert total <= 256 * 1024, f"{obj['kind']} {obj['metadata']['name']}: {total} bytes"


def render(**options: Any) -> tuple[list[dict[str, Any]], list[str]]:
    request = RunRequest.from_options({"sweep_id": "sweep-t", **options})
    plan, _, objects = manifests_for([request])
    validate(objects)
    return objects, [run.run_id for run in plan.runs]


def kind(objects: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == name]


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def jobs_of(objects: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The agent jobs a Job's pods see at JOBS_DIR: every ConfigMap its projected volume lists."""
    (volume,) = [v for v in pod(job)["volumes"] if v["name"] == "jobs"]
    names = [source["configMap"]["name"] for source in volume["projected"]["sources"]]
    maps = {obj["metadata"]["name"]: obj for obj in kind(objects, "ConfigMap")}
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        for key, text in maps[name]["data"].items():
            assert key not in found
            found[key] = json.loads(text)
    return found


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A local model on the "PVC" (tmp_path/pvc stands for where the PVC is mounted here)."""
    directory = tmp_path / "pvc" / "org" / "tiny"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    return directory


@pytest.fixture(autouse=True)
def token_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # what a user has set: it must reach no manifest


@pytest.mark.parametrize("tp", [1, 4])
def test_nvidia_pods_ask_for_gpus_on_the_product_with_the_token_as_a_file(tp: int) -> None:
    objects, run_ids = render(
        vendor="nvidia", model="org/model", tp=tp, gpu_product="NVIDIA-H100-80GB-HBM3",
        model_pvc="models", hf_token_secret="hf", node_selector=("pool=bench",),  # noqa: S106
        qps="1,2,4",
    )  # fmt: skip
    assert TOKEN not in "".join(manifest_files(objects).values())
    assert [yaml.safe_load(to_yaml(obj)) for obj in objects] == objects
    (job,) = kind(objects, "Job")
    spec = pod(job)
    (container,) = spec["containers"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": str(tp)}}
    assert spec["nodeSelector"] == {
        "pool": "bench",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["hostIPC"] is True
    assert container["securityContext"] == {"privileged": False}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["hf-token"]["secret"]["secretName"] == "hf"
    assert volumes["hf-token"]["secret"]["items"] == [{"key": "token", "path": "hf_token"}]
    assert mounts["hf-token"]["readOnly"] is True
    assert env(container)["HF_TOKEN_PATH"] == HF_TOKEN_FILE
    assert not any("TOKEN" in name and name != "HF_TOKEN_PATH" for name in env(container))
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert mounts["shm"]["mountPath"] == "/dev/shm"
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models"}
    assert env(container)["HF_HOME"] == "/models/huggingface"
    (agent_job,) = jobs_of(objects, job).values()
    assert agent_job["run"]["run_id"] == run_ids[0]
    assert agent_job["run"]["model"]["source"] == "org/model"  # the pod downloads it
    assert agent_job["server"]["argv"][:3] == ["vllm", "serve", "org/model"]
    assert [p["id"] for p in agent_job["points"]] == ["serve-qps1", "serve-qps2", "serve-qps4"]
    assert agent_job["executor"]["name"] == "k8s"


def test_the_job_fails_an_index_on_a_refused_configuration_and_ignores_disruptions() -> None:
    objects, run_ids = render(
        vendor="nvidia", model="org/model", active_deadline=7200, max_failed_indexes=3,
        backoff_per_index=2, parallel=4, ttl_after_finished=600,
    )  # fmt: skip
    (job,) = kind(objects, "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"]) == (1, 1)  # never more pods than indexes
    assert spec["backoffLimitPerIndex"] == 2
    assert spec["maxFailedIndexes"] == 1  # at most the number of indexes
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlSecondsAfterFinished"] == 600
    fail_index, ignore = spec["podFailurePolicy"]["rules"]
    assert fail_index["action"] == "FailIndex"
    assert fail_index["onExitCodes"]["values"] == [EXIT_BAD_JOB, NO_PYTHON_EXIT]
    assert fail_index["onExitCodes"]["containerName"] == pod(job)["containers"][0]["name"]
    assert ignore == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert pod(job)["restartPolicy"] == "Never"
    assert json.loads(job["metadata"]["annotations"][ANNOTATION_RUN_IDS]) == run_ids
    for obj in objects:
        assert obj["metadata"]["labels"] == {LABEL_MANAGED: "true", LABEL_SWEEP: "sweep-t"}
        assert obj["metadata"]["namespace"] == "default"


def test_amd_partitions_rocm_security_and_groups_never_privileged() -> None:
    objects, _ = render(
        vendor="amd", model="org/model", tp=8, partition="cpx/nps4",
        gpu_product="AMD-Instinct-MI300X-OAM", shm_size="32g",
    )  # fmt: skip
    (job,) = kind(objects, "Job")
    spec = pod(job)
    (container,) = spec["containers"]
    assert container["resources"] == {"limits": {"amd.com/cpx_nps4": "8"}}
    assert spec["nodeSelector"] == {
        "amd.com/gpu.product-name": "AMD-Instinct-MI300X-OAM",
        "amd.com/gpu.compute-memory-partition": "cpx_nps4",
    }
    assert {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    security = container["securityContext"]
    assert security["privileged"] is False
    assert security["seccompProfile"] == {"type": "Unconfined"}
    assert security["capabilities"] == {"add": ["SYS_PTRACE"]}
    assert spec["securityContext"] == {"supplementalGroups": [44, 109]}
    assert spec["hostIPC"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["shm"]["emptyDir"]["sizeLimit"] == "32Gi"
    assert "tunableop" in volumes
    assert env(container)["PYTORCH_TUNABLEOP_TUNING"] == "0"
    assert "hf-token" not in volumes and "HF_TOKEN_PATH" not in env(container)


def test_privileged_only_when_asked_and_groups_as_given() -> None:
    objects, _ = render(
        vendor="amd", model="org/model", privileged=True, supplemental_group=("39", "992")
    )
    spec = pod(kind(objects, "Job")[0])
    assert spec["containers"][0]["securityContext"] == {"privileged": True}
    assert spec["containers"][0]["resources"] == {"limits": {"amd.com/gpu": "1"}}
    assert spec["securityContext"] == {"supplementalGroups": [39, 992]}


def test_cpu_pods_ask_for_no_gpu_and_read_a_local_model_on_the_pvc(model: Path) -> None:
    objects, _ = render(
        vendor="cpu", model=str(model), model_pvc="models", model_pvc_root=model.parent.parent,
        qps="1", num_prompts=4, input_len=32, output_len=8,
    )  # fmt: skip
    (job,) = kind(objects, "Job")
    spec = pod(job)
    (container,) = spec["containers"]
    assert container["resources"] == {}
    assert "tolerations" not in spec and "nodeSelector" not in spec and "hostIPC" not in spec
    assert container["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert container["securityContext"]["capabilities"] == {"add": ["SYS_NICE"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["shm"]["emptyDir"]["sizeLimit"] == "4Gi"
    (agent_job,) = jobs_of(objects, job).values()
    assert agent_job["server"]["argv"][2] == "/models/org/tiny"
    assert agent_job["run"]["model"]["local_path"] == "/models/org/tiny"
    assert agent_job["env"]["HF_HUB_OFFLINE"] == "1"
    assert agent_job["tuned_env"]["VLLM_CPU_KVCACHE_SPACE"] == "4"  # the catalog's tuning
    assert str(model) not in "".join(manifest_files(objects).values())  # no host path


def test_the_pod_runs_the_mounted_agent_with_the_pod_options() -> None:
    objects, _ = render(vendor="nvidia", model="org/model", hold_s=600)
    agent_maps = {o["metadata"]["name"]: o for o in objects if "-agent-" in o["metadata"]["name"]}
    job = kind(objects, "Job")[0]
    (container,) = pod(job)["containers"]
    assert container["command"] == ["/bin/sh"]
    assert container["args"][-8:] == [
        "--jobs-dir", JOBS_DIR, "--out-root", RUNS_DIR,
        "--collect-port", str(COLLECT_PORT), "--hold-s", "600",
    ]  # fmt: skip
    assert container["ports"] == [
        {"name": "collect", "containerPort": COLLECT_PORT, "protocol": "TCP"}
    ]
    (volume,) = [v for v in pod(job)["volumes"] if v["name"] == "agent"]
    mounted = [source["configMap"] for source in volume["projected"]["sources"]]
    assert sorted(m["name"] for m in mounted) == sorted(agent_maps)
    sources = agent_sources()
    paths = [item["path"] for m in mounted for item in m["items"]]
    assert sorted(paths) == sorted(sources)  # every file once
    for config_map in mounted:
        for item in config_map["items"]:
            text = agent_maps[config_map["name"]]["data"][item["key"]]
            assert text == sources[item["path"]].read_text("utf-8")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["agent"] == {"name": "agent", "mountPath": AGENT_DIR, "readOnly": True}
    assert mounts["runs"]["mountPath"] == RUNS_DIR
    # the default variant is prebuilt: the pod pulls its upstream image, the agent comes here
    assert container["image"] == load_catalog().variant("cuda-vllm-openai").image


PLAN = """vendor: nvidia
model: org/model
qps: [1, 2]
num_prompts: 4
model_pvc: models
matrix:
  tp: [1, 2]
  gpu_product: [NVIDIA-H100-80GB-HBM3, NVIDIA-A100-SXM4-80GB]
  max_num_seqs: [8, 16, 32]
"""


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_a_plan_matrix_becomes_one_indexed_job_per_pod_template(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    out = tmp_path / "k8s"
    result = invoke(["manifests", "--plan", str(plan), "-o", str(out), "--namespace", "bench"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"kubectl apply -f {out}\n"
    files = sorted(out.iterdir())
    objects = [yaml.safe_load(path.read_text()) for path in files]
    validate(objects)
    jobs = kind(objects, "Job")
    assert len(jobs) == 4  # tp x product; max_num_seqs is the index
    seen = set()
    for job in jobs:
        spec = pod(job)
        gpus = spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        product = spec["nodeSelector"]["nvidia.com/gpu.product"]
        seen.add((gpus, product))
        run_ids = json.loads(job["metadata"]["annotations"][ANNOTATION_RUN_IDS])
        assert job["spec"]["completions"] == len(run_ids) == 3
        agent_jobs = jobs_of(objects, job)
        assert sorted(agent_jobs) == sorted(job_file_name(i) for i in range(3))
        for index, run_id in enumerate(run_ids):
            agent_job = agent_jobs[job_file_name(index)]
            assert agent_job["run"]["run_id"] == run_id
            assert agent_job["run"]["engine"]["tp"] == int(gpus)
        assert job["metadata"]["namespace"] == "bench"
        # every file is one object; each ConfigMap's file sorts before its Job's
        job_file = next(p for p, o in zip(files, objects, strict=True) if o is job)
        for source in spec["volumes"][0]["projected"]["sources"]:
            map_file = next(p for p in files if source["configMap"]["name"] + ".yaml" in p.name)
            assert map_file.name < job_file.name
    assert seen == {
        (g, p) for g in ("1", "2") for p in ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB")
    }
    sweeps = {obj["metadata"]["labels"][LABEL_SWEEP] for obj in objects}
    assert len(sweeps) == 1 and sweeps.pop().startswith("sweep-")
    again = invoke(["manifests", "--plan", str(plan), "-o", str(out)])
    assert again.exit_code == 2
    assert "exists and is not an empty directory" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_jobs_are_split_over_configmaps_before_the_limit() -> None:
    requests = [
        RunRequest.from_options(
            {"vendor": "nvidia", "model": "org/model", "max_num_seqs": n, "sweep_id": "sweep-s"}
        )
        for n in range(1, 9)
    ]
    plan, settings, objects = manifests_for(requests)
    validate(objects)
    (jobs_map,) = [o for o in kind(objects, "ConfigMap") if "-jobs-" in o["metadata"]["name"]]
    one = len(jobs_map["data"]["job-0.json"])
    small = dataclasses.replace(settings, configmap_budget=3 * one)
    objects = render_plan(plan, small)
    validate(objects)
    maps = [o for o in kind(objects, "ConfigMap") if "-jobs-" in o["metadata"]["name"]]
    assert len(maps) >= 3
    for config_map in maps:
        size = sum(len(k) + len(v.encode()) for k, v in config_map["data"].items())
        assert size <= 3 * one + 100
    (job,) = kind(objects, "Job")
    agent_jobs = jobs_of(objects, job)
    assert sorted(agent_jobs) == sorted(job_file_name(i) for i in range(8))
    ids = json.loads(job["metadata"]["annotations"][ANNOTATION_RUN_IDS])
    assert [agent_jobs[job_file_name(i)]["run"]["run_id"] for i in range(8)] == ids


def test_the_schemas_refuse_what_a_cluster_would() -> None:
    objects, _ = render(vendor="cpu", model="org/model")
    job = kind(objects, "Job")[0]
    bad = json.loads(json.dumps(job))
    bad["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1  # no such field
    import kubernetes_validate

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, f"{SUPPORTED_K8S[0]}.0", strict=True)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"sweep_id": "Sweep_1"}, "--sweep-id 'Sweep_1'"),
        ({"env": ("HF_TOKEN=abc",)}, "as a Secret (--hf-token-secret NAME)"),
        ({"env": ("HF_HOME=/x",)}, "the pod sets HF_HOME"),
        ({"gpu_product": "AMD Instinct MI300X"}, "is not a Kubernetes label value"),
        ({"toleration": ("dedicated=bench:Sometimes",)}, "the effect must be one of"),
        ({"node_selector": ("pool",)}, "expected KEY=VALUE"),
        ({"image": "cpu-pip"}, "build and push it"),
        ({"revision": "v1"}, "in a pod vLLM downloads the hub model itself"),
        ({"hf_token_secret": "My_Secret"}, "--hf-token-secret 'My_Secret'"),
        ({"partition": "cpx", "vendor": "amd"}, "names both modes"),
        ({"parallel": 0}, "--parallel: must be at least 1"),
        ({"supplemental_group": ("video",)}, "give numeric group ids"),
        ({"shm_size": "lots"}, "--shm-size 'lots'"),
        ({"gpus": "0,1"}, "--gpus is for this host"),
        ({"vllm_path": "/usr/bin/vllm"}, "--vllm is for this host"),
    ],
)
def test_bad_input_is_one_plan_error(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(PlanError, match=None) as caught:
        render(**{"vendor": "cpu", "model": "org/model", **options})
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_local_model_off_the_pvc_is_refused_with_how(model: Path, tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="--model-pvc NAME --model-pvc-root DIR"):
        render(vendor="cpu", model=str(model))
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    with pytest.raises(PlanError, match="which no pod sees"):
        render(vendor="cpu", model=str(model), model_pvc="m", model_pvc_root=elsewhere)


def test_a_template_with_more_run_ids_than_an_annotation_holds_is_several_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runner.executors.render import k8s

    requests = [
        RunRequest.from_options(
            {"vendor": "cpu", "model": "org/model", "max_num_seqs": n, "sweep_id": "sweep-a"}
        )
        for n in range(1, 6)
    ]
    plan, settings, objects = manifests_for(requests)
    validate(objects)
    monkeypatch.setattr(k8s, "ANNOTATION_BUDGET", 2 * (len(plan.runs[0].run_id) + 4))
    objects = render_plan(plan, settings)
    validate(objects)
    jobs = kind(objects, "Job")
    assert len(jobs) == 3  # 2 + 2 + 1 run ids
    names = [job["metadata"]["name"] for job in jobs]
    assert len(set(names)) == 3
    ids = [
        i for job in jobs for i in json.loads(job["metadata"]["annotations"][ANNOTATION_RUN_IDS])
    ]
    assert ids == [run.run_id for run in plan.runs]
    for job in jobs:
        run_ids = json.loads(job["metadata"]["annotations"][ANNOTATION_RUN_IDS])
        found = jobs_of(objects, job)
        assert [found[job_file_name(i)]["run"]["run_id"] for i in range(len(run_ids))] == run_ids


def test_a_refusal_is_one_line_and_writes_nothing(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = invoke(["manifests", "--vendor", "cpu", "--model", str(model), "-o", str(out)])
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --model ") and "--model-pvc-root" in line
    assert not out.exists()


def test_the_dataset_and_the_draft_model_are_read_from_the_pvc(model: Path) -> None:
    pvc = model.parent.parent
    draft = pvc / "org" / "draft"
    draft.mkdir()
    (draft / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    dataset = pvc / "data" / "sharegpt.json"
    dataset.parent.mkdir()
    dataset.write_text("[]")
    spec = json.dumps({"model": str(draft), "num_speculative_tokens": 3})
    objects, _ = render(
        vendor="nvidia", model=str(model), model_pvc="models", model_pvc_root=pvc,
        dataset="sharegpt", dataset_path=str(dataset), engine_arg=(f"speculative-config={spec}",),
    )  # fmt: skip
    (agent_job,) = jobs_of(objects, kind(objects, "Job")[0]).values()
    argv = agent_job["server"]["argv"]
    assert argv[2] == "/models/org/tiny"
    config = json.loads(argv[argv.index("--speculative-config") + 1])
    assert config["model"] == "/models/org/draft"
    assert agent_job["run"]["serve"]["dataset_path"] == "/models/data/sharegpt.json"
    assert all("/models/data/sharegpt.json" in p["argv"] for p in agent_job["points"])
    assert str(pvc) not in "".join(manifest_files(objects).values())


def test_a_cpx_partition_at_tp_1_gets_its_modes_tuning_as_docker_does() -> None:
    from runner.images.tuning import run_tuning

    requests = [
        RunRequest.from_options(
            {"vendor": "amd", "model": "org/model", "tp": tp, "partition": "cpx/nps4",
             "sweep_id": "sweep-c"}
        )
        for tp in (1, 2)
    ]  # fmt: skip
    _, _, objects = manifests_for(requests)
    validate(objects)
    tuned = {}
    for job in kind(objects, "Job"):
        for agent_job in jobs_of(objects, job).values():
            tuned[agent_job["run"]["engine"]["tp"]] = agent_job["tuned_env"]
    cpx = run_tuning("amd", "rocm-vllm-openai", mode="cpx").env
    plain = run_tuning("amd", "rocm-vllm-openai").env
    assert cpx != plain  # the mode changes something, or this test shows nothing
    assert tuned == {1: cpx, 2: plain}
