"""--replicas: the merge of concurrent clients, GPU sets, CPU pinning, counts, bad input."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from results.model.parsers import parse_serve
from runner.agent import merge, pinning
from runner.agent.fleet import Fleet, client_args, goodput_of, success_counts
from runner.agent.host import ConfigRejected
from runner.agent.procs import ServerFailed, spawn
from runner.cli import main
from runner.entry import choose_executor
from runner.errors import PlanError
from runner.jobs import Deadlines, build_job, extra_ports
from runner.planfile import coerce
from runner.replicas import Replicas, gpu_sets, parse_count, plan_replicas
from runner.request import RunRequest
from runner.rundir import Job
from tests.unit.job_runs import HOST, PORT, VLLM, local_model, make_run
from tests.unit.test_cli_input import PLAN_ERROR, assert_one_error_line, cli_runner

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VLLM_OK = FIXTURES / "vllm-0.32.0-cpu" / "serve-ok.json"
RUN_RAW = FIXTURES / "runs" / "20261122-054648-tiny-llama-cpu-d56769" / "raw"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def reference(raws: list[dict[str, Any]], pcts: tuple[float, ...]) -> dict[str, float]:
    """vLLM's statistics over every request of every client, computed here with numpy."""
    ok = [(r, i) for r in raws for i, e in enumerate(r["errors"]) if not e]
    ttft = np.array([r["ttfts"][i] for r, i in ok])
    e2el = np.array([r["latencies"][i] for r, i in ok])
    outs = np.array([r["output_lens"][i] for r, i in ok])
    tpot = ((e2el - ttft) / np.maximum(outs - 1, 1))[outs > 1]
    itl = np.array([x for r, i in ok for x in r["itls"][i]])
    out: dict[str, float] = {}
    for name, values in (("ttft", ttft), ("tpot", tpot), ("itl", itl), ("e2el", e2el)):
        out[f"mean_{name}_ms"] = float(np.mean(values)) * 1000
        out[f"median_{name}_ms"] = float(np.median(values)) * 1000
        out[f"std_{name}_ms"] = float(np.std(values)) * 1000
        for p in pcts:
            out[f"p{p:g}_{name}_ms"] = float(np.percentile(values, p)) * 1000
    return out


