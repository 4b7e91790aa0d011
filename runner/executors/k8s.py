"""The Kubernetes executor: a plan as Indexed Jobs, submitted, followed, collected into --out.

The objects are K1's (runner/executors/render/k8s.py: render_plan); this module submits them
with the official client, records where they went (k8s.json in the output folder, for
`bench-run k8s status|collect|cancel`), and follows each completion index through a
K8sTransport under the one Supervisor every executor shares.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.agent.pod_contract import ANNOTATION_RUN_IDS, job_file_name
from runner.entry import Prepared, cluster_plan
from runner.errors import PlanError, PreflightError
from runner.executors.base import EventSink, RunOutcome
from runner.executors.k8s_api import Cluster, kubeconfig_from_env
from runner.executors.k8s_detached import RECORD_SCHEMA, record_path
from runner.executors.k8s_settings import settings_from_requests
from runner.executors.k8s_transport import IndexRef, K8sTransport
from runner.executors.render.k8s import K8sSettings, render_plan
from runner.executors.supervisor import Supervisor
from runner.plan import Plan, Run
from runner.request import RunRequest
from runner.rundir import atomic_write_json


@dataclass(frozen=True)
class ClusterSettings:
    """How bench-run reaches the cluster and follows it (not part of any manifest)."""

    out_root: Path
    context: str | None = None
    kubeconfig: str | None = None  # None: $KUBECONFIG as read at the edge, or ~/.kube/config
    detach: bool = False  # submit, record, return: `bench-run k8s status|collect` later
    pending_timeout_s: float = 600.0  # how long a pod may stay Pending for a reason
    poll_s: float = 2.0
    interrupt_grace_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.pending_timeout_s >= 0:
            raise PlanError("--pending-timeout: must be 0 or more seconds")


def index_refs(objects: Sequence[Mapping[str, Any]]) -> dict[str, IndexRef]:
    """Run id -> its Job and completion index, from the Jobs' run-ids annotations."""
    refs: dict[str, IndexRef] = {}
    for obj in objects:
        if obj.get("kind") != "Job":
            continue
        meta = obj["metadata"]
        run_ids = json.loads(meta["annotations"][ANNOTATION_RUN_IDS])
        for index, run_id in enumerate(run_ids):
            refs[str(run_id)] = IndexRef(str(meta["name"]), index, str(run_id))
    return refs


