"""--find-max-qps: the bisection on fake measurements, and the search through the real agent."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.agent import search
from runner.agent.core import run_job
from runner.agent.search import ABOVE_RANGE, FOUND, NONE, SearchSpec
from runner.agent.util import Events
from runner.jobs import Deadlines, build_job
from runner.plan import EngineConfig, ModelRef, Run
from runner.preflight import free_port
from runner.rundir import OK, STATUS_FILE, PointJob
from runner.scenarios.serve import SERVE


def below(threshold: float, calls: list[float]) -> Callable[[float], bool]:
    """A fake point: the SLO holds at rates up to the threshold."""

    def measure(rate: float) -> bool:
        calls.append(rate)
        return rate <= threshold

    return measure


@pytest.mark.parametrize("threshold", [1.3, 2.0, 4.44, 7.9, 9.99])
@pytest.mark.parametrize(("tolerance", "relative"), [(0.05, True), (0.02, True), (0.25, False)])
def test_converges_within_the_tolerance_and_the_budget(
    threshold: float, tolerance: float, relative: bool
) -> None:
    spec = SearchSpec(low=1.0, high=10.0, tolerance=tolerance, relative=relative)
    calls: list[float] = []
    found = search.search(spec, below(threshold, calls))
    assert found["result"] == FOUND
    assert found["within_tolerance"] is True
    assert len(calls) <= spec.max_probes
    assert calls[:2] == [1.0, 10.0]
    assert found["max_qps"] <= threshold < found["lowest_missed"]
    gap = found["lowest_missed"] - found["max_qps"]
    assert gap <= (tolerance * found["max_qps"] if relative else tolerance)
    assert found["rates"] == calls


def test_the_budget_stops_a_tolerance_too_fine() -> None:
    spec = SearchSpec(low=1.0, high=1000.0, tolerance=1e-9, relative=False)
    calls: list[float] = []
    found = search.search(spec, below(3.3, calls))
    assert spec.max_probes == 2 + search.MAX_STEPS
    assert len(calls) == spec.max_probes
    assert found["result"] == FOUND and found["within_tolerance"] is False


def test_none_when_even_the_lowest_misses() -> None:
    calls: list[float] = []
    found = search.search(SearchSpec(low=2.0, high=8.0, tolerance=0.05), below(1.0, calls))
    assert calls == [2.0]
    assert (found["result"], found["max_qps"], found["lowest_missed"]) == (NONE, None, 2.0)


def test_above_the_range_when_the_highest_meets() -> None:
    calls: list[float] = []
    found = search.search(SearchSpec(low=2.0, high=8.0, tolerance=0.05), below(100.0, calls))
    assert calls == [2.0, 8.0]
    assert (found["result"], found["max_qps"]) == (ABOVE_RANGE, 8.0)


def test_noisy_measurements_never_loop() -> None:
    answers = iter([True, False, False, True, True, False, True, False] * 4)
    spec = SearchSpec(low=1.0, high=16.0, tolerance=0.01)
    found = search.search(spec, lambda rate: next(answers))
    assert found["probe_count"] <= spec.max_probes


def test_spec_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError, match="low < high"):
        SearchSpec(low=4.0, high=4.0, tolerance=0.05)


def test_probe_point_rewrites_rate_prompts_and_names() -> None:
    template = PointJob(
        id="search-1-qps2",
        scenario="serve",
        argv=(
            "vllm",
            "bench",
            "serve",
            "--num-prompts",
            "8",
            "--request-rate",
            "2",
            "--result-filename",
            "search-1-qps2.json",
            "--metadata",
            "run_id=r",
            "point=search-1-qps2",
        ),
        result="raw/search-1-qps2.json",
        expected=8,
        needs_server=True,
    )
    probe = search.probe_point(template, 3, 5.5, 22)
    assert probe.id == "search-3-qps5.5"
    assert probe.argv[3:] == (
        "--num-prompts", "22", "--request-rate", "5.5", "--result-filename",
        "search-3-qps5.5.json", "--metadata", "run_id=r", "point=search-3-qps5.5",
    )  # fmt: skip
    assert (probe.result, probe.expected, search.rate_of(probe)) == (
        "raw/search-3-qps5.5.json",
        22,
        5.5,
    )


# -- through the real agent -----------------------------------------------------------------------

# A stand-in `vllm`: `serve` answers /health; `bench serve` writes a result whose p99 TTFT is
# 100 ms per req/s of the requested rate, so ttft_p99_ms=500 holds up to 5 req/s.
FAKE_VLLM = """#!{python}
import http.server, json, os, sys