def test_one_client_merged_is_vllms_own_result() -> None:
    """Merging a single real vLLM result recomputes exactly the statistics vLLM wrote."""
    raw = load(VLLM_OK)
    merged = merge.merge([raw])
    for key, value in raw.items():
        if key.endswith("_ms") and isinstance(value, float):
            assert merged[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    assert merged["completed"] == raw["completed"] == 20
    assert merged["request_throughput"] == pytest.approx(raw["request_throughput"])
    assert merged["max_concurrent_requests"] == raw["max_concurrent_requests"]
    assert merged["max_output_tokens_per_s"] == raw["max_output_tokens_per_s"]


def test_two_clients_merge_percentiles_over_all_requests() -> None:
    """Two real clients' results: every statistic is the numpy one over the pooled requests,
    and not the average of the two clients' percentiles."""
    a, b = load(RUN_RAW / "serve-qps2.json"), load(RUN_RAW / "serve-qps8.json")
    merged = merge.merge([a, b])
    want = reference([a, b], (50, 90, 99))
    for key, value in want.items():
        assert merged[key] == pytest.approx(value, rel=1e-9), key
    averaged = (a["p99_ttft_ms"] + b["p99_ttft_ms"]) / 2
    assert merged["p99_ttft_ms"] != pytest.approx(averaged, rel=1e-3)
    assert merged["num_prompts"] == a["num_prompts"] + b["num_prompts"]
    assert merged["completed"] == a["completed"] + b["completed"]
    assert len(merged["ttfts"]) == len(a["ttfts"]) + len(b["ttfts"])
    duration = max(a["duration"], b["duration"])
    assert merged["request_throughput"] == pytest.approx(merged["completed"] / duration)
    assert merged["request_rate"] == pytest.approx(a["request_rate"] + b["request_rate"])
    # the shape results/ parses: the same metrics as a single client's file
    parsed = parse_serve(merged)
    assert parsed.completed == merged["completed"]
    assert parsed.metrics["ttft_p99_ms"] == pytest.approx(want["p99_ttft_ms"])
    assert set(parse_serve(a).metrics) <= set(parsed.metrics)


def test_failed_requests_count_but_are_not_timed() -> None:
    a = load(RUN_RAW / "serve-qps4.json")
    b = json.loads(json.dumps(a))
    b["errors"][0] = "Connection reset"
    b["output_lens"][0] = 0
    b["completed"] -= 1
    b["failed"] = 1
    merged = merge.merge([a, b])
    assert merged["failed"] == 1
    assert merged["completed"] == a["completed"] * 2 - 1
    want = reference([a, b], (50, 90, 99))
    assert merged["p90_e2el_ms"] == pytest.approx(want["p90_e2el_ms"])


def test_goodput_is_recounted_over_all_requests() -> None:
    a, b = load(RUN_RAW / "serve-qps2.json"), load(RUN_RAW / "serve-qps8.json")
    bound = merge.merge([a, b])["median_e2el_ms"]
    merged = merge.merge([a, b], {"e2el": bound})
    e2els = [x * 1000 for r in (a, b) for x in r["latencies"]]
    good = sum(1 for x in e2els if x <= bound)
    assert merged["request_goodput"] == pytest.approx(good / merged["duration"])


def test_a_result_without_arrays_is_refused() -> None:
    raw = {k: v for k, v in load(VLLM_OK).items() if k != "itls"}
    with pytest.raises(merge.MergeError, match="--save-detailed"):
        merge.merge([raw])


def test_percentile_is_numpys() -> None:
    values = [0.3, 0.1, 0.7, 0.2, 0.9, 0.4]
    for p in (0, 10, 50, 90, 99, 99.9, 100):
        assert merge.percentile(values, p) == pytest.approx(float(np.percentile(values, p)))


def test_client_args_split_rate_prompts_and_files() -> None:
    args = [
        "--base-url", "http://h:1", "--num-prompts", "21", "--request-rate", "6",
        "--max-concurrency", "8", "--seed", "0", "--result-dir", "raw",
        "--result-filename", "p.json", "--goodput", "ttft:500", "e2el:900", "--disable-tqdm",
    ]  # fmt: skip
    mine = [client_args(args, k, 2, f"http://h:{k + 2}", "p") for k in range(2)]
    assert [m[m.index("--num-prompts") + 1] for m in mine] == ["11", "10"]
    assert {m[m.index("--request-rate") + 1] for m in mine} == {"3.0"}
    assert {m[m.index("--max-concurrency") + 1] for m in mine} == {"4"}
    assert [m[m.index("--base-url") + 1] for m in mine] == ["http://h:2", "http://h:3"]
    assert [m[m.index("--result-filename") + 1] for m in mine] == ["p-0.json", "p-1.json"]
    assert goodput_of(args) == {"ttft": 500.0, "e2el": 900.0}
    inf = client_args(["--request-rate", "inf", "--num-prompts", "4"], 1, 2, "u", "p")
    assert inf[inf.index("--request-rate") + 1] == "inf"


# /metrics of `vllm serve --data-parallel-size 2` (vLLM 0.32.0, CPU), after 4 requests
DP_METRICS = """\
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 0.0
vllm:request_success_total{engine="1",finished_reason="stop",model_name="m"} 0.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 2.0
vllm:request_success_total{engine="1",finished_reason="length",model_name="m"} 2.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 0.0
vllm:num_requests_running{engine="0",model_name="m"} 0.0
"""


def test_success_counts_per_engine() -> None:
    assert success_counts(DP_METRICS) == {0: 2.0, 1: 2.0}
    one = 'vllm:request_success_total{finished_reason="length",model_name="m"} 7.0\n'
    assert success_counts(one) == {0: 7.0}


# -- GPU sets and CPU pinning ------------------------------------------------------------------
def test_gpu_sets() -> None:
    assert gpu_sets(list(range(8)), 4, None) == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert gpu_sets(list(range(8)), 1, None) == tuple((i,) for i in range(8))
    assert gpu_sets([1, 3, 5, 7], 2, 2) == ((1, 3), (5, 7))
    assert gpu_sets(list(range(8)), 2, 3) == ((0, 1), (2, 3), (4, 5))


def test_cpulists() -> None:
    assert pinning.parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert pinning.format_cpulist([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert pinning.split_evenly([0, 1], 2) == [[0], [1]]
    assert pinning.split_evenly(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    with pytest.raises(ValueError, match="2 CPUs cannot give 3"):
        pinning.split_evenly([0, 1], 3)


def _sysfs(root: Path) -> None:
    for node, cpus in ((0, "0-3"), (1, "4-7")):
        d = root / f"sys/devices/system/node/node{node}"
        d.mkdir(parents=True)
        (d / "cpulist").write_text(cpus + "\n")
    for bus, numa in (("0000:17:00.0", "0"), ("0000:a1:00.0", "1"), ("0000:c1:00.0", "-1")):
        pci = root / "sys/bus/pci/devices" / bus
        pci.mkdir(parents=True)
        (pci / "numa_node").write_text(numa + "\n")


def test_gpu_replicas_pinned_to_their_numa_node(tmp_path: Path) -> None:
    _sysfs(tmp_path)
    assert pinning.pci_address("00000000:17:00.0") == "0000:17:00.0"  # nvidia-smi's form
    allowed = list(range(8))
    cpus = pinning.replica_cpus(
        [["00000000:17:00.0"], ["0000:A1:00.0"], ["0000:c1:00.0"], [None]],
        allowed,
        uses_gpus=True,
        root=tmp_path,
    )
    assert cpus == [[0, 1, 2, 3], [4, 5, 6, 7], None, None]  # -1 / unknown: left unpinned
    # only the CPUs this process may use (a container's --cpus)
    assert pinning.gpu_set_cpus(["0000:17:00.0"], [2, 3, 4], tmp_path) == [2, 3]


def test_cpu_vendor_replicas_share_the_allowed_cpus() -> None:
    assert pinning.replica_cpus([[], []], [0, 1], uses_gpus=False) == [[0], [1]]


# -- the plan ----------------------------------------------------------------------------------
def plan(**given: Any) -> Replicas | None:
    kwargs: dict[str, Any] = {
        "replicas": "2", "spread": None, "tp": 1, "vendor": "nvidia", "uses_gpus": True,
        "scenarios": ("serve",), "gpus": (), "discover": lambda: list(range(8)),
        "cpus": lambda: [0, 1],
    }  # fmt: skip
    kwargs.update(given)
    return plan_replicas(**kwargs)


def test_layouts() -> None:
    assert plan(replicas="auto", tp=4) == Replicas(2, "router", ((0, 1, 2, 3), (4, 5, 6, 7)))
    assert plan(replicas="auto").count == 8  # type: ignore[union-attr]
    assert plan(replicas="2", tp=2, gpus=(4, 5, 6, 7), spread="dp") == Replicas(
        2, "dp", ((4, 5), (6, 7))
    )
    assert plan(replicas="1") is None
    cpu = plan(vendor="cpu", uses_gpus=False, spread="clients")
    assert cpu == Replicas(2, "clients", ((), ()))
    assert cpu is not None
    assert cpu.to_dict() == {"count": 2, "spread": "clients", "sets": [[], []]}


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ({"replicas": "3", "tp": 4}, "--replicas 3 x --tp 4 needs 12 GPUs but 8 are there"),
        ({"tp": 3}, "--tp 3 does not divide the 8 GPUs"),
        ({"tp": 2, "gpus": (0, 1, 2)}, "--tp 2 does not divide the 3 GPUs (0,1,2)"),
        ({"replicas": "0"}, "--replicas '0': give a number"),
        ({"replicas": "two"}, "--replicas 'two'"),
        ({"spread": "dp", "replicas": "1"}, "--spread dp spreads load over replicas"),
        ({"spread": "nginx"}, "--spread 'nginx': choose one of router, dp, clients"),
        ({"scenarios": ("serve", "latency")}, "--scenario latency runs one engine in-process"),
        ({"vendor": "cpu", "uses_gpus": False, "replicas": "3"}, "needs a core each but 2"),
        ({"discover": list}, "--replicas needs GPUs, and none were found"),
    ],
)
def test_bad_input_is_one_plan_error(given: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PlanError, match=None) as caught:
        plan(**given)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_parse_count() -> None:
    assert parse_count("auto") is None
    assert parse_count(" 4 ") == 4


# -- bench-run: one line, exit 2, nothing started or written -------------------------------------
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--replicas", "99"], "--replicas 99 on the cpu vendor needs a core each"),
        (["--replicas", "2", "--scenario", "latency"], "--scenario latency runs one engine"),
        (["--spread", "clients"], "--spread clients spreads load over replicas"),
        (["--replicas", "x"], "--replicas 'x': give a number of servers"),
        (  # docker's replicas share --cpus, not the CPUs bench-run itself may use
            ["--replicas", "2", "--executor", "docker", "--cpus", "0"],
            "--replicas 2 on the cpu vendor needs a core each but 1 are allowed here",
        ),
        (
            ["--replicas", "2", "--executor", "k8s"],
            "--replicas and --spread run with --executor local or docker",
        ),
    ],
)
def test_bench_run_refuses_bad_replicas(args: list[str], fragment: str, tmp_path: Path) -> None:
    model = tmp_path / "tiny-llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    out = tmp_path / "runs"
    executor = [] if "--executor" in args else ["--executor", "local"]
    result = cli_runner().invoke(
        main,
        ["--model", str(model), "--vendor", "cpu", *executor, *args, "--out", str(out)],
        catch_exceptions=False,
    )
    assert_one_error_line(result, PLAN_ERROR, fragment)
    assert not out.exists()


