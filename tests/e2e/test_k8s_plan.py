"""A 2-configuration plan as one Indexed Job, run, followed and collected; bench-results reads it.

The cluster is tests/k8s_standin.py (an API server whose kubelet runs each pod's agent as a
local process, the real vLLM for the CPU behind it), driven by the real `kubernetes` client;
the model lies on the "models" PVC, which the stand-in binds to the tiny model's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.k8s_standin import StandIn

BENCH_RUN = str(ROOT / ".venv" / "bin" / "bench-run")
BENCH_RESULTS = str(ROOT / ".venv" / "bin" / "bench-results")

PLAN = """vendor: cpu
executor: k8s
model: {model}
model_pvc: models
model_pvc_root: {root}
namespace: bench
max_model_len: 2048
env: [VLLM_CPU_KVCACHE_SPACE=1]
input_len: 64
output_len: 16
qps: [2]
num_prompts: 4
matrix:
  dtype: [bfloat16, float32]
"""


def _indexes(jobs: list[dict[str, Any]]) -> str | None:
    return jobs[0].get("status", {}).get("completedIndexes") if len(jobs) == 1 else None


def test_a_plan_runs_as_one_indexed_job_and_reads_like_any_run(
    tmp_path: Path, tiny_model: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(model=tiny_model, root=tiny_model.parent), encoding="utf-8")
    out = tmp_path / "runs"
    with StandIn(claims={"models": tiny_model.parent}, python_bin=ROOT / ".venv" / "bin") as api:
        env = {**os.environ, "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig"))}
        done = subprocess.run(
            [BENCH_RUN, "--plan", str(plan), "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        # bench-run ends once it has collected the last index; that pod then exits and the Job
        # counts it, as a cluster's controller would, a moment later (kubectl wait's view)
        deadline = time.monotonic() + 60
        jobs = api.items("jobs", "bench", None, None)
        while _indexes(jobs) != "0,1" and time.monotonic() < deadline:
            time.sleep(0.2)
            jobs = api.items("jobs", "bench", None, None)
    assert done.returncode == 0, done.stderr[-3000:]
    [sweep] = list(out.glob("sweep-*"))
    [job] = jobs  # both configurations: one Indexed Job, an index each
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    assert job["status"]["completedIndexes"] == "0,1"
    record = json.loads((sweep / "sweep.json").read_text(encoding="utf-8"))
    assert [c["state"] for c in record["configurations"]] == ["ok", "ok"]
    k8s = json.loads((sweep / "k8s.json").read_text(encoding="utf-8"))
    assert k8s["sweep_id"] == sweep.name and len(k8s["runs"]) == 2
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name[:5] for p in runs] == ["c0001", "c0002"]
    for run in runs:
        prov = json.loads((run / "provenance.json").read_text(encoding="utf-8"))
        assert prov["executor"]["name"] == "k8s"
        assert prov["executor"]["job"] == job["metadata"]["name"]
        assert (run / "raw" / "serve-qps2.json").is_file() and (run / "server.log").is_file()

    shown = subprocess.run(
        [BENCH_RESULTS, "show", "--sweep", str(sweep), "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    records = json.loads(shown.stdout)
    assert sorted(r["dtype"] for r in records) == ["bfloat16", "float32"]
    for found in records:
        assert found["verdict"] == "ok" and found["scenario"] == "serve" and found["qps"] == 2
        assert found["sweep"] and found["matrix"] and found["completed"] == 4
        assert found["vllm_version"] and found["metrics"]["request_throughput"] > 0
    table = subprocess.run(
        [BENCH_RESULTS, "show", str(sweep)], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert table.returncode == 0 and table.stdout.count(" ok") >= 2, table.stdout
