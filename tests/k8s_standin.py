"""A stand-in Kubernetes API server for tests, with a small kubelet that really runs each pod.

It speaks the API's JSON over HTTP, so the official `kubernetes` client drives it unchanged:
ConfigMaps, Jobs, Pods and Events (create, get, list with label/field selectors, watch, delete),
a pod's log (follow), and the pod proxy (`.../pods/NAME:PORT/proxy/PATH`, streamed both ways).

Behind it, an Indexed Job controller makes one pod per completion index (up to `parallelism`
at a time) and the kubelet runs each pod's container command as a local process: the pod's
env plus JOB_COMPLETION_INDEX, its ConfigMap volumes materialised as files, every volume at a
temporary directory (a PVC at the directory the test names for its claim), and the pod's paths
in its command line, env and ConfigMap files mapped to those directories; its container ports
become free local ports. Phases, container states, conditions and events follow a kubelet's.

Faults, per completion index (`StandIn.faults[index] = kind`), as a real cluster shows them:
`oom` (the container killed, OOMKilled, exit 137), `evict` (Failed, reason Evicted, condition
DisruptionTarget), `unbound-pvc` and `no-gpu` (Pending, PodScheduled False, Unschedulable, a
FailedScheduling event), `image-pull` (Pending, ErrImagePull then ImagePullBackOff).
What it does not do: retries (backoffLimitPerIndex), authentication, admission, quotas.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FAULTS = ("oom", "evict", "unbound-pvc", "no-gpu", "image-pull")
KINDS = {"configmaps": "ConfigMap", "pods": "Pod", "events": "Event", "jobs": "Job"}
GROUP_OF = {"jobs": "batch/v1"}
_ROUTE = re.compile(
    r"^/(?:api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<res>configmaps|pods|events|jobs)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>log|proxy)(?P<rest>/.*)?)?$"
)
NOT_SCHEDULABLE = {
    "unbound-pvc": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
    "no-gpu": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes "
    "are available: 1 No preemption victims found for incoming pod.",
}


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def matches(labels: dict[str, str], selector: str | None) -> bool:
    """Equality-based label selectors (`a=b,c=d`, `a!=b`, `a`): what the client sends here."""
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value.lstrip("="):
                return False
        elif term not in labels:
            return False
    return True


def field_matches(obj: dict[str, Any], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        here: Any = obj
        for part in key.split("."):
            here = here.get(part) if isinstance(here, dict) else None
        if str(here) != value.lstrip("="):
            return False
    return True


class Pod:
    """The kubelet's side of one pod: its directories, its process, its log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "container.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[int, int] = {}  # container port -> local port
        self.ended = threading.Event()
        self.unmap: Callable[[str], str] = str  # this host's directories back to the pod's paths