# -- the agent's job -----------------------------------------------------------------------------
def _job(tmp_path: Path, replicas: Replicas, vendor: str = "cpu") -> Job:
    run = make_run(local_model(tmp_path), vendor=vendor, scenarios=("serve",), replicas=replicas)
    ports = list(range(9001, 9001 + extra_ports(replicas)))
    job = build_job(
        run, vllm=VLLM, host=HOST, port=PORT, deadlines=Deadlines(), executor={}, commit=None,
        replica_ports=ports,
    )  # fmt: skip
    sent = json.loads(json.dumps(job.to_dict()))
    assert Job.from_dict(sent).to_dict() == sent  # the agent reads every field back
    assert job.run["replicas"] == replicas.to_dict()
    return job


def test_router_job(tmp_path: Path) -> None:
    job = _job(tmp_path, Replicas(2, "router", ((0, 1), (2, 3))), vendor="nvidia")
    spec = job.replicas
    assert spec is not None
    servers = spec["servers"]
    assert [s["env"] for s in servers] == [
        {"CUDA_VISIBLE_DEVICES": "0,1"},
        {"CUDA_VISIBLE_DEVICES": "2,3"},
    ]
    assert [s["base_url"] for s in servers] == ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
    router = spec["router"]["argv"]
    assert router[router.index("--port") + 1] == "8123"  # the points' target
    assert router[router.index("--worker-urls") + 1 : router.index("--policy")] == [
        "http://127.0.0.1:9001",
        "http://127.0.0.1:9002",
    ]
    assert router[router.index("--prometheus-port") + 1] == "9003"
    assert all("--base-url" in p.argv and "http://127.0.0.1:8123" in p.argv for p in job.points)


