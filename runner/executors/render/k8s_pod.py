"""One pod template: where the pod finds the run's files, its container, volumes and security.

Pure, like render/k8s.py, which makes Jobs of these templates.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from runner.agent import tunableop
from runner.agent.pod_contract import (
    COLLECT_PORT,
    JOBS_DIR,
    RUNS_DIR,
)
from runner.agent.util import is_secret_name
from runner.errors import PlanError
from runner.executors.agent_mount import SHELL, launcher_argv
from runner.executors.container_paths import (
    AGENT_DIR,
    HF_CACHE_DIR,
    HF_TOKEN_FILE,
    TOKEN_PATH_VAR,
    VLLM_CACHE_DIR,
)
from runner.executors.render.k8s_input import (
    PULL_POLICIES,
    K8sSettings,
    parse_toleration,
    shm_quantity,
)
from runner.jobs import PathMap, vendor_env
from runner.plan import ModelRef, Run
from runner.vendors import VendorProfile, profile_for

MODEL_PVC_DIR = "/models"  # where the model PVC is mounted in the pod
PVC_HF_HOME = "huggingface"  # HF_HOME on the model PVC: hub models are downloaded there
CONTAINER = "agent"
CONTAINER_PORT = 8000  # vLLM's port inside the pod
# The vendor profiles' groups (names) as numeric ids: a pod cannot name a group. video is 44 on
# Debian and Ubuntu; render is a dynamic system group (109 on Ubuntu 22.04 hosts): check it
# with `getent group render` on the nodes and give --supplemental-group where it differs.
WELL_KNOWN_GIDS = {"video": 44, "render": 109}


# -- where the pod finds things ---------------------------------------------------------------
def _on_pvc(local: str, settings: K8sSettings, what: str) -> str:
    """A local path's place in the pod: under the model PVC, or one PlanError saying how."""
    root = posixpath.normpath(settings.model_pvc_root) if settings.model_pvc_root else None
    if root is None or not (local == root or local.startswith(root.rstrip("/") + "/")):
        raise PlanError(
            f"{what} {local} is on this machine, which no pod sees: put it on the model PVC and "
            "give --model-pvc NAME --model-pvc-root DIR (where that PVC is mounted here), or "
            "give a Hugging Face repo id, which the pod downloads into the PVC"
        )
    relative = local[len(root.rstrip("/")) :].strip("/")  # both absolute and normalized
    return f"{MODEL_PVC_DIR}/{relative}" if relative else MODEL_PVC_DIR


def _model_in_pod(model: ModelRef, settings: K8sSettings, what: str) -> str:
    if model.local_path is None:
        return model.source  # a hub id: vLLM downloads it into HF_HOME
    return _on_pvc(model.local_path, settings, what)


def pod_paths(run: Run, settings: K8sSettings) -> PathMap:
    """The run's model, draft model and dataset as the pod sees them."""
    model = _model_in_pod(run.model, settings, "--model")
    draft = None
    if run.draft_model is not None:
        draft = _model_in_pod(run.draft_model, settings, "the draft model")
    dataset = None
    if run.serve.dataset_path:
        dataset = _on_pvc(run.serve.dataset_path, settings, "--dataset-path")
    return PathMap(model, dataset, draft)


def tool_env(run: Run, profile: VendorProfile, settings: K8sSettings) -> dict[str, str]:
    """The container's environment, set by the tool (per pod template, not per run)."""
    env = {"PYTHONUNBUFFERED": "1", "VLLM_CACHE_ROOT": VLLM_CACHE_DIR}
    env["HF_HOME"] = f"{MODEL_PVC_DIR}/{PVC_HF_HOME}" if settings.model_pvc else HF_CACHE_DIR
    if settings.secret is not None:
        env[TOKEN_PATH_VAR] = HF_TOKEN_FILE
    if profile.tunableop_dir is not None and not (
        {tunableop.TUNING, tunableop.FILENAME} & dict(run.env).keys()
    ):
        env[tunableop.TUNING] = "0"  # as docker: the agent tunes in its own warm-up pass
    user = vendor_env(run)
    for key, value in env.items():
        if key in user and user[key] != value:
            raise PlanError(f"--env {key}={user[key]}: the pod sets {key}={value}; drop it")
    for key in user:
        if is_secret_name(key) and key != TOKEN_PATH_VAR:
            raise PlanError(
                f"--env {key}: the manifests would hold its value in a ConfigMap; give the "
                "Hugging Face token as a Secret (--hf-token-secret NAME)"
            )
    return env


def partition_of(run: Run) -> str | None:
    """The AMD device plugin's partition resource suffix (cpx_nps4) of --partition cpx/nps4."""
    expected: str | None = getattr(run, "expect_partition", None)
    if expected is None:
        return None
    if "/" not in expected:
        raise PlanError(
            f"--partition {expected}: a Kubernetes partition resource names both modes, "
            "as in cpx/nps4 (amd.com/cpx_nps4)"
        )
    return expected.replace("/", "_")


def _security(profile: VendorProfile, settings: K8sSettings) -> dict[str, Any]:
    if settings.privileged:
        return {"privileged": True}
    context: dict[str, Any] = {"privileged": False}
    if profile.cap_add:
        context["capabilities"] = {"add": list(profile.cap_add)}
    if "seccomp=unconfined" in profile.security_opt:
        context["seccompProfile"] = {"type": "Unconfined"}
    return context


