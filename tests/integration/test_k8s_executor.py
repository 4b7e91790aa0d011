"""--executor k8s through the real `kubernetes` client: submit, watch, events, collection, each
failure reason, detached status/collect/cancel.

Against tests/k8s_standin.py (an API server whose kubelet runs each pod's agent as a local
process) unless VLLM_BENCH_K8S_REAL=1: then against the cluster KUBECONFIG names, with
VLLM_BENCH_K8S_IMAGE (a vLLM CPU image the nodes can pull), VLLM_BENCH_K8S_PVC (a PVC holding
the tiny model at its root's tiny-llama/) and VLLM_BENCH_K8S_NAMESPACE (default: default).
Faults that need the stand-in (OOM kill, eviction) are not injected into a real cluster.

The runs give the server one second to be ready (--server-timeout 1): the agent then fails
its run and writes a real run directory (server.log, status.json, events.jsonl) in seconds,
which is what these tests collect; a whole run on the tiny model is the e2e's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import main as bench_run
from tests.conftest import ROOT, missing

REAL = os.environ.get("VLLM_BENCH_K8S_REAL") == "1"
BENCH_RUN = str(ROOT / ".venv" / "bin" / "bench-run")
BINARY = bytes(range(256)) * 16 + b"\xff\xfe\x00 not utf-8"


@dataclass
class Harness:
    """A cluster to run against and the flags that reach it."""

    kubeconfig: Path
    namespace: str
    model: Path  # where this machine sees the model (under pvc_root)
    pvc_root: Path
    pvc: str
    api: object | None = None  # the StandIn, when it is one
    image: str | None = None
    extra: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def argv(self, out: Path, *extra: str) -> list[str]:
        image = ["--image", self.image] if self.image else []
        return [
            "--executor", "k8s", "--vendor", "cpu", "--model", str(self.model),
            "--model-pvc", self.pvc, "--model-pvc-root", str(self.pvc_root),
            "--namespace", self.namespace, "--max-model-len", "2048", "--input-len", "64",
            "--output-len", "16", "--qps", "2", "--num-prompts", "4",
            "--env", "VLLM_CPU_KVCACHE_SPACE=1", "--server-timeout", "1", "--hold-s", "300",
            "--pending-timeout", "10", "--out", str(out), *image, *self.extra, *extra,
        ]  # fmt: skip

    def fault(self, index: int, kind: str) -> None:
        if self.api is None:
            pytest.skip(f"{kind} is injected by the stand-in only")
        self.api.faults[index] = kind  # type: ignore[attr-defined]


@pytest.fixture
def cluster(tmp_path: Path, tiny_model: Path) -> Iterator[Harness]:
    if REAL:
        config = os.environ.get("KUBECONFIG")
        image, pvc = os.environ.get("VLLM_BENCH_K8S_IMAGE"), os.environ.get("VLLM_BENCH_K8S_PVC")
        if not (config and image and pvc):
            missing("VLLM_BENCH_K8S_REAL=1 needs KUBECONFIG, VLLM_BENCH_K8S_IMAGE, _PVC")
        assert config and image and pvc
        # The model is on the PVC; bench-run only needs a local copy to plan with.
        yield Harness(Path(config), os.environ.get("VLLM_BENCH_K8S_NAMESPACE", "default"),
                      tiny_model, tiny_model.parent, pvc, image=image)  # fmt: skip
        return
    from tests.k8s_standin import StandIn

    with StandIn(claims={"models": tiny_model.parent}, python_bin=ROOT / ".venv" / "bin") as api:
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig", namespace="bench")
        yield Harness(kubeconfig, "bench", tiny_model, tiny_model.parent, "models", api=api)


def _bench_run(harness: Harness, argv: list[str], timeout: float = 300) -> tuple[int, str]:
    done = subprocess.run(
        [BENCH_RUN, *argv], env=harness.env(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    return done.returncode, done.stderr


def _status(run_dir: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    return found


def _run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_submit_follow_and_collect(cluster: Harness, tmp_path: Path) -> None:
    """The agent's events reach bench-run from the pod's log; its run directory comes home."""
    out = tmp_path / "runs"
    code, stderr = _bench_run(cluster, cluster.argv(out, "--verbose"))
    assert code == 1, stderr  # the server had one second: the run fails, as it should
    assert "submitted ConfigMap/" in stderr and "Job/" in stderr
    assert "starting vllm serve" in stderr, "the agent's events came through the pod's log"
    [run_dir] = _run_dirs(out)
    status = _status(run_dir)
    assert status["status"] == "failed" and status.get("finished_by") != "executor"
    assert (run_dir / "server.log").is_file() and (run_dir / "events.jsonl").is_file()
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "run_started"
    record = json.loads(next(out.glob("k8s-*.json")).read_text(encoding="utf-8"))
    assert record["namespace"] == cluster.namespace and list(record["runs"]) == [run_dir.name]
    if cluster.api is not None:
        seen = cluster.api.requests  # type: ignore[attr-defined]
        assert any("/proxy/run-dir.tar" in r for r in seen), "collected through the pod proxy"
        assert any(r.startswith("POST") and r.endswith("/proxy/collected") for r in seen)
        assert any(r.endswith("/log") for r in seen)


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("unbound-pvc", ["stayed Pending", "unbound immediate PersistentVolumeClaims"]),
        ("no-gpu", ["stayed Pending", "Insufficient nvidia.com/gpu"]),
        ("image-pull", ["cannot start its container", "ImagePullBackOff"]),
        ("oom", ["OOM-killed", "exit status 137"]),
        ("evict", ["was evicted", "low on resource"]),
    ],
)
def test_each_failure_reason_is_one_line_and_a_finished_run_dir(
    cluster: Harness, tmp_path: Path, fault: str, words: list[str]
) -> None:
    cluster.fault(0, fault)
    out = tmp_path / "runs"
    started = time.monotonic()
    code, stderr = _bench_run(cluster, cluster.argv(out, "--pending-timeout", "3"))
    assert code == 1, stderr
    [error] = [line for line in stderr.splitlines() if line.startswith("error:")]
    for word in words:
        assert word in error, error
    [run_dir] = _run_dirs(out)  # finished as for docker's dead agent: no .partial is left
    status = _status(run_dir)
    assert status["status"] == "failed" and status["finished_by"] == "executor"
    assert all(p["verdict"] == "failed" for p in status["points"])
    assert words[-1] in str(status["reason"])
    assert time.monotonic() - started < 200
    if fault in ("unbound-pvc", "no-gpu", "image-pull") and cluster.api is not None:
        assert not cluster.api.items("jobs", "bench", None, None)  # type: ignore[attr-defined]


def _wait_state(cluster: Harness, out: Path, wanted: str, deadline_s: float = 180) -> str:
    runner = CliRunner()
    end = time.monotonic() + deadline_s
    text = ""
    while time.monotonic() < end:
        done = runner.invoke(bench_run, ["k8s", "status", str(out)], env=cluster.env())
        assert done.exit_code == 0, done.output
        text = done.stdout
        if f"\t{wanted}" in text:
            return text
        time.sleep(1)
    raise AssertionError(f"no run became {wanted} in {deadline_s} s: {text}")


def test_detached_status_collect_cancel(cluster: Harness, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    code, stderr = _bench_run(cluster, cluster.argv(out, "--detach"))
    assert code == 0, stderr
    assert "bench-run k8s status" in stderr
    assert not _run_dirs(out), "nothing is collected until asked"
    text = _wait_state(cluster, out, "ready")
    run_id = text.split("\t", 1)[0]
    if cluster.api is not None:  # a binary file in the pod's run directory travels intact
        [pod_dir] = list(cluster.api.root.glob(f"*/vol-runs/{run_id}"))  # type: ignore[attr-defined]
        (pod_dir / "raw" / "blob.bin").write_bytes(BINARY)
    runner = CliRunner()
    done = runner.invoke(bench_run, ["k8s", "collect", str(out)], env=cluster.env())
    assert done.exit_code == 0, done.output
    run_dir = out / run_id
    assert _status(run_dir)["status"] == "failed"  # --server-timeout 1
    if cluster.api is not None:
        assert (run_dir / "raw" / "blob.bin").read_bytes() == BINARY
    assert "collected" in _wait_state(cluster, out, "collected")
    again = runner.invoke(bench_run, ["k8s", "collect", str(out)], env=cluster.env())
    assert again.exit_code == 0 and "collected 0 run(s)" in again.output
    gone = runner.invoke(bench_run, ["k8s", "cancel", str(out)], env=cluster.env())
    assert gone.exit_code == 0, gone.output
    assert "deleted Job/" in gone.stdout and "deleted ConfigMap/" in gone.stdout


def test_a_sweep_id_finds_the_sweep_by_its_label(cluster: Harness, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    cluster.fault(0, "unbound-pvc")
    code, stderr = _bench_run(cluster, cluster.argv(out, "--detach", "--sweep-id", "k2-by-label"))
    assert code == 0, stderr
    runner = CliRunner()
    args = ["--namespace", cluster.namespace, "--out", str(tmp_path / "elsewhere")]
    done = runner.invoke(bench_run, ["k8s", "status", "k2-by-label", *args], env=cluster.env())
    assert done.exit_code == 0, done.output
    for _ in range(50):
        if "pending" in done.stdout:
            break
        time.sleep(0.2)
        done = runner.invoke(bench_run, ["k8s", "status", "k2-by-label", *args], env=cluster.env())
    assert "\tpending  " in done.stdout and "unbound immediate" in done.stdout
    gone = runner.invoke(bench_run, ["k8s", "cancel", "k2-by-label", *args], env=cluster.env())
    assert gone.exit_code == 0 and "deleted Job/k2-by-label-1" in gone.stdout
    missing_one = runner.invoke(bench_run, ["k8s", "status", "no-such-sweep", *args],
                                env=cluster.env())  # fmt: skip
    assert missing_one.exit_code == 2 and "no sweep 'no-such-sweep'" in missing_one.output


def test_ctrl_c_deletes_the_sweep_and_finishes_the_run_as_interrupted(
    cluster: Harness, tmp_path: Path
) -> None:
    if cluster.api is None:
        pytest.skip("waits for the agent's first event in the stand-in's pod log")
    out = tmp_path / "runs"
    argv = [BENCH_RUN, *cluster.argv(out, "--server-timeout", "600")]
    proc = subprocess.Popen(argv, env=cluster.env(), stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 120
        root: Path = cluster.api.root  # type: ignore[attr-defined]
        while time.monotonic() < end:
            logs = list(root.glob("*/container.log"))
            if logs and "server_starting" in logs[0].read_text(encoding="utf-8"):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the pod's agent never started its server")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    [run_dir] = _run_dirs(out)
    status = _status(run_dir)
    assert status["status"] == "interrupted" and "interrupted" in str(status["reason"])
    assert not cluster.api.items("jobs", "bench", None, None)  # type: ignore[attr-defined]
    assert not cluster.api.items("pods", "bench", None, None)  # type: ignore[attr-defined]


def test_a_plan_resumed_on_the_cluster_submits_new_objects(
    cluster: Harness, tmp_path: Path
) -> None:
    """A sweep resumed (--resume) submits under its own id: the first one's objects may remain."""
    cluster.fault(0, "unbound-pvc")
    plan = tmp_path / "plan.yaml"
    flags = cluster.argv(tmp_path / "runs", "--pending-timeout", "2")
    plan.write_text(f"model: {cluster.model}\nmatrix:\n  dtype: [bfloat16]\n", encoding="utf-8")
    code, stderr = _bench_run(cluster, ["--plan", str(plan), *flags])
    assert code == 1 and "stayed Pending" in stderr, stderr
    [sweep] = list((tmp_path / "runs").glob("sweep-*"))
    assert (sweep / "k8s.json").is_file()
    cluster.fault(0, "none")  # the PVC is bound now
    code, stderr = _bench_run(cluster, ["--resume", str(sweep)])
    assert code == 1, stderr  # --server-timeout 1: a failed run, collected
    record = json.loads((sweep / f"k8s-{sweep.name}-r2.json").read_text(encoding="utf-8"))
    assert record["sweep_id"] == f"{sweep.name}-r2"
    runs = sorted(p.name for p in _run_dirs(sweep))
    assert len(runs) == 2 and runs[1].endswith("-r2"), runs
    assert _status(sweep / runs[1]).get("finished_by") is None, "this one ran and came home"
