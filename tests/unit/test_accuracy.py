"""--scenario accuracy: flags and bad input, the lm-eval point's command, judge and wrapper, and
its scores in records, show, compare and the report (from a real run's directory)."""

from __future__ import annotations

import io
import json
import math
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from results.analysis.accuracy import accuracy_deltas
from results.cli import main as results_main
from results.model.accuracy import parse_score_name
from results.model.records import records_from_run
from results.model.rundir import load_run
from results.model.schema import metric_info
from results.render.report import render_report
from runner.agent import lmeval, own
from runner.agent.core import run_job
from runner.agent.util import Events
from runner.cli import main as run_main
from runner.jobs import Deadlines, build_job
from runner.plan import EngineConfig, ModelRef, Run
from runner.rundir import EXIT_FAILED
from runner.scenarios.accuracy import AccuracyParams
from runner.scenarios.judges.accuracy import judge
from runner.scenarios.serve import ServeParams
from tests.conftest import missing
from tests.unit.test_cli_input import PLAN_ERROR, assert_one_error_line, cli_runner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TASK_DIR = FIXTURES / "lm-eval-tasks"
# a real run: serve + accuracy (bench_tiny_mc, --limit 20) on the tiny model, one server
RUN = FIXTURES / "accuracy-runs" / "20261202-071926-tiny-llama-cpu-f2620f"
TASK = "bench_tiny_mc"
CHOSEN = ("--scenario", "accuracy", "--tasks", TASK)


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    script = tmp_path / "bin" / "vllm"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho 'fake vllm must not run' >&2\nexit 1\n")
    script.chmod(0o755)
    return script


def _bench_run(model: Path, vllm: Path, out: Path, *args: str) -> object:
    argv = ["--executor", "local", "--vendor", "cpu", "--model", str(model)]
    argv += ["--vllm", str(vllm), "--out", str(out), *args]
    return cli_runner().invoke(run_main, argv, catch_exceptions=False)


def _needs_lmeval() -> None:
    if not lmeval.importlib.util.find_spec("lm_eval"):
        missing("lm-eval is not installed: make venv (the [eval] extra)")