def gpu_resources(run: Run, profile: VendorProfile) -> dict[str, Any]:
    if not profile.uses_gpus or profile.k8s_resource is None:
        return {}
    partition = partition_of(run)
    name = profile.k8s_resource
    if partition is not None:
        name = f"{name.split('/')[0]}/{partition}"  # the device plugin's mixed strategy
    return {"limits": {name: str(run.engine.tp)}}


def node_selector(run: Run, settings: K8sSettings) -> dict[str, str]:
    selector = dict(settings.node_selector)
    product = settings.product(run.run_id)
    partition = partition_of(run)
    if product is not None:
        key = {"nvidia": "nvidia.com/gpu.product", "amd": "amd.com/gpu.product-name"}.get(
            run.vendor
        )
        if key is None:
            raise PlanError(f"--gpu-product {product}: the {run.vendor} vendor has no GPU label")
        selector[key] = product
    if partition is not None:
        selector["amd.com/gpu.compute-memory-partition"] = partition
    return selector


def _tolerations(profile: VendorProfile, settings: K8sSettings) -> list[dict[str, str]]:
    tolerations = [parse_toleration(item) for item in settings.tolerations]
    if profile.uses_gpus and profile.k8s_resource is not None:
        tolerations.insert(
            0, {"key": profile.k8s_resource, "operator": "Exists", "effect": "NoSchedule"}
        )
    return tolerations


def _volumes(
    profile: VendorProfile, settings: K8sSettings, job_maps: Sequence[str], agent: list[Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the container's mounts of them."""
    shm = shm_quantity(settings.shm_size or profile.default_shm_size)
    volumes: list[dict[str, Any]] = [
        {"name": "jobs", "projected": {"sources": [{"configMap": {"name": n}} for n in job_maps]}},
        {"name": "agent", "projected": {"sources": agent, "defaultMode": 0o444}},
        {"name": "runs", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        {"name": "vllm-cache", "emptyDir": {}},
    ]  # fmt: skip
    mounts: list[dict[str, Any]] = [
        {"name": "jobs", "mountPath": JOBS_DIR, "readOnly": True},
        {"name": "agent", "mountPath": AGENT_DIR, "readOnly": True},
        {"name": "runs", "mountPath": RUNS_DIR},
        {"name": "shm", "mountPath": "/dev/shm"},  # noqa: S108 (the pod's own, a memory emptyDir)
        {"name": "vllm-cache", "mountPath": VLLM_CACHE_DIR},
    ]
    if settings.model_pvc is not None:
        volumes.append(
            {"name": "models", "persistentVolumeClaim": {"claimName": settings.model_pvc}}
        )
        mounts.append({"name": "models", "mountPath": MODEL_PVC_DIR})
    else:
        volumes.append({"name": "hf-cache", "emptyDir": {}})
        mounts.append({"name": "hf-cache", "mountPath": HF_CACHE_DIR})
    if settings.secret is not None:
        name, key = settings.secret
        token = PurePosixPath(HF_TOKEN_FILE)
        volumes.append({"name": "hf-token", "secret": {
            "secretName": name, "items": [{"key": key, "path": token.name}], "defaultMode": 0o400,
        }})  # fmt: skip
        mounts.append({"name": "hf-token", "mountPath": str(token.parent), "readOnly": True})
    if profile.tunableop_dir is not None:
        volumes.append({"name": "tunableop", "emptyDir": {}})
        mounts.append({"name": "tunableop", "mountPath": profile.tunableop_dir})
    return volumes, mounts


def _groups(profile: VendorProfile, settings: K8sSettings) -> list[int]:
    if settings.supplemental_groups is not None:
        return list(settings.supplemental_groups)
    return [WELL_KNOWN_GIDS[g] for g in profile.group_add if g in WELL_KNOWN_GIDS]


def pod_spec(
    run: Run, settings: K8sSettings, job_maps: Sequence[str], agent: list[Any]
) -> dict[str, Any]:
    """The pod template's spec for `run` (and every run sharing its template)."""
    profile = profile_for(run.vendor)
    volumes, mounts = _volumes(profile, settings, job_maps, agent)
    agent_args = [
        *("--jobs-dir", JOBS_DIR, "--out-root", RUNS_DIR),
        *("--collect-port", str(COLLECT_PORT), "--hold-s", str(settings.hold_s)),
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": PULL_POLICIES[settings.pull],
        "command": [SHELL],
        "args": launcher_argv(agent_args),
        "env": [{"name": k, "value": v} for k, v in tool_env(run, profile, settings).items()],
        "ports": [{"name": "collect", "containerPort": COLLECT_PORT, "protocol": "TCP"}],
        "resources": gpu_resources(run, profile),
        "securityContext": _security(profile, settings),
        "volumeMounts": mounts,
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # podFailurePolicy needs it; retries are per index
        "terminationGracePeriodSeconds": 120,  # the agent stops vLLM and finishes its run dir
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": volumes,
    }
    if profile.ipc_mode == "host":
        spec["hostIPC"] = True
    groups = _groups(profile, settings)
    if groups:
        spec["securityContext"] = {"supplementalGroups": groups}
    selector = node_selector(run, settings)
    if selector:
        spec["nodeSelector"] = selector
    tolerations = _tolerations(profile, settings)
    if tolerations:
        spec["tolerations"] = tolerations
    return spec
