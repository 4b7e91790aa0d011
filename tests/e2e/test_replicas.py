"""Two tiny-model replicas on one core each, one load spread over them (issue 14's Done-when).

--spread router: vllm-router in front of both servers; every request completes, each replica
served some (its vllm:request_success_total went up), and the record's numbers are the raw
per-request data's. --spread clients: one client per replica at half the rate, their results
merged into one record whose percentiles are those of every request of both clients.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from results.cli import main as results_main
from runner.agent.fleet import router_executable
from runner.agent.pinning import allowed_cpus, split_evenly
from runner.cli import main as run_main
from tests.conftest import missing

PROMPTS, QPS, POINT = 20, "8", "serve-qps8"


def _run(root: Path, model: Path, spread: str) -> Path:
    args = [
        "--executor", "local", "--vendor", "cpu", "--model", str(model), "--dtype", "bfloat16",
        "--max-model-len", "2048", "--env", "VLLM_CPU_KVCACHE_SPACE=1",
        "--input-len", "64", "--output-len", "16", "--qps", QPS, "--num-prompts", str(PROMPTS),
        "--replicas", "2", "--spread", spread, "--out", str(root),
    ]  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _agrees_with_raw(record: dict[str, Any], raws: list[dict[str, Any]]) -> None:
    """The record's statistics are numpy's over every successful request of `raws`."""
    ok = [(r, i) for r in raws for i, e in enumerate(r["errors"]) if not e]
    assert len(ok) == PROMPTS
    ttft = np.array([r["ttfts"][i] for r, i in ok])
    e2el = np.array([r["latencies"][i] for r, i in ok])
    itl = np.array([x for r, i in ok for x in r["itls"][i]])
    for name, values in (("ttft", ttft), ("e2el", e2el), ("itl", itl)):
        for pct in (50, 90, 99):
            want = float(np.percentile(values, pct)) * 1000
            assert record[f"p{pct}_{name}_ms"] == pytest.approx(want, rel=1e-9), (name, pct)
        assert record[f"mean_{name}_ms"] == pytest.approx(float(np.mean(values)) * 1000)


def _check_replicas(run_dir: Path, spread: str) -> dict[str, Any]:
    run = _load(run_dir / "run.json")
    assert run["replicas"] == {"count": 2, "spread": spread, "sets": [[], []]}
    status = _load(run_dir / "status.json")
    assert status["status"] == "ok", status
    (point,) = status["points"]
    assert point["verdict"] == "ok", point
    counts = point["replicas"]
    assert len(counts) == 2 and all(c > 0 for c in counts), counts  # each replica served some
    assert sum(counts) == PROMPTS, counts
    want_cpus = split_evenly(allowed_cpus(), 2)
    assert [r["cpus"] for r in status["replicas"]] == want_cpus
    for k in range(2):
        assert (run_dir / f"server-{k}.log").stat().st_size > 0
        log = (run_dir / f"server-{k}.log").read_text()
        assert f"VLLM_CPU_OMP_THREADS_BIND='{want_cpus[k][0]}" in log  # pinned to its share
    record = _load(run_dir / "raw" / f"{POINT}.json")
    assert record["completed"] == PROMPTS and record["failed"] == 0
    return record


@pytest.fixture(scope="module")
def two_cores() -> None:
    if len(allowed_cpus()) < 2:
        missing("two replicas on one core each need 2 CPUs")


def test_router_spreads_one_load_over_two_replicas(
    tmp_path: Path, tiny_model: Path, vllm_exe: str, two_cores: None
) -> None:
    if router_executable(vllm_exe) is None:
        missing("vllm-router is not installed: make venv (the dev extra installs it)")
    run_dir = _run(tmp_path / "runs", tiny_model, "router")
    record = _check_replicas(run_dir, "router")
    assert (run_dir / "router.log").is_file()
    _agrees_with_raw(record, [record])  # one client (through the router): vLLM's own numbers


def test_clients_merge_two_replicas_results(
    tmp_path: Path, tiny_model: Path, two_cores: None
) -> None:
    root = tmp_path / "runs"
    run_dir = _run(root, tiny_model, "clients")
    record = _check_replicas(run_dir, "clients")
    clients = [_load(run_dir / "raw" / "replicas" / f"{POINT}-{k}.json") for k in range(2)]
    assert [c["num_prompts"] for c in clients] == [PROMPTS // 2] * 2
    assert all(float(c["request_rate"]) == float(QPS) / 2 for c in clients)
    assert record["clients"] == 2
    _agrees_with_raw(record, clients)
    # bench-results reads the merged record as any other
    result = CliRunner().invoke(
        results_main, ["show", str(root), "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    (shown,) = json.loads(result.stdout)
    assert shown["completed"] == PROMPTS
    assert shown["metrics"]["ttft_p99_ms"] == pytest.approx(record["p99_ttft_ms"])
