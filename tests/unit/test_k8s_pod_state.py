"""A pod's status read as a person would: running, OOM-killed, evicted, stuck Pending (why)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner.executors.k8s_api import pod_state
from runner.executors.k8s_transport import IndexRef, K8sTransport

kubernetes = pytest.importorskip("kubernetes")  # the dev extra installs it; `make venv` too


def _pod(status: dict[str, Any]) -> Any:
    """A V1Pod as the client deserializes it from the API's JSON."""
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p-0", "labels": {"job-name": "j"}},
        "spec": {"containers": [{"name": "agent", "image": "img:1"}]},
        "status": status,
    }  # fmt: skip
    # The client's own deserializer (its public one changed signature across releases).
    return kubernetes.client.ApiClient()._ApiClient__deserialize(
        json.loads(json.dumps(body)), "V1Pod"
    )


def _container(state: dict[str, Any]) -> dict[str, Any]:
    return {"name": "agent", "image": "img:1", "imageID": "", "ready": False,
            "restartCount": 0, "state": state}  # fmt: skip


def test_running_and_finished_pods_have_no_problem() -> None:
    running = pod_state(_pod({"phase": "Running"}))
    assert running.phase == "Running" and running.problem is None
    done = _pod({"phase": "Succeeded", "containerStatuses": [
        _container({"terminated": {"exitCode": 0, "reason": "Completed"}})]})  # fmt: skip
    assert pod_state(done).exit_code == 0 and pod_state(done).problem is None


def test_oom_killed() -> None:
    pod = _pod({"phase": "Failed", "containerStatuses": [
        _container({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})]})  # fmt: skip
    state = pod_state(pod)
    assert state.exit_code == 137 and state.fatal
    assert state.problem == (
        "pod p-0 ran out of memory: its container was OOM-killed (exit status 137); "
        "raise its memory limit"
    )


def test_evicted_by_reason_or_disruption_condition() -> None:
    evicted = _pod({"phase": "Failed", "reason": "Evicted", "message": "low on  memory"})
    assert pod_state(evicted).problem == "pod p-0 was evicted (Evicted): low on memory"
    disrupted = _pod({"phase": "Failed", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
         "message": "preempted"}]})  # fmt: skip
    assert "was evicted (PreemptionByScheduler): preempted" in str(pod_state(disrupted).problem)


def test_pending_reasons() -> None:
    unschedulable = _pod({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]})  # fmt: skip
    state = pod_state(unschedulable)
    assert not state.fatal, "an autoscaler may still add a node: wait --pending-timeout"
    assert state.problem == (
        "pod p-0 stayed Pending, not scheduled (Unschedulable): 0/3 nodes are available: "
        "3 Insufficient nvidia.com/gpu."
    )
    pulling = _pod({"phase": "Pending", "containerStatuses": [
        _container({"waiting": {"reason": "ErrImagePull", "message": "not found"}})]})  # fmt: skip
    assert not pod_state(pulling).fatal  # a registry hiccup may pass
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}
    backoff = _pod({"phase": "Pending", "containerStatuses": [_container(waiting)]})
    state = pod_state(backoff)
    assert state.fatal and state.problem == (
        "pod p-0 cannot start its container: ImagePullBackOff (image img:1): Back-off"
    )
    creating = _pod({"phase": "Pending", "containerStatuses": [
        _container({"waiting": {"reason": "ContainerCreating"}})]})  # fmt: skip
    assert pod_state(creating).problem is None


def test_events_name_the_run_directory_as_this_host_sees_it(tmp_path: Any) -> None:
    transport = K8sTransport(
        None, IndexRef("j", 0, "r"), {}, out_root=tmp_path, on_event=lambda e: None,  # type: ignore[arg-type]
        cancel=lambda: None,
    )  # fmt: skip
    event = transport.host_event({"event": "run_started", "run_dir": "/runs/r"})
    assert event["run_dir"] == f"{tmp_path}/r"
    assert transport._ready('{"event": "collect_ready", "exit_code": 1, "run_dir": "/runs/r"}')
    assert transport.code == 1 and transport.has_run_dir
