"""Talking to a cluster with the official `kubernetes` client: connect, submit, find, read pods.

Everything the Kubernetes executor, its transport and `bench-run k8s ...` ask of the API
server goes through here; every failure to reach it becomes one PreflightError/BenchError line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.agent.pod_contract import INDEX_LABEL, LABEL_MANAGED, LABEL_SWEEP
from runner.errors import BenchError, PreflightError

INSTALL_HINT = "pip install 'vllm-bench-images[k8s]'"
JOB_NAME_LABEL = "job-name"
# A pod's container waiting in one of these will not start without a change of the spec.
STUCK_WAITING = {
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError",
}  # fmt: skip
FATAL_AT_ONCE = {"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


def _client() -> Any:
    try:
        import kubernetes  # noqa: PLC0415 (an optional extra: imported when it is used)
    except ImportError:
        raise PreflightError(
            f"the Kubernetes executor needs the kubernetes client: {INSTALL_HINT}"
        ) from None
    return kubernetes


@dataclass(frozen=True)
class Target:
    """Where objects go: a kubeconfig context (None: the current one) and a namespace."""

    context: str | None
    namespace: str
    kubeconfig: str | None = None  # None: $KUBECONFIG or ~/.kube/config


class Cluster:
    """One API server, through the official client's CoreV1Api and BatchV1Api."""

    def __init__(self, api_client: Any, target: Target) -> None:
        k8s = _client()
        self.api_client = api_client
        self.target = target
        self.core = k8s.client.CoreV1Api(api_client)
        self.batch = k8s.client.BatchV1Api(api_client)
        self.ApiException = k8s.client.exceptions.ApiException

    @classmethod
    def connect(
        cls,
        context: str | None = None,
        namespace: str | None = None,
        kubeconfig: str | None = None,
    ) -> Cluster:
        """Honour the kubeconfig ($KUBECONFIG), --context and --namespace; in a pod, its own."""
        k8s = _client()
        try:
            contexts, current = k8s.config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = current
            if context is not None:
                chosen = next((c for c in contexts if c.get("name") == context), None)
                if chosen is None:
                    names = ", ".join(sorted(str(c.get("name")) for c in contexts))
                    raise PreflightError(
                        f"--context {context}: no such context in the kubeconfig ({names})"
                    )
            api_client = k8s.config.new_client_from_config(config_file=kubeconfig, context=context)
            default_ns = (chosen or {}).get("context", {}).get("namespace") or "default"
        except k8s.config.ConfigException as exc:
            if context is None and kubeconfig is None:
                with contextlib.suppress(k8s.config.ConfigException):
                    k8s.config.load_incluster_config()
                    return cls(k8s.client.ApiClient(), Target(None, namespace or "default"))
            raise PreflightError(
                f"no usable kubeconfig ({' '.join(str(exc).split())}): set KUBECONFIG or "
                "pass --context"
            ) from None
        return cls(api_client, Target(context, namespace or default_ns, kubeconfig))

    @property
    def namespace(self) -> str:
        return self.target.namespace

    def where(self) -> str:
        server = str(self.api_client.configuration.host)
        return f"namespace {self.namespace} at {server}"

    def check(self) -> None:
        """The API server answers and the namespace is readable; one line when not."""
        try:
            self.core.list_namespaced_config_map(self.namespace, limit=1)
        except self.ApiException as exc:
            raise PreflightError(
                f"the cluster refused ({self.where()}): {api_reason(exc)}"
            ) from None
        except Exception as exc:  # urllib3's connection errors, DNS, TLS
            raise PreflightError(
                f"cannot reach the cluster ({self.where()}): {' '.join(str(exc).split())[:300]}"
            ) from None

    # -- objects -----------------------------------------------------------------------------
    def create(self, objects: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create each object (ConfigMaps before the Jobs that mount them); 'Kind/name' each."""
        k8s = _client()
        made: list[str] = []
        for obj in objects:
            try:
                k8s.utils.create_from_dict(self.api_client, dict(obj), namespace=self.namespace)
            except k8s.utils.FailToCreateError as exc:
                reasons = "; ".join(api_reason(e) for e in exc.api_exceptions)
                raise BenchError(f"cannot create {describe(obj)}: {reasons}") from None
            made.append(describe(obj))
        return made

    def jobs(self, sweep: str) -> list[Any]:
        selector = f"{LABEL_MANAGED}=true,{LABEL_SWEEP}={sweep}"
        return list(self.batch.list_namespaced_job(self.namespace, label_selector=selector).items)

    def pods(self, job_name: str, index: int | None = None) -> list[Any]:
        selector = f"{JOB_NAME_LABEL}={job_name}"
        if index is not None:
            selector += f",{INDEX_LABEL}={index}"
        found = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return sorted(found, key=lambda p: str(p.metadata.creation_timestamp or ""))

    def watch_pods(self, job_name: str, index: int, timeout_s: float) -> Iterator[Any]:
        """The index's pods as they are now, then as they change, for up to timeout_s."""
        k8s = _client()
        selector = f"{JOB_NAME_LABEL}={job_name},{INDEX_LABEL}={index}"
        watch = k8s.watch.Watch()
        try:
            for event in watch.stream(
                self.core.list_namespaced_pod,
                self.namespace,
                label_selector=selector,
                timeout_seconds=max(1, int(timeout_s)),
            ):
                if event.get("type") in ("ADDED", "MODIFIED"):
                    yield event["object"]
        finally:
            watch.stop()

    def delete_sweep(self, sweep: str) -> list[str]:
        """Delete the sweep's Jobs (their pods with them) and ConfigMaps; 'Kind/name' each."""
        selector = f"{LABEL_MANAGED}=true,{LABEL_SWEEP}={sweep}"
        gone: list[str] = []
        for job in self.batch.list_namespaced_job(self.namespace, label_selector=selector).items:
            with contextlib.suppress(self.ApiException):
                self.batch.delete_namespaced_job(
                    job.metadata.name, self.namespace, propagation_policy="Background"
                )
                gone.append(f"Job/{job.metadata.name}")
        maps = self.core.list_namespaced_config_map(self.namespace, label_selector=selector)
        for config_map in maps.items:
            with contextlib.suppress(self.ApiException):
                self.core.delete_namespaced_config_map(config_map.metadata.name, self.namespace)
                gone.append(f"ConfigMap/{config_map.metadata.name}")
        return gone

    def events(self, pod_name: str) -> list[Any]:
        selector = f"involvedObject.name={pod_name}"
        found = self.core.list_namespaced_event(self.namespace, field_selector=selector).items
        return sorted(found, key=lambda e: str(e.last_timestamp or e.event_time or ""))

    def log_stream(self, pod_name: str, follow: bool = True) -> Any:
        """The pod's log as a raw (urllib3) response: read it in chunks, it may never end."""
        return self.core.read_namespaced_pod_log(
            pod_name, self.namespace, follow=follow, _preload_content=False
        )

    def log_tail(self, pod_name: str, count: int) -> list[str]:
        try:
            text = self.core.read_namespaced_pod_log(pod_name, self.namespace, tail_lines=count)
        except self.ApiException:
            return []
        return str(text).splitlines()

    def proxy_get(self, pod_name: str, port: int, path: str) -> Any:
        """GET through the API server's pod proxy, unread (stream it)."""
        return self.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod_name}:{port}", self.namespace, path.lstrip("/"), _preload_content=False
        )

    def proxy_post(self, pod_name: str, port: int, path: str) -> None:
        self.core.connect_post_namespaced_pod_proxy_with_path(
            f"{pod_name}:{port}", self.namespace, path.lstrip("/")
        )


