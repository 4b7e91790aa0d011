"""A Plan as Kubernetes objects: Indexed Jobs, their jobs' ConfigMaps, the agent's ConfigMap.

Pure: plain dicts from the plan and a frozen K8sSettings; no cluster, no model, no file is read
(runner/executors/k8s_settings.py gathers what the settings hold: the image, the agent's files,
the vendor tuning). The names other modules use:

- `K8sSettings`: everything about the cluster side, the same for the whole plan.
- `render_plan(plan, settings) -> list[dict]`: the objects, ConfigMaps first, each labelled
  LABEL_MANAGED / LABEL_SWEEP (runner/agent/pod_contract.py); a Job's ANNOTATION_RUN_IDS lists
  its runs by completion index.
- `to_yaml(obj)`, `manifest_files(objects)`: YAML text (yaml.safe_dump), one file per object.
- `pod_paths(run, settings)`: where the pod finds the run's model and dataset (PlanError if it
  cannot: a local model must lie on the model PVC).

One Indexed Job per pod template (vendor, GPU product, partition, GPU count, image, the tool's
environment): each completion index is one Run, all of its points on one server in one pod.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, TypeVar

import yaml

from runner.agent import tunableop
from runner.agent.pod_contract import (
    ANNOTATION_RUN_IDS,
    COLLECT_PORT,
    DEFAULT_HOLD_S,
    JOBS_DIR,
    LABEL_MANAGED,
    LABEL_SWEEP,
    RUNS_DIR,
    job_file_name,
)
from runner.agent.util import is_secret_name
from runner.errors import PlanError
from runner.executors.agent_mount import NO_PYTHON_EXIT, SHELL, launcher_argv
from runner.executors.container_paths import (
    AGENT_DIR,
    HF_CACHE_DIR,
    HF_TOKEN_FILE,
    TOKEN_PATH_VAR,
    VLLM_CACHE_DIR,
)
from runner.jobs import Deadlines, PathMap, build_job, vendor_env
from runner.plan import ModelRef, Plan, Run
from runner.rundir import EXIT_BAD_JOB
from runner.vendors import VendorProfile, profile_for

MODEL_PVC_DIR = "/models"  # where the model PVC is mounted in the pod
PVC_HF_HOME = "huggingface"  # HF_HOME on the model PVC: hub models are downloaded there
CONTAINER = "agent"
CONTAINER_PORT = 8000  # vLLM's port inside the pod
# A ConfigMap holds at most 1 MiB (keys and values); jobs are split well before it.
CONFIGMAP_LIMIT = 1024 * 1024
CONFIGMAP_BUDGET = 900 * 1024
# All of an object's annotations together hold at most 256 KiB: a Job's run ids stay below this.
ANNOTATION_BUDGET = 200 * 1024
MAX_INDEXES = 100_000  # the API's limit on completions with backoffLimitPerIndex
# The vendor profiles' groups (names) as numeric ids: a pod cannot name a group. video is 44 on
# Debian and Ubuntu; render is a dynamic system group (109 on Ubuntu 22.04 hosts): check it
# with `getent group render` on the nodes and give --supplemental-group where it differs.
WELL_KNOWN_GIDS = {"video": 44, "render": 109}
SUPPORTED_K8S = ("1.29", "1.37")  # podFailurePolicy FailIndex + backoffLimitPerIndex: beta in 1.29

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
PULL_POLICIES = {"always": "Always", "missing": "IfNotPresent", "never": "Never"}

T = TypeVar("T")


def check_dns_label(value: str, what: str, limit: int = 63) -> str:
    """A Kubernetes object name part (RFC 1123 label), or one PlanError saying what to change."""
    if len(value) > limit or not _DNS_LABEL.match(value):
        raise PlanError(
            f"{what} {value!r}: use at most {limit} lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def check_label_key(key: str, what: str) -> str:
    prefix, _, name = key.rpartition("/")
    bad_prefix = bool(prefix) and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))
    if not name or len(name) > 63 or not _LABEL_NAME.match(name) or bad_prefix:
        raise PlanError(
            f"{what} {key!r} is not a Kubernetes label key (such as nvidia.com/gpu.product)"
        )
    return key


def check_label_value(value: str, what: str) -> str:
    if len(value) > 63 or not _LABEL_NAME.match(value):
        raise PlanError(
            f"{what} {value!r} is not a Kubernetes label value: at most 63 letters, digits, "
            "'-', '_' and '.' (spaces as the node label spells them, e.g. NVIDIA-H100-80GB-HBM3)"
        )
    return value


def parse_selector(item: str) -> tuple[str, str]:
    """`--node-selector KEY=VALUE`."""
    key, sep, value = item.partition("=")
    if not sep:
        raise PlanError(f"--node-selector {item!r}: expected KEY=VALUE, such as disktype=ssd")
    return check_label_key(key, "--node-selector"), check_label_value(value, "--node-selector")


def parse_toleration(item: str) -> dict[str, str]:
    """`--toleration KEY[=VALUE][:EFFECT]`: Exists without a value, Equal with one."""
    rest, _, effect = item.rpartition(":") if ":" in item else (item, "", "")
    key, sep, value = rest.partition("=")
    check_label_key(key, "--toleration")
    if effect and effect not in _TAINT_EFFECTS:
        raise PlanError(
            f"--toleration {item!r}: the effect must be one of {', '.join(_TAINT_EFFECTS)}"
        )
    toleration = {"key": key, "operator": "Equal" if sep else "Exists"}
    if sep:
        toleration["value"] = check_label_value(value, "--toleration")
    if effect:
        toleration["effect"] = effect
    return toleration


_DOCKER_SIZE = re.compile(r"^([1-9][0-9]*)([bkmg]|[kmg]b)?$", re.I)
_QUANTITY = re.compile(r"^[1-9][0-9]*(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def shm_quantity(size: str) -> str:
    """--shm-size as a Kubernetes quantity: docker's 16g is 16Gi; 16Gi passes as it is."""
    if _QUANTITY.match(size):
        return size
    match = _DOCKER_SIZE.match(size)
    if match is None:
        raise PlanError(f"--shm-size {size!r}: give a size such as 16g, 512m or 16Gi")
    unit = (match.group(2) or "").lower()[:1]
    return match.group(1) + {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}[unit]