# -- bad input: one line, exit 2, before anything starts --------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--tasks", TASK], "--tasks: for --scenario accuracy"),
        (["--limit", "5", "--scenario", "serve"], "--limit: for --scenario accuracy"),
        (["--scenario", "accuracy"], "--scenario accuracy needs --tasks"),
        (["--scenario", "accuracy", "--tasks", " , "], "--tasks: give lm-eval task names"),
        (["--scenario", "accuracy", "--tasks", TASK, "--task-dir", "/no/such"], "no such folder"),
        (
            [
                "--scenario",
                "accuracy",
                "--tasks",
                TASK,
                "--task-dir",
                str(TASK_DIR),
                "--limit",
                "0",
            ],
            "--limit 0: must be at least 1",
        ),
        (
            [*CHOSEN, "--task-dir", str(TASK_DIR), "--endpoint", "chat"],
            "bench_tiny_mc scored by log-likelihood",
        ),
    ],
)
def test_bad_accuracy_input_is_one_line(
    args: list[str], fragment: str, model_dir: Path, fake_vllm: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    result = _bench_run(model_dir, fake_vllm, out, *args)
    assert_one_error_line(result, PLAN_ERROR, fragment)  # type: ignore[arg-type]
    assert not out.exists()


def test_unknown_task_and_hub_task_offline_are_refused(
    model_dir: Path, fake_vllm: Path, tmp_path: Path
) -> None:
    _needs_lmeval()
    out = tmp_path / "runs"
    unknown = ["--scenario", "accuracy", "--tasks", f"{TASK},no_such_task_q2"]
    result = _bench_run(model_dir, fake_vllm, out, *unknown, "--task-dir", str(TASK_DIR))
    assert_one_error_line(result, PLAN_ERROR, "unknown lm-eval task(s) no_such_task_q2")  # type: ignore[arg-type]
    # gsm8k's data is on the hub; a local model directory makes the run offline
    result = _bench_run(model_dir, fake_vllm, out, "--scenario", "accuracy", "--tasks", "gsm8k")
    assert_one_error_line(
        result,  # type: ignore[arg-type]
        PLAN_ERROR,
        "--tasks gsm8k: lm-eval downloads their datasets from the hub",
        "--env HF_HUB_OFFLINE=0",
    )
    assert not out.exists()


def test_dry_run_shows_lm_eval_against_the_shared_server(
    model_dir: Path, fake_vllm: Path, tmp_path: Path
) -> None:
    args = ["--scenario", "serve", "--scenario", "accuracy", "--tasks", TASK]
    args += ["--task-dir", str(TASK_DIR), "--limit", "7", "--num-fewshot", "2", "--port", "8123"]
    result = _bench_run(model_dir, fake_vllm, tmp_path / "runs", *args, "--dry-run")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    text = result.stdout  # type: ignore[attr-defined]
    assert text.count("vllm serve") == 1  # one server for both scenarios
    line = next(x for x in text.splitlines() if "runner.agent.lmeval" in x)
    assert "--health http://127.0.0.1:8123/health" in line
    assert "--model local-completions" in line
    assert "base_url=http://127.0.0.1:8123/v1/completions" in line
    assert f"--tasks {TASK}" in line and "--limit 7" in line and "--num_fewshot 2" in line
    assert f"--include_path {TASK_DIR}" in line and "--result raw/accuracy.json" in line
    assert f"model={model_dir},tokenizer={model_dir}," in line
    assert "max_length=2048" in line  # the model's max_position_embeddings, not lm-eval's guess
    assert text.index("point serve-") < text.index("point accuracy")
    # a --served-model-name is the name lm-eval asks the server for
    args += ["--engine-arg", "served-model-name=tiny", "--max-model-len", "1536"]
    result = _bench_run(model_dir, fake_vllm, tmp_path / "runs", *args, "--dry-run")
    line = next(x for x in result.stdout.splitlines() if "runner.agent.lmeval" in x)  # type: ignore[attr-defined]
    assert f"model=tiny,tokenizer={model_dir}," in line and "max_length=1536" in line


# -- the agent's side: its own Python, the wrapper, the judge ----------------------------------


def test_own_python_replaces_the_placeholder_only() -> None:
    argv, env = own.resolve([own.AGENT_PYTHON, "-m", "x"], {"PYTHONPATH": "/a"})
    assert argv == [sys.executable, "-m", "x"]
    assert env["PYTHONPATH"].endswith(":/a") and env["PYTHONPATH"] != "/a"
    assert own.resolve(["vllm", "bench"], {}) == (["vllm", "bench"], {})


def test_judge_reads_lm_evals_counts() -> None:
    raw = json.loads((RUN / "raw" / "accuracy.json").read_text())
    assert judge(raw, 20) == []
    assert judge(raw, 0) == []
    assert judge(raw, 10) == [f"task {TASK}: scored 20 documents, --limit was 10"]
    assert judge({}, 20) == ["the result has no 'results' from lm-eval"]
    empty = {"results": {TASK: {"alias": TASK}}, "n-samples": {TASK: {"effective": 0}}}
    assert judge(empty, 20) == [f"task {TASK}: no score", f"task {TASK}: no document was scored"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_wrapper_stops_lm_eval_when_the_server_stops_answering(tmp_path: Path) -> None:
    _needs_lmeval()
    url = f"http://127.0.0.1:{_closed_port()}"
    argv = [sys.executable, "-m", "runner.agent.lmeval", "--result", "raw/accuracy.json"]
    argv += ["--health", f"{url}/health", "--", "--model", "local-completions"]
    argv += ["--model_args", f"base_url={url}/v1/completions,model=m,tokenizer=none"]
    argv += ["--tasks", TASK, "--include_path", str(TASK_DIR)]
    (tmp_path / "raw").mkdir()
    proc = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == lmeval.EXIT_SERVER_DIED, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"error: the server stopped answering {url}/health"), proc.stdout
    assert not (tmp_path / "raw" / "accuracy.json").exists()


# -- results: records, show, compare, report ----------------------------------------------------


def test_records_hold_scores_stderrs_counts_and_versions() -> None:
    serve, accuracy = records_from_run(load_run(RUN))
    assert (serve.scenario, accuracy.scenario) == ("serve", "accuracy")
    assert accuracy.verdict == "ok" and accuracy.completed == 20 and accuracy.dataset is None
    assert accuracy.metrics == {
        f"{TASK}:acc": 0.2,
        f"{TASK}:acc:stderr": pytest.approx(0.0917663),
        f"{TASK}:acc_norm": 0.15,
        f"{TASK}:acc_norm:stderr": pytest.approx(0.0819178),
    }
    details = accuracy.extra["accuracy"]
    assert details["tasks"][TASK] == {
        "version": 1.0,
        "samples": 20,
        "documents": 30,
        "num_fewshot": 0,
    }
    assert details["lm_eval_version"] and details["limit"] == 20.0
    info = metric_info(f"{TASK}:acc")
    assert (info.label, info.better) == (f"{TASK} acc", "higher")
    assert metric_info(f"{TASK}:acc:stderr").better == "lower"
    assert parse_score_name("gsm8k:exact_match@strict-match").base == "exact_match"  # type: ignore[union-attr]


def test_show_lists_each_score_with_its_interval() -> None:
    result = CliRunner().invoke(results_main, ["show", str(RUN)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "accuracy (lm-eval; ± 1.96 x its standard error, 95%)" in result.stdout
    row = next(x for x in result.stdout.splitlines() if f"{TASK}  acc " in x)
    assert "0.2000 ± 0.1799" in row and row.rstrip().endswith("20")


def _candidate(tmp_path: Path, acc: float, stderr: float) -> Path:
    """The fixture run as another configuration (an fp8 KV cache) that scored `acc`."""
    new_id = RUN.name.replace("f2620f", "c4ndd8")
    target = tmp_path / new_id
    shutil.copytree(RUN, target)
    for name in ("run.json", "status.json", "provenance.json"):
        data = json.loads((target / name).read_text())
        data["run_id"] = new_id
        if name == "run.json":
            data["engine"]["kv_cache_dtype"] = "fp8"
        (target / name).write_text(json.dumps(data))
    raw = json.loads((target / "raw" / "accuracy.json").read_text())
    raw["results"][TASK].update({"acc,none": acc, "acc_stderr,none": stderr})
    (target / "raw" / "accuracy.json").write_text(json.dumps(raw))
    return target


def test_compare_gives_each_scores_change_with_its_interval_beside_speed(tmp_path: Path) -> None:
    cand = _candidate(tmp_path, 0.65, 0.1)
    args = ["compare", str(RUN), str(cand), "--format", "json"]
    result = CliRunner().invoke(results_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["point"] for p in data["points"]] == ["serve @ 4 QPS, 64/16 tokens"]
    acc = next(d for d in data["accuracy"] if d["metric"] == "acc")
    assert acc["change"] == pytest.approx(0.45)
    assert acc["interval_95"] == pytest.approx(1.96 * math.hypot(0.0917663, 0.1), rel=1e-5)
    assert acc["verdict"] == "better"  # 0.45 > 0.266: outside the interval
    same = next(d for d in data["accuracy"] if d["metric"] == "acc_norm")
    assert (same["change"], same["verdict"]) == (0.0, "same")
    text = CliRunner().invoke(results_main, ["compare", str(RUN), str(cand)]).stdout
    assert "ratio" in text and "accuracy change = candidate - baseline ± 1.96" in text
    assert "+0.4500 ± 0.2660" in text and "1 better, 0 worse, 1 same within" in text


def test_interval_that_includes_no_change_is_same(tmp_path: Path) -> None:
    base = records_from_run(load_run(RUN))
    cand = records_from_run(load_run(_candidate(tmp_path, 0.3, 0.1)))
    (acc, _) = accuracy_deltas(base, cand)
    assert acc.metric == "acc" and acc.verdict == "same" and acc.change == pytest.approx(0.1)


def test_report_has_accuracy_vs_speed_per_model(tmp_path: Path) -> None:
    records = [
        *records_from_run(load_run(RUN)),
        *records_from_run(load_run(_candidate(tmp_path, 0.65, 0.1))),
    ]
    html = render_report(records, provenance={}, charts=[])
    assert "Accuracy vs speed: bench_tiny_mc" in html and "models: .cache/tiny-llama" in html
    section = html[html.index('<section class="accuracy"') :]
    section = section[: section.index("</section>")]
    assert section.count("<tr><td>") == 2 and "kv-fp8" in section
    assert "0.2000 ± 0.1799" in section and "0.6500 ± 0.1960" in section
    assert "62.28" in section  # the baseline's peak output tokens/s, beside its scores


# -- a server that dies during the evaluation, through the real agent --------------------------

# A stand-in for `vllm serve` (the agent starts it as the run's server): it answers /health for
# a few seconds, then dies, while lm-eval (real, started by the agent's wrapper) is still loading.
_DYING_SERVER = """#!{python}
import http.server, os, sys, threading, time
port = int(sys.argv[sys.argv.index("--port") + 1])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(4)
print("stand-in server: dying now", flush=True)
os._exit(1)
"""


def test_a_server_dying_during_the_evaluation_fails_the_point_with_its_tail(
    tmp_path: Path, model_dir: Path
) -> None:
    _needs_lmeval()
    server = tmp_path / "bin" / "vllm"
    server.parent.mkdir()
    server.write_text(_DYING_SERVER.format(python=sys.executable))
    server.chmod(0o755)
    run = Run(
        run_id="r-dies",
        vendor="cpu",
        model=ModelRef.resolve(str(model_dir)),
        engine=EngineConfig(),
        scenarios=("accuracy",),
        params={
            "accuracy": AccuracyParams(tasks=(TASK,), task_dir=str(TASK_DIR), limit=5),
            "serve": ServeParams(client_mode="process"),  # no load generator to start
        },
        input_len=8,
        output_len=8,
    )
    job = build_job(
        run, vllm=str(server), host="127.0.0.1", port=_closed_port(),
        deadlines=Deadlines(server_ready_s=60.0, point_s=300.0),
        executor={"name": "test"}, commit=None,
    )  # fmt: skip
    code = run_job(json.loads(json.dumps(job.to_dict())), tmp_path / "runs", Events(io.StringIO()))
    run_dir = tmp_path / "runs" / "r-dies"
    status = json.loads((run_dir / "status.json").read_text())
    (point,) = status["points"]
    assert code == EXIT_FAILED and status["status"] == "failed"
    assert point["verdict"] == "failed" and point["returncode"] == lmeval.EXIT_SERVER_DIED
    assert point["reasons"][0] == f"exited with status {lmeval.EXIT_SERVER_DIED}"
    assert point["reasons"][1].startswith("error: the server stopped answering")
    assert point["log_tail"][-1] == point["reasons"][1]  # the tail is kept with the verdict
    assert status["server"]["exit_status"] == 1
    assert "stand-in server: dying now" in (run_dir / "server.log").read_text()
    assert not (run_dir / "raw" / "accuracy.json").exists()
    assert json.loads((run_dir / "run.json").read_text())["accuracy"]["tasks"] == [TASK]


def test_an_environment_without_lm_eval_fails_the_point_in_one_line() -> None:
    # -S: no site-packages, as in an image without lm-eval; the agent's files come from the
    # checkout (the working directory), as the image's PYTHONPATH gives them
    argv = [sys.executable, "-S", "-m", "runner.agent.lmeval", "--result", "raw/a.json"]
    proc = subprocess.run(
        [*argv, "--", "--tasks", TASK],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == lmeval.EXIT_NO_LMEVAL, proc.stderr
    assert proc.stdout.splitlines() == [
        f"error: lm-eval is not installed for {sys.executable}: install it where the agent runs "
        "(pip install 'vllm-bench-images[eval]', or lm-eval[api] in the image)"
    ]