def describe(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def api_reason(exc: Any) -> str:
    """An ApiException in one line: the Status message when the server sent one."""
    import json  # noqa: PLC0415

    body = getattr(exc, "body", None)
    with contextlib.suppress(TypeError, ValueError):
        message = json.loads(body or "").get("message")
        if message:
            return f"{exc.status} {message}"
    return f"{getattr(exc, 'status', '?')} {getattr(exc, 'reason', '') or exc}".strip()


@dataclass(frozen=True)
class PodState:
    """What a pod's status says of its fate: running, ended (how), or stuck (why)."""

    phase: str
    exit_code: int | None = None
    problem: str | None = None  # the one line naming why the pod ended badly or cannot start
    fatal: bool = False  # stuck for good: no point waiting longer


def _terminated(pod: Any) -> Any:
    for status in pod.status.container_statuses or []:
        if status.state is not None and status.state.terminated is not None:
            return status.state.terminated
    return None


def _waiting(pod: Any) -> Any:
    for status in pod.status.container_statuses or []:
        if status.state is not None and status.state.waiting is not None:
            return status.state.waiting
    return None


def _condition(pod: Any, kind: str) -> Any:
    for condition in pod.status.conditions or []:
        if condition.type == kind:
            return condition
    return None


def pod_state(pod: Any) -> PodState:
    """Read a pod's conditions and container states the way a person would."""
    name = pod.metadata.name
    phase = str(pod.status.phase or "Pending")
    term = _terminated(pod)
    code = int(term.exit_code) if term is not None and term.exit_code is not None else None
    disruption = _condition(pod, "DisruptionTarget")
    if pod.status.reason == "Evicted" or (disruption is not None and disruption.status == "True"):
        why = " ".join(str(pod.status.message or disruption.message or "").split())
        return PodState(phase, code if code is not None else 137,
                        f"pod {name} was evicted ({pod.status.reason or disruption.reason}): "
                        f"{why or 'no message'}", True)  # fmt: skip
    if term is not None and term.reason == "OOMKilled":
        why = f"pod {name} ran out of memory: its container was OOM-killed (exit status {code})"
        return PodState(phase, code, f"{why}; raise its memory limit", True)
    if phase in ("Running", "Succeeded", "Failed"):
        return PodState(phase, code)
    waiting = _waiting(pod)
    if waiting is not None and waiting.reason in STUCK_WAITING:
        image = (pod.spec.containers or [None])[0]
        ref = getattr(image, "image", "?")
        message = " ".join(str(waiting.message or "").split())
        return PodState(phase, None, f"pod {name} cannot start its container: {waiting.reason} "
                        f"(image {ref}): {message}", waiting.reason in FATAL_AT_ONCE)  # fmt: skip
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.status == "False":
        message = " ".join(str(scheduled.message or scheduled.reason or "").split())
        return PodState(phase, None, f"pod {name} stayed Pending, not scheduled "
                        f"({scheduled.reason}): {message}")  # fmt: skip
    return PodState(phase)


def warning_events(cluster: Cluster, pod_name: str) -> list[str]:
    lines = []
    with contextlib.suppress(Exception):
        for event in cluster.events(pod_name):
            if event.type == "Warning":
                lines.append(f"{event.reason}: {' '.join(str(event.message).split())}")
    return lines


def read_chunks(response: Any, size: int = 65536) -> Iterator[bytes]:
    """A raw response's body as it arrives."""
    while True:
        chunk = response.read(size) if not hasattr(response, "read1") else response.read1(size)
        if not chunk:
            return
        yield chunk


def kubeconfig_from_env(environ: Mapping[str, str]) -> str | None:
    """$KUBECONFIG read now (the client reads it once, at import): None means ~/.kube/config."""
    return environ.get("KUBECONFIG") or None