def test_clients_and_dp_jobs(tmp_path: Path) -> None:
    clients = _job(tmp_path, Replicas(2, "clients", ((), ())))
    assert clients.replicas is not None and clients.replicas["router"] is None
    urls = [s["base_url"] for s in clients.replicas["servers"]]
    assert urls == ["http://127.0.0.1:8123", "http://127.0.0.1:9001"]
    assert [s["env"] for s in clients.replicas["servers"]] == [{}, {}]  # the CPU: no GPU variable
    (tmp_path / "dp").mkdir()
    dp = _job(tmp_path / "dp", Replicas(2, "dp", ((0,), (1,))), vendor="amd")
    assert dp.replicas is not None
    (server,) = dp.replicas["servers"]
    assert server["argv"][-2:] == ["--data-parallel-size", "2"]
    assert server["env"] == {"HIP_VISIBLE_DEVICES": "0,1"}
    assert dp.server is not None and list(dp.server.argv) == server["argv"]


# -- the agent's fleet, with real processes ------------------------------------------------------
def test_spawned_process_is_pinned(tmp_path: Path) -> None:
    cpu = pinning.allowed_cpus()[-1]
    log = tmp_path / "pinned.log"
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    proc = spawn([sys.executable, "-c", code], cwd=tmp_path, env=os.environ, log=log, cpus=[cpu])
    assert proc.wait(timeout=60) == 0
    assert log.read_text().strip() == f"[{cpu}]"