@dataclass(frozen=True)
class K8sSettings:
    """The cluster side of a plan: where its pods run and what they mount (the same for all)."""

    sweep_id: str
    image: str  # what the pods run: an image the cluster can pull
    namespace: str = "default"
    agent_files: Mapping[str, str] = field(default_factory=dict)  # path -> text (resources.py)
    tuned_env: Mapping[str, str] = field(default_factory=dict)  # the catalog's run scope
    pull: str = "missing"
    node_selector: tuple[tuple[str, str], ...] = ()
    gpu_product: str | None = None
    gpu_products: Mapping[str, str] = field(default_factory=dict)  # by run id (a plan matrix)
    tolerations: tuple[str, ...] = ()
    model_pvc: str | None = None
    model_pvc_root: str | None = None  # where this machine sees the model PVC's root
    hf_token_secret: str | None = None  # NAME or NAME:KEY (default key: token)
    parallel: int = 1
    shm_size: str | None = None
    privileged: bool = False
    supplemental_groups: tuple[int, ...] | None = None  # None: the vendor's, WELL_KNOWN_GIDS
    active_deadline_s: int | None = None
    ttl_s: int = 86400
    backoff_per_index: int = 1
    max_failed_indexes: int | None = None  # None: every index runs, whatever the others do
    hold_s: int = DEFAULT_HOLD_S
    deadlines: Deadlines = field(default_factory=Deadlines)
    commit: str | None = None
    configmap_budget: int = CONFIGMAP_BUDGET

    def __post_init__(self) -> None:
        self._check_names()
        self._check_numbers()
        for key, value in self.node_selector:
            check_label_key(key, "--node-selector")
            check_label_value(value, "--node-selector")
        for product in (self.gpu_product, *self.gpu_products.values()):
            if product is not None:
                check_label_value(product, "--gpu-product")
        for item in self.tolerations:
            parse_toleration(item)
        shm_quantity(self.shm_size or "1g")

    def _check_names(self) -> None:
        check_dns_label(self.sweep_id, "--sweep-id", 40)
        check_dns_label(self.namespace, "--namespace")
        if self.model_pvc is not None:
            check_dns_label(self.model_pvc, "--model-pvc", 253)
        if self.model_pvc_root is not None and self.model_pvc is None:
            raise PlanError("--model-pvc-root says where the model PVC is here: give --model-pvc")
        if self.hf_token_secret is not None:
            name, _, key = self.hf_token_secret.partition(":")
            check_dns_label(name, "--hf-token-secret", 253)
            if key and not _CONFIGMAP_KEY.match(key):
                raise PlanError(f"--hf-token-secret {self.hf_token_secret!r}: bad key {key!r}")
        if self.pull not in PULL_POLICIES:
            raise PlanError(f"--pull {self.pull!r}: choose one of {', '.join(PULL_POLICIES)}")

    def _check_numbers(self) -> None:
        for name, low in (("parallel", 1), ("ttl_s", 0), ("backoff_per_index", 0), ("hold_s", 0)):
            if getattr(self, name) < low:
                flag = {"ttl_s": "ttl_after_finished"}.get(name, name).replace("_", "-")
                raise PlanError(f"--{flag}: must be at least {low}")
        if self.active_deadline_s is not None and self.active_deadline_s < 1:
            raise PlanError("--active-deadline: must be a positive number of seconds")
        if self.max_failed_indexes is not None and self.max_failed_indexes < 0:
            raise PlanError("--max-failed-indexes: must be at least 0")
        for gid in self.supplemental_groups or ():
            if not 0 <= gid < 2**31:
                raise PlanError(f"--supplemental-group {gid}: not a group id")

    def product(self, run_id: str) -> str | None:
        return self.gpu_products.get(run_id, self.gpu_product)

    @property
    def secret(self) -> tuple[str, str] | None:
        if self.hf_token_secret is None:
            return None
        name, _, key = self.hf_token_secret.partition(":")
        return name, key or "token"