class StandIn:
    """The API server, its store, the Job controller and the kubelet. Use as a context manager."""

    def __init__(self, claims: dict[str, Path] | None = None, python_bin: Path | None = None):
        self.claims = dict(claims or {})  # PVC claim name -> the directory it binds to
        self.faults: dict[int, str] = {}
        self.python_bin = python_bin  # put first on the pods' PATH (the image's python, vllm)
        self.lock = threading.Condition()
        self.rv = 0
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # rv, res, type, obj
        self.pods: dict[tuple[str, str], Pod] = {}
        self.root = Path(tempfile.mkdtemp(prefix="k8s-standin-"))
        self.requests: list[str] = []  # "VERB path" of each request, for tests to read
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self._threads: list[threading.Thread] = []
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandIn:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        for pod in list(self.pods.values()):
            self._kill(pod)
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    def kubeconfig(self, path: Path, context: str = "standin", namespace: str = "bench") -> Path:
        """A kubeconfig naming this server (JSON is YAML)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": "standin"}}],
            "contexts": [
                {"name": context,
                 "context": {"cluster": "standin", "user": "standin", "namespace": namespace}}
            ],
            "current-context": context,
        }  # fmt: skip
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    # -- the store ---------------------------------------------------------------------------
    def _bump(self, res: str, kind: str, obj: dict[str, Any]) -> None:
        """Record a change (lock held): a new resourceVersion and a watch event."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, res, kind, copy.deepcopy(obj)))
        self.lock.notify_all()

    def create(self, res: str, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key = (res, ns, str(meta.get("name")))
        with self.lock:
            if key in self.store:
                raise ApiFault(409, "AlreadyExists", f'{res} "{key[2]}" already exists')
            meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=stamp())
            obj.setdefault("kind", KINDS[res])
            obj.setdefault("apiVersion", GROUP_OF.get(res, "v1"))
            self.store[key] = obj
            self._bump(res, "ADDED", obj)
            created = copy.deepcopy(obj)
        if res == "jobs":
            self._start_thread(self._control_job, ns, key[2])
        return created

    def get(self, res: str, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.store.get((res, ns, name))
            if obj is None:
                raise ApiFault(404, "NotFound", f'{res} "{name}" not found')
            return copy.deepcopy(obj)

    def update(self, res: str, ns: str, name: str, change: Any) -> None:
        """Apply change(obj) to the stored object under the lock and record it."""
        with self.lock:
            obj = self.store.get((res, ns, name))
            if obj is None:
                return
            change(obj)
            self._bump(res, "MODIFIED", obj)

    def items(self, res: str, ns: str, labels: str | None, fields: str | None) -> list[Any]:
        with self.lock:
            return [
                copy.deepcopy(obj)
                for (r, n, _), obj in self.store.items()
                if r == res and n == ns
                and matches(obj["metadata"].get("labels") or {}, labels)
                and field_matches(obj, fields)
            ]  # fmt: skip

    def delete(self, res: str, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.store.pop((res, ns, name), None)
            if obj is None:
                raise ApiFault(404, "NotFound", f'{res} "{name}" not found')
            self._bump(res, "DELETED", obj)
        if res == "pods":
            pod = self.pods.get((ns, name))
            if pod is not None:
                self._kill(pod)
        if res == "jobs":
            uid = obj["metadata"]["uid"]
            for pod_obj in self.items("pods", ns, f"controller-uid={uid}", None):
                with contextlib.suppress(ApiFault):
                    self.delete("pods", ns, pod_obj["metadata"]["name"])
        return obj

    def event(self, ns: str, pod: str, reason: str, message: str, kind: str = "Normal") -> None:
        name = f"{pod}.{uuid.uuid4().hex[:10]}"
        self.create("events", ns, {
            "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns},
            "reason": reason, "message": message, "type": kind,
            "firstTimestamp": stamp(), "lastTimestamp": stamp(), "count": 1,
            "source": {"component": "standin-kubelet"},
        })  # fmt: skip

    def _start_thread(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- the Job controller --------------------------------------------------------------------
    def _control_job(self, ns: str, name: str) -> None:
        try:
            job = self.get("jobs", ns, name)
        except ApiFault:
            return
        spec = job["spec"]
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec.get("parallelism") or 1)
        uid = job["metadata"]["uid"]
        self.update("jobs", ns, name, lambda o: o.__setitem__(
            "status", {"active": 0, "startTime": stamp()}))  # fmt: skip
        running: dict[int, threading.Thread] = {}
        results: dict[int, bool] = {}
        pending = list(range(completions))
        while (pending or running) and not self.closed:
            if ("jobs", ns, name) not in self.store:
                return  # deleted: its pods went with it
            while pending and len(running) < parallelism:
                index = pending.pop(0)
                thread = threading.Thread(
                    target=self._index_into, args=(results, ns, job, uid, index), daemon=True
                )
                thread.start()
                running[index] = thread
            for index, thread in list(running.items()):
                if not thread.is_alive():
                    del running[index]
            self._job_status(ns, name, len(running), results)
            time.sleep(0.1)
        self._job_status(ns, name, 0, results, final=True)

    def _index_into(
        self, results: dict[int, bool], ns: str, job: dict[str, Any], uid: str, index: int
    ) -> None:
        results[index] = self._run_index(ns, job, uid, index)

    def _job_status(
        self, ns: str, name: str, active: int, results: dict[int, bool], final: bool = False
    ) -> None:
        done = sorted(i for i, ok in results.items() if ok)
        failed = sorted(i for i, ok in results.items() if not ok)

        def change(job: dict[str, Any]) -> None:
            status = job.setdefault("status", {})
            status.update(active=active, succeeded=len(done), failed=len(failed))
            status["completedIndexes"] = ",".join(map(str, done))
            if failed:
                status["failedIndexes"] = ",".join(map(str, failed))
            if final:
                kind = "Failed" if failed else "Complete"
                status["conditions"] = [{"type": kind, "status": "True",
                                         "lastTransitionTime": stamp()}]  # fmt: skip
                status["completionTime"] = stamp()

        self.update("jobs", ns, name, change)

    # -- the kubelet -------------------------------------------------------------------------
    def _run_index(self, ns: str, job: dict[str, Any], uid: str, index: int) -> bool:
        template = copy.deepcopy(job["spec"]["template"])
        meta = template.setdefault("metadata", {})
        job_name = job["metadata"]["name"]
        labels = {**(meta.get("labels") or {}), "job-name": job_name, "controller-uid": uid,
                  "batch.kubernetes.io/job-completion-index": str(index)}  # fmt: skip
        annotations = {**(meta.get("annotations") or {}),
                       "batch.kubernetes.io/job-completion-index": str(index)}  # fmt: skip
        name = f"{job_name}-{index}-{uuid.uuid4().hex[:5]}"
        container = template["spec"]["containers"][0]
        pod_obj = {
            "metadata": {"name": name, "labels": labels, "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                              "name": job_name, "uid": uid,
                                              "controller": True}]},
            "spec": template["spec"],
            "status": {"phase": "Pending", "conditions": [], "qosClass": "BestEffort"},
        }  # fmt: skip
        self.create("pods", ns, pod_obj)
        self.event(ns, name, "Scheduled", f"Successfully assigned {ns}/{name} to standin-node")
        fault = self.faults.get(index)
        if fault in NOT_SCHEDULABLE:
            return self._unschedulable(ns, name, NOT_SCHEDULABLE[fault])
        if fault == "image-pull":
            return self._image_pull(ns, name, container)
        return self._run_pod(ns, name, template, container, index)

    def _run_pod(
        self, ns: str, name: str, template: dict[str, Any], container: dict[str, Any], index: int
    ) -> bool:
        fault = self.faults.get(index)
        if ("pods", ns, name) not in self.store:
            return False
        try:
            pod = self._start(ns, name, template["spec"], container, index)
        except OSError as exc:
            self._terminated(ns, name, container, 128, "StartError", str(exc))
            return False
        self.pods[(ns, name)] = pod
        if fault in ("oom", "evict"):
            self._wait_for_output(pod)
            self._kill(pod)
            if fault == "oom":
                self._terminated(ns, name, container, 137, "OOMKilled", "")
            else:
                self._evicted(ns, name, container)
            return False
        assert pod.proc is not None
        code = pod.proc.wait()
        pod.ended.set()
        if ("pods", ns, name) not in self.store:
            return False
        if code < 0:
            code = 128 - code
        self._terminated(ns, name, container, code, "Completed" if code == 0 else "Error", "")
        return code == 0

    def _wait_for_output(self, pod: Pod, timeout: float = 120.0) -> None:
        """Until the agent has begun its run (its first event), so there is a run to lose."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pod.log.is_file() and b"server_starting" in pod.log.read_bytes():
                return
            if pod.proc is not None and pod.proc.poll() is not None:
                return
            time.sleep(0.1)

    def _container_status(
        self, container: dict[str, Any], state: dict[str, Any], ready: bool = False
    ) -> dict[str, Any]:
        return {"name": container["name"], "image": container.get("image", ""),
                "imageID": "", "ready": ready, "restartCount": 0, "started": ready,
                "state": state}  # fmt: skip

    def _unschedulable(self, ns: str, name: str, message: str) -> bool:
        def change(pod: dict[str, Any]) -> None:
            pod["status"]["conditions"] = [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastTransitionTime": stamp()}]  # fmt: skip

        self.update("pods", ns, name, change)
        self.event(ns, name, "FailedScheduling", message, "Warning")
        return self._stay_pending(ns, name)

    def _image_pull(self, ns: str, name: str, container: dict[str, Any]) -> bool:
        image = container.get("image", "")
        steps = [
            ("ErrImagePull", f'failed to pull and unpack image "{image}": not found'),
            ("ImagePullBackOff", f'Back-off pulling image "{image}"'),
        ]
        for reason, message in steps:
            state = {"waiting": {"reason": reason, "message": message}}

            def change(pod: dict[str, Any], state: dict[str, Any] = state) -> None:
                pod["status"]["conditions"] = [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                ]
                pod["status"]["containerStatuses"] = [self._container_status(container, state)]

            self.update("pods", ns, name, change)
            self.event(ns, name, "Failed", message, "Warning")
            time.sleep(0.3)
        return self._stay_pending(ns, name)

    def _stay_pending(self, ns: str, name: str) -> bool:
        while ("pods", ns, name) in self.store and not self.closed:
            time.sleep(0.1)
        return False

    def _terminated(
        self, ns: str, name: str, container: dict[str, Any], code: int, reason: str, msg: str
    ) -> None:
        term = {"exitCode": code, "reason": reason, "startedAt": stamp(), "finishedAt": stamp()}
        if msg:
            term["message"] = msg

        def change(pod: dict[str, Any]) -> None:
            pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
            pod["status"]["conditions"] = [{"type": "Ready", "status": "False",
                                            "reason": "PodCompleted"}]  # fmt: skip
            pod["status"]["containerStatuses"] = [
                self._container_status(container, {"terminated": term})
            ]

        self.update("pods", ns, name, change)

    def _evicted(self, ns: str, name: str, container: dict[str, Any]) -> None:
        message = "The node was low on resource: memory. Threshold quantity: 100Mi."

        def change(pod: dict[str, Any]) -> None:
            pod["status"].update(phase="Failed", reason="Evicted", message=message)
            pod["status"]["conditions"] = [
                {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                 "message": message, "lastTransitionTime": stamp()},
            ]  # fmt: skip
            term = {"exitCode": 137, "reason": "Error", "startedAt": stamp(),
                    "finishedAt": stamp()}  # fmt: skip
            pod["status"]["containerStatuses"] = [
                self._container_status(container, {"terminated": term})
            ]

        self.update("pods", ns, name, change)
        self.event(ns, name, "Evicted", message, "Warning")

    def _volumes(self, ns: str, spec: dict[str, Any], root: Path) -> dict[str, Path]:
        """Each volume at a directory of this host: ConfigMaps written out, PVCs their claim's."""
        where: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                where[name] = self.claims.get(claim) or root / f"pvc-{claim}"
                where[name].mkdir(parents=True, exist_ok=True)
                continue
            target = root / f"vol-{name}"
            target.mkdir(parents=True, exist_ok=True)
            where[name] = target
            sources = []
            if "configMap" in volume:
                sources.append(volume["configMap"])
            for source in (volume.get("projected") or {}).get("sources") or []:
                if "configMap" in source:
                    sources.append(source["configMap"])
            for source in sources:
                data = self.get("configmaps", ns, source["name"]).get("data") or {}
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    path = target / item["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(data[item["key"]], encoding="utf-8")
        return where

    def _start(
        self, ns: str, name: str, spec: dict[str, Any], container: dict[str, Any], index: int
    ) -> Pod:
        pod = Pod(self.root / name)
        pod.root.mkdir(parents=True)
        volumes = self._volumes(ns, spec, pod.root)
        mounts = {
            m["mountPath"]: volumes[m["name"]] / m.get("subPath", "")
            for m in container.get("volumeMounts") or []
            if m["name"] in volumes
        }
        mapper = PathMapper(mounts)
        pod.unmap = PathMapper({str(host): Path(mount) for mount, host in mounts.items()})
        for mount, host in mounts.items():  # the ConfigMaps' files name pod paths too
            if host.is_dir() and str(host).startswith(str(pod.root)):
                for path in host.rglob("*"):
                    if path.is_file():
                        path.write_text(mapper(path.read_text(encoding="utf-8")))
            del mount
        for port in container.get("ports") or []:
            pod.ports[int(port["containerPort"])] = free_port()
        argv = [mapper(a) for a in [*(container.get("command") or []), *container.get("args", [])]]
        argv = [self._port(pod, argv, i) for i in range(len(argv))]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        if self.python_bin is not None:
            env["PATH"] = f"{self.python_bin}:{env.get('PATH', '')}"
        env.update(HOME=str(pod.root), PYTHONUNBUFFERED="1", HOSTNAME=name)
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = mapper(str(item["value"]))
        env["JOB_COMPLETION_INDEX"] = str(index)

        def running(obj: dict[str, Any]) -> None:
            obj["status"].update(phase="Running", podIP="127.0.0.1", startTime=stamp())
            obj["status"]["conditions"] = [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ]
            obj["status"]["containerStatuses"] = [
                self._container_status(container, {"running": {"startedAt": stamp()}}, True)
            ]

        with pod.log.open("wb") as log:
            pod.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=pod.root,
                start_new_session=True,
            )  # fmt: skip
        self.update("pods", ns, name, running)
        self.event(ns, name, "Started", f"Started container {container['name']}")
        return pod

    @staticmethod
    def _port(pod: Pod, argv: list[str], i: int) -> str:
        """A container port given on the command line (after a --*port flag) made the local one."""
        if i > 0 and argv[i - 1].endswith("port") and argv[i].isdigit():
            return str(pod.ports.get(int(argv[i]), argv[i]))
        return argv[i]

    def _kill(self, pod: Pod) -> None:
        if pod.proc is not None and pod.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pod.proc.pid, signal.SIGKILL)
            pod.proc.wait()
        pod.ended.set()

    # -- streams -----------------------------------------------------------------------------
    def follow_log(self, ns: str, name: str, follow: bool) -> Iterator[bytes]:
        """The container's output line by line, its paths as the pod sees them (not ours)."""
        pod = self.pods.get((ns, name))
        if pod is None:
            raise ApiFault(
                400,
                "BadRequest",
                f'container in pod "{name}" is waiting to start: ContainerCreating',
            )
        partial = b""
        with pod.log.open("rb") as log:
            while True:
                line = log.readline()
                if line.endswith(b"\n"):
                    yield pod.unmap((partial + line).decode("utf-8", "replace")).encode()
                    partial = b""
                    continue
                partial += line
                ended = pod.ended.is_set() or (pod.proc is not None and pod.proc.poll() is not None)
                if not follow or ended or ("pods", ns, name) not in self.store:
                    rest = partial + log.read()
                    if rest:
                        yield pod.unmap(rest.decode("utf-8", "replace")).encode()
                    return
                time.sleep(0.05)