def _fleet_spec(argv: list[str], router: bool) -> dict[str, Any]:
    server = {"argv": argv, "base_url": "http://127.0.0.1:9", "health_url": "http://127.0.0.1:9/h",
              "metrics_url": "http://127.0.0.1:9/metrics", "gpus": [], "env": {}}  # fmt: skip
    front = {"argv": ["vllm-router"], "health_url": "http://127.0.0.1:9/h"}
    return {
        "count": 2, "spread": "router" if router else "clients", "sets": [[], []],
        "uses_gpus": False, "servers": [server, dict(server)], "router": front if router else None,
    }  # fmt: skip


def test_a_replica_that_dies_is_named(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    fleet = Fleet(
        _fleet_spec(argv, router=False), vendor="cpu", vllm="vllm", work_dir=tmp_path,
        env=dict(os.environ), stop_timeout_s=5,
    )  # fmt: skip
    fleet.start()
    try:
        with pytest.raises(ServerFailed, match=r"^replica 0 \(server-0.log\): vllm serve exited"):
            fleet.wait_ready(30)
    finally:
        fleet.stop(1)
    assert "boom" in (tmp_path / "server-0.log").read_text()
    assert [r["cpus"] for r in fleet.describe()] == pinning.split_evenly(pinning.allowed_cpus(), 2)


def test_no_router_is_refused_before_any_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm-router anywhere
    fleet = Fleet(
        _fleet_spec(["/nonexistent/vllm"], router=True), vendor="cpu",
        vllm=str(tmp_path / "vllm"), work_dir=tmp_path, env={}, stop_timeout_s=5,
    )  # fmt: skip
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # nothing beside it
    with pytest.raises(ConfigRejected, match="pip install vllm-router"):
        fleet.start()
    assert all(server.proc is None for server in fleet.servers)


def test_plan_file_takes_replicas_as_a_number_or_auto() -> None:
    assert coerce("replicas", 4, "plan.yaml:3") == "4"
    assert coerce("replicas", "auto", "plan.yaml:3") == "auto"
    assert coerce("spread", "clients", "plan.yaml:4") == "clients"
    with pytest.raises(PlanError, match="replicas: True is not a str"):
        coerce("replicas", True, "plan.yaml:3")


def test_cpu_dp_engines_each_get_a_share(tmp_path: Path) -> None:
    """vLLM's CPU backend gives DP engine k the k-th '|'-separated CPU list (seen: 0.32)."""
    spec = _fleet_spec([sys.executable, "-c", "pass"], router=False)
    spec.update(spread="dp", servers=spec["servers"][:1])
    fleet = Fleet(spec, vendor="cpu", vllm="vllm", work_dir=tmp_path, env={}, stop_timeout_s=5)
    shares = pinning.split_evenly(pinning.allowed_cpus(), 2)
    bind = "|".join(pinning.format_cpulist(s) for s in shares)
    assert fleet.servers[0].env["VLLM_CPU_OMP_THREADS_BIND"] == bind
    assert [r["cpus"] for r in fleet.describe()] == shares


def test_auto_executor_runs_replicas_here() -> None:
    request = RunRequest(model="m", replicas="2", gpus="0,1,2,3")
    name, why = choose_executor(request, {"DOCKER_HOST": "unix:///nonexistent"})
    assert name == "local" and "--replicas" in why
    with_image = RunRequest(model="m", replicas="2", image="x")
    assert choose_executor(with_image, {})[0] == "docker"  # then refused in one line (above)