# -- where the pod finds things ---------------------------------------------------------------
def _on_pvc(local: str, settings: K8sSettings, what: str) -> str:
    """A local path's place in the pod: under the model PVC, or one PlanError saying how."""
    root = settings.model_pvc_root
    path = PurePosixPath(local)
    if root is None or not path.is_relative_to(root):
        raise PlanError(
            f"{what} {local} is on this machine, which no pod sees: put it on the model PVC and "
            "give --model-pvc NAME --model-pvc-root DIR (where that PVC is mounted here), or "
            "give a Hugging Face repo id, which the pod downloads into the PVC"
        )
    return str(PurePosixPath(MODEL_PVC_DIR, *path.relative_to(root).parts))


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


def _tool_env(run: Run, profile: VendorProfile, settings: K8sSettings) -> dict[str, str]:
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


# -- grouping ----------------------------------------------------------------------------------
def _partition(run: Run) -> str | None:
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


def _template_key(run: Run, settings: K8sSettings) -> tuple[Any, ...]:
    profile = profile_for(run.vendor)
    env = tuple(sorted(_tool_env(run, profile, settings).items()))
    gpus = run.engine.tp if profile.uses_gpus else 0
    return (run.vendor, settings.product(run.run_id), _partition(run), gpus, env)


def _chunks(
    items: Sequence[T], size: Mapping[int, int], budget: int, most: int
) -> Iterator[list[T]]:
    """Consecutive runs of items whose sizes (by position) add up to at most `budget`."""
    chunk: list[T] = []
    used = 0
    for position, item in enumerate(items):
        if chunk and (used + size[position] > budget or len(chunk) >= most):
            yield chunk
            chunk, used = [], 0
        chunk.append(item)
        used += size[position]
    if chunk:
        yield chunk


# -- the objects -------------------------------------------------------------------------------
def _labels(settings: K8sSettings) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_SWEEP: settings.sweep_id}


