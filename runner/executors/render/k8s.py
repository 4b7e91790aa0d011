"""A Plan as Kubernetes objects: Indexed Jobs, their jobs' ConfigMaps, the agent's ConfigMaps.

Pure: plain dicts from the plan and a frozen K8sSettings; no cluster, no model, no file is read
(runner/executors/k8s_settings.py gathers what the settings hold: the image, the agent's files,
the vendor tuning). The names other modules use (all importable from here):

- `K8sSettings` (k8s_input.py): the cluster side, the same for the whole plan, checked when made.
- `render_plan(plan, settings) -> list[dict]`: the objects, each ConfigMap before the Job that
  mounts it, each labelled LABEL_MANAGED / LABEL_SWEEP (runner/agent/pod_contract.py); a Job's
  ANNOTATION_RUN_IDS lists its runs by completion index.
- `to_yaml(obj)`, `manifest_files(objects)`: YAML text (a safe dumper), one file per object.
- `pod_paths(run, settings)` (k8s_pod.py): where the pod finds the run's model and dataset
  (PlanError if it cannot: a local model must lie on the model PVC).

One Indexed Job per pod template (vendor, GPU product, partition, GPU count, image, the tool's
environment; k8s_pod.py): each completion index is one Run, all of its points on one server.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import yaml

from runner.agent.pod_contract import (
    ANNOTATION_RUN_IDS,
    LABEL_MANAGED,
    LABEL_SWEEP,
    job_file_name,
)
from runner.errors import PlanError
from runner.executors.agent_mount import NO_PYTHON_EXIT
from runner.executors.render.k8s_input import (
    CONFIGMAP_KEY,
    CONFIGMAP_LIMIT,
    SUPPORTED_K8S,
    K8sSettings,
    check_dns_label,
)
from runner.executors.render.k8s_pod import (
    CONTAINER,
    CONTAINER_PORT,
    gpu_resources,
    node_selector,
    partition_of,
    pod_paths,
    pod_spec,
    tool_env,
)
from runner.jobs import build_job
from runner.plan import Plan, Run
from runner.rundir import EXIT_BAD_JOB
from runner.vendors import profile_for

__all__ = [
    "SUPPORTED_K8S", "K8sSettings", "manifest_files", "pod_paths", "render_plan", "to_yaml",
]  # fmt: skip

# All of an object's annotations together hold at most 256 KiB: a Job's run ids stay well below
# it, leaving room for kubectl apply's copy of the whole Job (those run ids included).
ANNOTATION_BUDGET = 100 * 1024
MAX_INDEXES = 100_000  # the API's limit on completions with backoffLimitPerIndex

T = TypeVar("T")


def _template_key(run: Run, settings: K8sSettings) -> tuple[Any, ...]:
    profile = profile_for(run.vendor)
    env = tuple(sorted(tool_env(run, profile, settings).items()))
    gpus = run.engine.tp if profile.uses_gpus else 0
    return (run.vendor, settings.product(run.run_id), partition_of(run), gpus, env)


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


def json_size(key: str, value: str) -> int:
    """Bytes of `"key":"value",` in compact JSON (what kubectl apply's annotation holds)."""
    if value.isascii() and value.isprintable():  # a job: no newline or other control character
        escaped = len(value) + value.count('"') + value.count("\\")
    else:
        escaped = len(json.dumps(value, ensure_ascii=False).encode()) - 2
    return len(key) + escaped + 6


def agent_config_maps(
    settings: K8sSettings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The agent's files in ConfigMaps (keys cannot hold '/': items put each back at its path),
    and the projected volume's sources mounting them."""
    data: dict[str, str] = {}
    paths: dict[str, str] = {}
    for path in sorted(settings.agent_files):
        key = path.replace("/", "__")
        if not CONFIGMAP_KEY.match(key) or key in data:
            raise PlanError(f"the agent's file {path} cannot be a ConfigMap key")
        data[key], paths[key] = settings.agent_files[path], path
    keys = list(data)
    sizes = {i: json_size(k, data[k]) for i, k in enumerate(keys)}
    maps, sources = [], []
    for part, chunk in enumerate(_chunks(keys, sizes, settings.configmap_budget, 10**9), 1):
        name = f"{settings.sweep_id}-agent-{part}"
        maps.append(_config_map(name, {k: data[k] for k in chunk}, settings))
        items = [{"key": k, "path": paths[k]} for k in chunk]
        sources.append({"configMap": {"name": name, "items": items}})
    return maps, sources


def _job_text(run: Run, settings: K8sSettings, executor: dict[str, Any]) -> str:
    """The agent's job for one index, as the pod sees its paths (compact JSON)."""
    profile = profile_for(run.vendor)
    job = build_job(
        run, vllm="vllm", host="127.0.0.1", port=CONTAINER_PORT, deadlines=settings.deadlines,
        executor=executor, commit=settings.commit, paths=pod_paths(run, settings),
        tuned_env=settings.tuning(run.run_id), tunableop_dir=profile.tunableop_dir,
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
                "values": sorted({EXIT_BAD_JOB, NO_PYTHON_EXIT}),  # the API wants them ascending
            },
        },
        # a pod evicted, preempted or its node drained: run it again, not counted as a failure
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
}


def _job(
    name: str, runs: Sequence[Run], settings: K8sSettings, maps: Sequence[str], agent: list[Any]
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
            "spec": pod_spec(runs[0], settings, maps, copy.deepcopy(agent)),
        },
    }
    if settings.active_deadline_s is not None:
        spec["activeDeadlineSeconds"] = settings.active_deadline_s
    run_ids = json.dumps([run.run_id for run in runs])
    metadata = _metadata(name, settings, annotations={ANNOTATION_RUN_IDS: run_ids})
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _executor(name: str, runs: Sequence[Run], settings: K8sSettings) -> dict[str, Any]:
    """What run.json's provenance says ran it (no secret: the Secret's name only)."""
    first = runs[0]
    return {
        "name": "k8s", "image": settings.image, "namespace": settings.namespace, "job": name,
        "sweep": settings.sweep_id, "resources": gpu_resources(first, profile_for(first.vendor)),
        "node_selector": node_selector(first, settings), "model_pvc": settings.model_pvc,
    }  # fmt: skip


def _groups_of(plan: Plan, settings: K8sSettings) -> list[list[Run]]:
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in plan.runs:
        groups.setdefault(_template_key(run, settings), []).append(run)
    return list(groups.values())


def render_plan(plan: Plan, settings: K8sSettings) -> list[dict[str, Any]]:
    """The objects that run `plan`: the agent's ConfigMaps, then per Job its jobs' ConfigMaps and
    the Job. PlanError (one line) for anything a cluster would refuse or a pod could not reach."""
    objects, agent = agent_config_maps(settings)
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
            sizes = {i: json_size(k, v) for i, (k, v) in enumerate(texts.items())}
            maps = []
            for part, keys in enumerate(
                _chunks(list(texts), sizes, settings.configmap_budget, 10**9)
            ):
                map_name = f"{name}-jobs-{part + 1}"
                maps.append(map_name)
                objects.append(_config_map(map_name, {k: texts[k] for k in keys}, settings))
            objects.append(_job(name, runs, settings, maps, agent))
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