def job_dicts(objects: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Run id -> the agent's job as the pod gets it (from the jobs' ConfigMaps)."""
    maps = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o["kind"] == "ConfigMap"}
    found: dict[str, dict[str, Any]] = {}
    for obj in objects:
        if obj.get("kind") != "Job":
            continue
        volumes = obj["spec"]["template"]["spec"].get("volumes") or []
        sources = [
            s["configMap"]["name"]
            for v in volumes
            for s in (v.get("projected") or {}).get("sources") or []
            if "configMap" in s
        ]
        run_ids = json.loads(obj["metadata"]["annotations"][ANNOTATION_RUN_IDS])
        for index, run_id in enumerate(run_ids):
            for name in sources:
                text = maps.get(name, {}).get(job_file_name(index))
                if text is not None:
                    found[str(run_id)] = json.loads(text)
    return found


def write_record(
    folder: Path, cluster: Cluster, settings: K8sSettings, objects: Sequence[Mapping[str, Any]]
) -> Path:
    """k8s.json: the context, namespace, server and objects of a submitted sweep."""
    refs = index_refs(objects)
    record = {
        "schema": RECORD_SCHEMA,
        "sweep_id": settings.sweep_id,
        "context": cluster.target.context,
        "kubeconfig": cluster.target.kubeconfig,
        "namespace": cluster.namespace,
        "server": str(cluster.api_client.configuration.host),
        "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in objects],
        "runs": {run_id: {"job": ref.job_name, "index": ref.index} for run_id, ref in refs.items()},
        "jobs": job_dicts(objects),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = record_path(folder, settings.sweep_id)
    atomic_write_json(path, record)
    return path


class K8sExecutor:
    """Submits the plan's objects once, then follows each run's pod to its collected run dir."""

    name = "k8s"

    def __init__(
        self,
        settings: K8sSettings,
        cluster_settings: ClusterSettings,
        connect: Callable[[ClusterSettings, str], Cluster] | None = None,
    ) -> None:
        self.settings = settings
        self.cluster_settings = cluster_settings
        self._connect = connect or _connect
        self._cluster: Cluster | None = None
        self.submitted: list[str] = []

    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = self._connect(self.cluster_settings, self.settings.namespace)
        return self._cluster

    def preflight(self, plan: Plan, note: Callable[[str], None] | None = None) -> list[str]:
        render_plan(plan, self.settings)  # every PlanError before anything is asked of a cluster
        cluster = self.cluster()
        cluster.check()
        out_root = self.cluster_settings.out_root
        try:
            out_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PreflightError(f"cannot create {out_root}: {exc.strerror}") from None
        if note is not None:
            note(f"cluster: {cluster.where()}; sweep {self.settings.sweep_id}")
        return []

    def describe(self, plan: Plan) -> str:
        from runner.executors.render.k8s import to_yaml  # noqa: PLC0415

        objects = render_plan(plan, self.settings)
        lines = [f"# {len(objects)} objects for namespace {self.settings.namespace}; "
                 "bench-run manifests writes them as files for kubectl apply"]  # fmt: skip
        for obj in objects:
            lines.append("---")
            lines.append(to_yaml(obj).rstrip())
        return "\n".join(lines)

    def submit(self, plan: Plan, on_event: EventSink) -> list[dict[str, Any]]:
        """Create the plan's objects and record where they went; the objects."""
        objects = render_plan(plan, self.settings)
        cluster = self.cluster()
        out_root = self.cluster_settings.out_root
        write_record(out_root, cluster, self.settings, objects)  # before: a crash still knows
        self.submitted = cluster.create(objects)
        on_event({"event": "note", "text": f"submitted {', '.join(self.submitted)} to "
                  f"{cluster.where()}"})  # fmt: skip
        return objects

    def execute(self, plan: Plan, on_event: EventSink) -> list[RunOutcome]:
        objects = self.submit(plan, on_event)
        out_root = self.cluster_settings.out_root.resolve()
        if self.cluster_settings.detach:
            folder = self.cluster_settings.out_root
            on_event({"event": "note", "text": f"detached: bench-run k8s status {folder}; "
                      f"bench-run k8s collect {folder}"})  # fmt: skip
            return []
        refs, jobs = index_refs(objects), job_dicts(objects)
        cluster = self.cluster()
        cancelled: list[bool] = []

        def cancel() -> None:
            if not cancelled:
                cancelled.append(True)
                cluster.delete_sweep(self.settings.sweep_id)

        def start(run: Run, sink: EventSink) -> K8sTransport:
            return K8sTransport(
                cluster, refs[run.run_id], jobs[run.run_id], out_root=out_root, on_event=sink,
                cancel=cancel, pending_timeout_s=self.cluster_settings.pending_timeout_s,
                poll_s=self.cluster_settings.poll_s,
            )  # fmt: skip

        started: list[K8sTransport] = []

        def follow(run: Run, sink: EventSink) -> K8sTransport:
            started.append(start(run, sink))
            return started[-1]

        supervisor = Supervisor(out_root, self.cluster_settings.interrupt_grace_s)
        outcomes = supervisor.run_plan(plan.runs, follow, on_event)
        if any(t.stuck or t.problem for t in started) and not cancelled:
            # Every index was collected or has failed by now. A pod stuck Pending still asks for
            # its GPUs, and the Job would run an OOM-killed or evicted index again (backoff,
            # disruptions ignored) with nobody to collect it: the sweep goes.
            cancel()
            on_event({"event": "note", "text": f"deleted sweep {self.settings.sweep_id}'s Jobs "
                      "and ConfigMaps: a pod could not start or was lost"})  # fmt: skip
        return outcomes


def _sweep_id(folder: Path) -> str:
    """A sweep folder's name; a resumed sweep's objects get -r2, -r3... (the first may remain)."""
    found, attempt = folder.name, 1
    while record_path(folder, found).exists():
        attempt += 1
        found = f"{folder.name}-r{attempt}"
    return found


def _connect(settings: ClusterSettings, namespace: str) -> Cluster:
    return Cluster.connect(settings.context, namespace, settings.kubeconfig)


def prepare_k8s(
    requests: Sequence[RunRequest],
    environ: Mapping[str, str],
    *,
    run_ids: Sequence[str] | None = None,
    note: Callable[[str], None] | None = None,
) -> Prepared:
    """`--executor k8s`: the plan as a cluster runs it (nothing downloaded here), its settings,
    and the executor; a sweep folder's name is the sweep id unless --sweep-id gives one."""
    first = requests[0]
    folder = first.out_dir
    sweep_id = _sweep_id(folder) if folder.name.startswith("sweep-") else None
    said: list[str] = []  # said once the plan renders: a refusal is then the only line
    plan, image = cluster_plan(requests, run_ids=run_ids, note=said.append)
    settings = settings_from_requests(requests, plan, image, sweep_id)
    render_plan(plan, settings)  # what a cluster would refuse: PlanError before anything
    for line in said:
        if note is not None:
            note(line)
    cluster_settings = ClusterSettings(
        out_root=folder,
        context=first.context,
        kubeconfig=kubeconfig_from_env(environ),
        detach=first.detach,
        pending_timeout_s=first.pending_timeout,
    )
    return Prepared(plan, K8sExecutor(settings, cluster_settings), "k8s", "")