def _metadata(name: str, settings: K8sSettings, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": settings.namespace, "labels": _labels(settings), **extra}


def _config_map(name: str, data: Mapping[str, str], settings: K8sSettings) -> dict[str, Any]:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_LIMIT - 4096:
        raise PlanError(f"ConfigMap {name} would hold {size} bytes, over Kubernetes' 1 MiB")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(name, settings),
            "data": dict(data)}  # fmt: skip


def agent_config_map(settings: K8sSettings) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The agent's files in one ConfigMap, and the items mounting each key at its path."""
    items = []
    data = {}
    for path in sorted(settings.agent_files):
        key = path.replace("/", "__")
        if not _CONFIGMAP_KEY.match(key) or key in data:
            raise PlanError(f"the agent's file {path} cannot be a ConfigMap key")
        data[key] = settings.agent_files[path]
        items.append({"key": key, "path": path})
    return _config_map(f"{settings.sweep_id}-agent", data, settings), items


def _security(profile: VendorProfile, settings: K8sSettings) -> dict[str, Any]:
    if settings.privileged:
        return {"privileged": True}
    context: dict[str, Any] = {"privileged": False}
    if profile.cap_add:
        context["capabilities"] = {"add": list(profile.cap_add)}
    if "seccomp=unconfined" in profile.security_opt:
        context["seccompProfile"] = {"type": "Unconfined"}
    return context


def _resources(run: Run, profile: VendorProfile) -> dict[str, Any]:
    if not profile.uses_gpus or profile.k8s_resource is None:
        return {}
    partition = _partition(run)
    name = profile.k8s_resource
    if partition is not None:
        name = f"{name.split('/')[0]}/{partition}"  # the device plugin's mixed strategy
    return {"limits": {name: str(run.engine.tp)}}