class PathMapper:
    """A pod's paths (its mount points) made this host's directories, in any text."""

    def __init__(self, mounts: dict[str, Path]) -> None:
        self.mounts = sorted(mounts.items(), key=lambda kv: -len(kv[0]))
        self.patterns = [
            (re.compile(rf"(?<![\w/.-]){re.escape(m.rstrip('/'))}(?=/|\b|$)"), str(h))
            for m, h in self.mounts
            if m.rstrip("/")
        ]

    def __call__(self, text: str) -> str:
        for pattern, host in self.patterns:
            text = pattern.sub(host.replace("\\", "\\\\"), text)
        return text


class ApiFault(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}  # fmt: skip


def _handler(api: StandIn) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"api": api})


class _Handler(BaseHTTPRequestHandler):
    api: StandIn

    protocol_version = "HTTP/1.0"  # a stream ends when the connection closes

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, verb: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.api.requests.append(f"{verb} {url.path}")
        found = _ROUTE.match(url.path)
        try:
            if found is None:
                raise ApiFault(404, "NotFound", f"no route {url.path}")
            ns, res = found["ns"], found["res"]
            name = unquote(found["name"]) if found["name"] else None
            if found["sub"] == "proxy" and name is not None:
                self._proxy(verb, ns, name, found["rest"] or "/", url.query)
            elif found["sub"] == "log" and name is not None:
                self._log(ns, name, query.get("follow") == "true")
            else:
                self._object(verb, ns, res, name, query)
        except ApiFault as fault:
            self._send(fault.code, fault.body())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _object(
        self, verb: str, ns: str, res: str, name: str | None, query: dict[str, str]
    ) -> None:
        if verb == "POST" and name is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._send(201, self.api.create(res, ns, json.loads(self.rfile.read(length))))
        elif verb == "GET" and name is not None:
            self._send(200, self.api.get(res, ns, name))
        elif verb == "DELETE" and name is not None:
            self._send(200, self.api.delete(res, ns, name))
        elif verb == "GET" and query.get("watch") in ("true", "1"):
            self._watch(ns, res, query)
        elif verb == "GET":
            labels, fields = query.get("labelSelector"), query.get("fieldSelector")
            items = self.api.items(res, ns, labels, fields)
            meta = {"resourceVersion": str(self.api.rv)}
            kind, version = f"{KINDS[res]}List", GROUP_OF.get(res, "v1")
            listed = {"kind": kind, "apiVersion": version, "metadata": meta, "items": items}
            self._send(200, listed)
        else:
            raise ApiFault(405, "MethodNotAllowed", f"{verb} {res}")

    def _stream_start(self, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.end_headers()

    def _watch(self, ns: str, res: str, query: dict[str, str]) -> None:
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")
        end = time.monotonic() + float(query.get("timeoutSeconds") or 300)
        since = int(query.get("resourceVersion") or 0)
        self._stream_start("application/json")
        if since == 0:  # the state now, then every change after it: read together
            with self.api.lock:
                current = self.api.items(res, ns, labels, fields)
                since = self.api.rv
            for obj in current:
                self._line({"type": "ADDED", "object": obj})
        while time.monotonic() < end and not self.api.closed:
            with self.api.lock:
                fresh = [h for h in self.api.history if h[0] > since and h[1] == res]
                if not fresh:
                    self.api.lock.wait(min(1.0, max(0.0, end - time.monotonic())))
                    continue
            for rv, _, kind, obj in fresh:
                since = rv
                if (
                    obj["metadata"].get("namespace") == ns
                    and matches(obj["metadata"].get("labels") or {}, labels)
                    and field_matches(obj, fields)
                ):
                    self._line({"type": kind, "object": obj})

    def _line(self, event: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(event).encode() + b"\n")
        self.wfile.flush()

    def _log(self, ns: str, name: str, follow: bool) -> None:
        self.api.get("pods", ns, name)
        chunks = self.api.follow_log(ns, name, follow)
        first = next(chunks, b"")
        self._stream_start("text/plain")
        self.wfile.write(first)
        self.wfile.flush()
        for chunk in chunks:
            self.wfile.write(chunk)
            self.wfile.flush()

    def _proxy(self, verb: str, ns: str, name: str, rest: str, query: str) -> None:
        pod_name, _, port_text = name.partition(":")
        self.api.get("pods", ns, pod_name)
        pod = self.api.pods.get((ns, pod_name))
        port = pod.ports.get(int(port_text or 80)) if pod else None
        if pod is None or port is None or pod.ended.is_set():
            raise ApiFault(
                503,
                "ServiceUnavailable",
                "error trying to reach service: dial tcp: connection refused",
            )
        body = b""
        if verb == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            conn.request(verb, unquote(rest) + (f"?{query}" if query else ""), body=body)
            reply = conn.getresponse()
        except OSError as exc:
            raise ApiFault(503, "ServiceUnavailable", f"error reaching the pod: {exc}") from None
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.getheader("Content-Type") or "text/plain")
        self.end_headers()
        while chunk := reply.read(65536):
            self.wfile.write(chunk)
        conn.close()

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")