def flag(argv, name):
    return argv[argv.index(name) + 1]

if sys.argv[1] == "serve":
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
    address = (flag(sys.argv, "--host"), int(flag(sys.argv, "--port")))
    http.server.ThreadingHTTPServer(address, Handler).serve_forever()
argv = sys.argv[3:]
count = int(flag(argv, "--num-prompts"))
rate = float(flag(argv, "--request-rate"))
os.makedirs(flag(argv, "--result-dir"), exist_ok=True)
with open(os.path.join(flag(argv, "--result-dir"), flag(argv, "--result-filename")), "w") as out:
    json.dump({{"completed": count, "failed": 0, "request_rate": rate,
               "p99_ttft_ms": 100.0 * rate, "goodput": argv[argv.index("--goodput") + 1]}}, out)
"""


def test_the_agent_searches_and_records_every_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = tmp_path / "vllm"
    vllm.write_text(FAKE_VLLM.format(python=sys.executable))
    vllm.chmod(vllm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    flags = {
        "qps": "1,9", "num_prompts": 3, "seconds_per_point": 120.0, "max_concurrency": None,
        "dataset": "random", "dataset_path": None, "percentiles": "50,90,99",
        "client_mode": "process", "slo": "ttft_p99_ms=500", "find_max_qps": True,
        "qps_tolerance": "0.5",
    }  # fmt: skip
    run = Run(
        run_id="r-search",
        vendor="cpu",
        model=ModelRef(source="org/tiny"),
        engine=EngineConfig(max_model_len=256),
        scenarios=("serve",),
        params={"serve": SERVE.params_from(flags)},
        input_len=8,
        output_len=8,
    )
    job = build_job(
        run, vllm=str(vllm), host="127.0.0.1", port=free_port("127.0.0.1"),
        deadlines=Deadlines(server_ready_s=30.0, server_stop_s=10.0, point_s=60.0),
        executor={"name": "test"}, commit=None,
    )  # fmt: skip
    stream = io.StringIO()
    code = run_job(json.loads(json.dumps(job.to_dict())), tmp_path / "runs", Events(stream))
    run_dir = tmp_path / "runs" / "r-search"
    status = json.loads((run_dir / STATUS_FILE).read_text())
    assert code == 0, status
    found = status["search"]
    assert found["result"] == FOUND
    assert found["max_qps"] <= 5.0 < found["lowest_missed"] <= found["max_qps"] + 0.5
    rates = [p["qps"] for p in found["probes"]]
    assert rates[:2] == [1.0, 9.0] and len(rates) <= found["spec"]["max_probes"]
    points = {p["id"]: p for p in status["points"]}
    assert list(points) == [p["id"] for p in found["probes"]]
    for index, probe in enumerate(found["probes"], start=1):
        entry = points[probe["id"]]
        assert probe["id"] == f"search-{index}-qps{probe['qps']:g}"
        assert (entry["verdict"], entry["qps"], entry["slo"]["met"]) == (
            OK,
            probe["qps"],
            probe["met"],
        )
        raw = json.loads((run_dir / "raw" / f"{probe['id']}.json").read_text())
        assert raw["request_rate"] == probe["qps"] and raw["goodput"] == "ttft:500"
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    finished = [e for e in events if e.get("event") == "search_finished"]
    assert len(finished) == 1 and finished[0]["max_qps"] == found["max_qps"]
    assert os.path.isdir(run_dir)


def test_dry_run_says_what_the_agent_will_probe() -> None:
    relative = search.describe(SearchSpec(low=1.0, high=8.0, tolerance=0.05))
    assert "probes 1 req/s" in relative and "probes 8," in relative
    assert "within 5% of the rate, at most 10 probes in all" in relative
    absolute = search.describe(SearchSpec(low=1.0, high=8.0, tolerance=3.0, relative=False))
    assert "within 3 req/s, at most 4 probes in all" in absolute