def _node_selector(run: Run, settings: K8sSettings) -> dict[str, str]:
    selector = dict(settings.node_selector)
    product = settings.product(run.run_id)
    partition = _partition(run)
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
    profile: VendorProfile, settings: K8sSettings, job_maps: Sequence[str], agent_items: list[Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the container's mounts of them."""
    shm = shm_quantity(settings.shm_size or profile.default_shm_size)
    volumes: list[dict[str, Any]] = [
        {"name": "jobs", "projected": {"sources": [{"configMap": {"name": n}} for n in job_maps]}},
        {"name": "agent", "configMap": {"name": f"{settings.sweep_id}-agent",
                                        "items": agent_items, "defaultMode": 0o444}},
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
    run: Run, settings: K8sSettings, job_maps: Sequence[str], agent_items: list[Any]
) -> dict[str, Any]:
    """The pod template's spec for `run` (and every run sharing its template)."""
    profile = profile_for(run.vendor)
    volumes, mounts = _volumes(profile, settings, job_maps, agent_items)
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
        "env": [{"name": k, "value": v} for k, v in _tool_env(run, profile, settings).items()],
        "ports": [{"name": "collect", "containerPort": COLLECT_PORT, "protocol": "TCP"}],
        "resources": _resources(run, profile),
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
    selector = _node_selector(run, settings)
    if selector:
        spec["nodeSelector"] = selector
    tolerations = _tolerations(profile, settings)
    if tolerations:
        spec["tolerations"] = tolerations
    return spec


def _job_text(run: Run, settings: K8sSettings, executor: dict[str, Any]) -> str:
    """The agent's job for one index, as the pod sees its paths (compact JSON)."""
    profile = profile_for(run.vendor)
    job = build_job(
        run, vllm="vllm", host="127.0.0.1", port=CONTAINER_PORT, deadlines=settings.deadlines,
        executor=executor, commit=settings.commit, paths=pod_paths(run, settings),
        tuned_env=settings.tuned_env, tunableop_dir=profile.tunableop_dir,
    )  # fmt: skip
    return json.dumps(job.to_dict(), separators=(",", ":"))


FAILURE_POLICY = {
    "rules": [
        # a configuration the agent refused (or an image without vLLM): retrying will not help
        {
            "action": "FailIndex",
            "onExitCodes": {
                "containerName": CONTAINER,
                "operator": "In",
                "values": [EXIT_BAD_JOB, NO_PYTHON_EXIT],
            },
        },
        # a pod evicted, preempted or its node drained: run it again, not counted as a failure
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
}


def _job(
    name: str, runs: Sequence[Run], settings: K8sSettings, maps: Sequence[str], items: list[Any]
) -> dict[str, Any]:
    count = len(runs)
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": count,
        "parallelism": min(settings.parallel, count),
        "backoffLimitPerIndex": settings.backoff_per_index,
        "maxFailedIndexes": min(
            count if settings.max_failed_indexes is None else settings.max_failed_indexes, count
        ),
        "podFailurePolicy": copy.deepcopy(FAILURE_POLICY),
        "ttlSecondsAfterFinished": settings.ttl_s,
        "template": {
            "metadata": {"labels": _labels(settings)},
            "spec": pod_spec(runs[0], settings, maps, items),
        },
    }
    if settings.active_deadline_s is not None:
        spec["activeDeadlineSeconds"] = settings.active_deadline_s
    run_ids = json.dumps([run.run_id for run in runs])
    metadata = _metadata(name, settings, annotations={ANNOTATION_RUN_IDS: run_ids})
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _executor(name: str, runs: Sequence[Run], settings: K8sSettings) -> dict[str, Any]:
    """What run.json's provenance says ran it (no secret: the Secret's name only)."""
    spec_run = runs[0]
    return {
        "name": "k8s", "image": settings.image, "namespace": settings.namespace, "job": name,
        "sweep": settings.sweep_id, "resources": _resources(spec_run, profile_for(spec_run.vendor)),
        "node_selector": _node_selector(spec_run, settings), "model_pvc": settings.model_pvc,
    }  # fmt: skip


def _groups_of(plan: Plan, settings: K8sSettings) -> list[list[Run]]:
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in plan.runs:
        groups.setdefault(_template_key(run, settings), []).append(run)
    return list(groups.values())


def render_plan(plan: Plan, settings: K8sSettings) -> list[dict[str, Any]]:
    """The objects that run `plan`: the agent's ConfigMap, then per Job its jobs' ConfigMaps and
    the Job. PlanError (one line) for anything a cluster would refuse or a pod could not reach."""
    agent, items = agent_config_map(settings)
    objects: list[dict[str, Any]] = [agent]
    number = 0
    for group in _groups_of(plan, settings):
        ids = {i: len(json.dumps(run.run_id)) + 2 for i, run in enumerate(group)}
        for runs in _chunks(group, ids, ANNOTATION_BUDGET, MAX_INDEXES):
            number += 1
            name = check_dns_label(f"{settings.sweep_id}-{number}", "the Job name", 52)
            executor = _executor(name, runs, settings)
            texts = {
                job_file_name(i): _job_text(run, settings, executor) for i, run in enumerate(runs)
            }
            sizes = {i: len(k) + len(v.encode()) for i, (k, v) in enumerate(texts.items())}
            maps = []
            for part, keys in enumerate(
                _chunks(list(texts), sizes, settings.configmap_budget, 10**9)
            ):
                map_name = f"{name}-jobs-{part + 1}"
                maps.append(map_name)
                objects.append(_config_map(map_name, {k: texts[k] for k in keys}, settings))
            objects.append(_job(name, runs, settings, maps, items))
    return objects


# -- YAML --------------------------------------------------------------------------------------
_Base: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's when built with it


class _Dumper(_Base):  # type: ignore[misc]
    """The safe dumper: plain data only; no anchors; multi-line text (the agent's files, the
    launcher) as literal blocks people can read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: Any, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(obj: Mapping[str, Any]) -> str:
    """One object as YAML (yaml.dump with a safe dumper: never YAML by string templating)."""
    return str(
        yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096)
    )


def manifest_files(objects: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """File name -> YAML for each object, numbered so `kubectl apply -f DIR` creates each
    ConfigMap before the Job that mounts it."""
    width = len(str(len(objects)))
    return {
        f"{n:0{width}d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml": to_yaml(obj)
        for n, obj in enumerate(objects, 1)
    }
