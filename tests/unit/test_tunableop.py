"""TunableOp on ROCm: results per configuration, tuned in a warm-up pass, never in a point.

The layout and the decisions are tested directly; the flow through the real agent with a
stand-in `vllm` (a stdlib script serving /health and /v1/completions, writing the results file
at exit when PYTORCH_TUNABLEOP_TUNING=1 and the test allows it) and a stand-in `amd-smi`.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.agent import tunableop
from runner.agent.core import run_job
from runner.agent.util import Events
from runner.executors.container_paths import map_paths
from runner.executors.local import local_tunableop_dir
from runner.jobs import Deadlines, build_job
from runner.plan import EngineConfig, ModelRef, Run
from runner.preflight import free_port
from runner.rundir import OK, PROVENANCE_FILE, RAW_DIR, STATUS_FILE, Job
from runner.scenarios.serve import ServeParams
from runner.vendors import profile_for

GPU = "AMD Instinct MI300X"
AMD_SMI_STATIC = json.dumps([{"gpu": i, "asic": {"market_name": GPU}} for i in range(2)])


def amd_smi(argv: list[str]) -> str | None:
    """A discovery runner that sees two MI300X GPUs."""
    return AMD_SMI_STATIC if argv[:2] == ["amd-smi", "static"] else None


def make_run(
    vendor: str = "amd",
    *,
    run_id: str = "r-tune",
    tp: int = 1,
    dtype: str | None = "bfloat16",
    quantization: str | None = None,
    env: tuple[tuple[str, str], ...] = (),
    scenarios: tuple[str, ...] = ("serve",),
    model: ModelRef | None = None,
) -> Run:
    return Run(
        run_id=run_id,
        vendor=vendor,
        model=model or ModelRef(source="org/tiny-model"),
        engine=EngineConfig(tp=tp, dtype=dtype, quantization=quantization, max_model_len=256),
        scenarios=scenarios,
        params={"serve": ServeParams(qps=(1.0, math.inf), num_prompts=4, client_mode="process")},
        input_len=8,
        output_len=8,
        env=env,
    )


def make_job(run: Run, root: Path, *, port: int = 1, vllm: str = "vllm") -> Job:
    return build_job(
        run, vllm=vllm, host="127.0.0.1", port=port,
        deadlines=Deadlines(server_ready_s=30.0, server_stop_s=10.0, point_s=60.0),
        executor={"name": "test"}, commit=None, tunableop_dir=str(root),
    )  # fmt: skip


# -- the layout ---------------------------------------------------------------------------------


def test_layout_per_gpu_model_model_tp_dtype_and_quantization(tmp_path: Path) -> None:
    run = make_run(tp=2).to_dict()
    assert tunableop.config_dir("/t", GPU, run) == Path(
        "/t/AMD-Instinct-MI300X/org--tiny-model/tp2-bfloat16"
    )
    quantized = make_run(tp=8, dtype=None, quantization="fp8").to_dict()
    assert tunableop.config_dir("/t", GPU, quantized).name == "tp8-auto-fp8"
    local = tmp_path / "Llama-3.1-8B"
    local.mkdir()
    (local / "config.json").write_text("{}")
    record = make_run(model=ModelRef.resolve(str(local))).to_dict()
    assert tunableop.config_dir("/t", "", record) == Path(
        "/t/unknown-gpu/Llama-3.1-8B/tp1-bfloat16"
    )
    # No component can climb out of the root, hide itself or carry PyTorch's %d token.
    assert tunableop.component("../%d/x y") == "d-x-y"
    assert tunableop.component("..") == "unknown"


def pytorch_filename(name: str, ordinal: int) -> str:
    """PyTorch's rule (TuningContext::SetFilename): %d is the device ordinal, else it goes
    before the name's last '.' (which may be a directory's, like "Llama-3.1-8B")."""
    if "%d" in name:
        return name.replace("%d", str(ordinal), 1)
    dot = name.rfind(".")
    return name[:dot] + str(ordinal) + name[dot:] if dot >= 0 else name + str(ordinal)


def test_results_name_holds_the_device_ordinal_as_pytorch_expands_it() -> None:
    results = "/t/AMD-Instinct-MI300X/Llama-3.1-8B/tp2-bfloat16/" + tunableop.RESULTS_NAME
    files = tunableop.ordinal_files(results, 2)
    assert [f.name for f in files] == ["tunableop_results0.csv", "tunableop_results1.csv"]
    assert [str(f) for f in files] == [pytorch_filename(results, i) for i in range(2)]
    assert all(f.parent.name == "tp2-bfloat16" for f in files)


# -- the decisions -------------------------------------------------------------------------------


def decide(run: Run, root: Path, env: dict[str, str] | None = None) -> tunableop.Decision | None:
    effective = {"PYTORCH_TUNABLEOP_ENABLED": "1"} if env is None else env
    return tunableop.decide(make_job(run, root), effective, amd_smi)


def test_a_vendor_without_a_tunableop_dir_is_left_alone(tmp_path: Path) -> None:
    assert profile_for("nvidia").tunableop_dir is None
    assert decide(make_run("nvidia"), tmp_path) is None
    assert decide(make_run("cpu"), tmp_path) is None


def test_disabled_records_it_and_sets_nothing(tmp_path: Path) -> None:
    decision = decide(make_run(), tmp_path, env={})
    assert decision is not None
    assert (decision.record, decision.results, decision.env) == ({"enabled": False}, None, {})
    off = decide(make_run(), tmp_path, env={"PYTORCH_TUNABLEOP_ENABLED": "0"})
    assert off is not None and off.results is None


def test_the_users_env_leaves_tunableop_to_the_user(tmp_path: Path) -> None:
    for name in ("PYTORCH_TUNABLEOP_TUNING", "PYTORCH_TUNABLEOP_FILENAME"):
        decision = decide(make_run(env=((name, "1"),)), tmp_path)
        assert decision is not None and decision.results is None and not decision.env
        assert decision.record["managed"] is False
        assert name in decision.record["reason"]


def test_absent_results_tune_first_and_measure_with_tuning_off(tmp_path: Path) -> None:
    decision = decide(make_run(tp=2), tmp_path)
    assert decision is not None and decision.tune_first
    expected = tmp_path / "AMD-Instinct-MI300X/org--tiny-model/tp2-bfloat16/tunableop_results%d.csv"
    assert decision.results == str(expected)
    assert decision.env["PYTORCH_TUNABLEOP_FILENAME"][0] == str(expected)
    assert decision.env["PYTORCH_TUNABLEOP_TUNING"][0] == "0"
    assert decision.record["pass"] == {"ran": None, "reason": "pending"}
    assert decision.point_entry() == {"results": str(expected), "in_use": False}
    # One of two GPUs' files is not the configuration's results: tune again.
    first = tunableop.ordinal_files(str(expected), 2)[0]
    first.parent.mkdir(parents=True)
    first.write_text("Validator,PT_VERSION,2.13\n")
    partial = decide(make_run(tp=2), tmp_path)
    assert partial is not None and partial.tune_first


def test_present_results_are_read_without_a_pass(tmp_path: Path) -> None:
    decision = decide(make_run(tp=2), tmp_path)
    assert decision is not None and decision.results is not None
    for path in decision.files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("Validator,PT_VERSION,2.13\n")
    again = decide(make_run(tp=2), tmp_path)
    assert again is not None and not again.tune_first
    assert again.record["pass"] == {"ran": False, "reason": "results exist for this configuration"}
    assert again.point_entry() == {"results": decision.results, "in_use": True}
    assert again.env["PYTORCH_TUNABLEOP_TUNING"][0] == "0"
    # Another TP, dtype or quantization is another configuration.
    other = decide(make_run(tp=2, quantization="fp8"), tmp_path)
    assert other is not None and other.tune_first


def test_no_serving_point_means_no_pass_and_untuned(tmp_path: Path) -> None:
    decision = decide(make_run(scenarios=("latency",)), tmp_path)
    assert decision is not None and decision.results is not None and not decision.tune_first
    assert decision.record["pass"]["ran"] is False
    assert "no serving point" in decision.record["pass"]["reason"]


def test_warmup_point_is_small_at_once_and_into_a_scratch_file(tmp_path: Path) -> None:
    job = make_job(make_run(), tmp_path)
    point = job.points[0]
    warm = tunableop.warmup_point(point)
    argv = list(warm.argv)
    value = {flag: argv[argv.index(flag) + 1] for flag in ("--num-prompts", "--request-rate")}
    assert value == {"--num-prompts": "4", "--request-rate": "inf"}
    assert argv[argv.index("--result-dir") + 1] != RAW_DIR
    assert warm.id == tunableop.WARMUP_ID and warm.expected == 4
    assert argv[:3] == list(point.argv[:3])  # the same client: `vllm bench serve`


# -- the executors ---------------------------------------------------------------------------------


def test_container_sets_tuning_so_the_entrypoint_leaves_it_to_the_agent(tmp_path: Path) -> None:
    def paths(run: Run) -> Any:
        return map_paths(
            run, profile_for(run.vendor), run_dir_host=tmp_path, tunableop_volume="vol"
        )

    amd = paths(make_run())
    assert amd.environment["PYTORCH_TUNABLEOP_TUNING"] == "0"
    assert amd.tunableop_dir == "/var/lib/bench/tunableop"
    assert any(m.target == "/var/lib/bench/tunableop" for m in amd.mounts)
    mine = paths(make_run(env=(("PYTORCH_TUNABLEOP_FILENAME", "/x/r.csv"),)))
    assert "PYTORCH_TUNABLEOP_TUNING" not in mine.environment
    nvidia = paths(make_run("nvidia"))
    assert "PYTORCH_TUNABLEOP_TUNING" not in nvidia.environment
    assert nvidia.tunableop_dir is None


def test_local_executor_keeps_results_under_the_xdg_cache(tmp_path: Path) -> None:
    assert local_tunableop_dir("amd", {"XDG_CACHE_HOME": str(tmp_path)}) == str(
        tmp_path / "vllm-bench" / "tunableop"
    )
    assert (local_tunableop_dir("amd", {}) or "").endswith("/.cache/vllm-bench/tunableop")
    assert local_tunableop_dir("cpu", {}) is None


def test_job_carries_the_directory() -> None:
    job = make_job(make_run(), Path("/srv/tunableop"))
    again = Job.from_dict(json.loads(json.dumps(job.to_dict())))
    assert again.tunableop_dir == "/srv/tunableop"
    old = {k: v for k, v in job.to_dict().items() if k != "tunableop_dir"}
    assert Job.from_dict(old).tunableop_dir is None  # a job from before: the vendor's own


# -- the flow through the real agent ---------------------------------------------------------------

# `vllm serve` and `vllm bench serve`, well enough for the agent: each server start is logged
# with its TunableOp variables; at SIGTERM a tuning server writes one results file per TP rank
# (PyTorch writes them at exit) when FAKE_TUNABLEOP_WRITE=1.
FAKE_VLLM = """#!{python}
import http.server, json, os, signal, sys, urllib.request

def flag(argv, name, default=None):
    return argv[argv.index(name) + 1] if name in argv else default

def serve(argv):
    with open(os.environ["FAKE_VLLM_STARTS"], "a") as log:
        log.write(json.dumps({{k: os.environ.get("PYTORCH_TUNABLEOP_" + k)
                              for k in ("TUNING", "FILENAME")}}) + "\\n")
    tp = int(flag(argv, "--tensor-parallel-size", "1"))
    if os.environ.get("PYTORCH_TUNABLEOP_TUNING") == "1" and os.environ.get("FAKE_TUNING_CRASH"):
        sys.exit("RuntimeError: HIP out of memory while tuning")

    def stop(signum, frame):
        name = os.environ.get("PYTORCH_TUNABLEOP_FILENAME")
        tuning = os.environ.get("PYTORCH_TUNABLEOP_TUNING") == "1"
        if name and tuning and os.environ.get("FAKE_TUNABLEOP_WRITE") == "1":
            for ordinal in range(tp):
                with open(name.replace("%d", str(ordinal)), "w") as out:
                    out.write("Validator,PT_VERSION,2.13\\nGemmTunableOp_Half_TN,tn_8_8_8,x,0.1\\n")
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.reply({{}})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.reply({{"choices": [{{"text": "ok"}}]}})

    address = (flag(argv, "--host"), int(flag(argv, "--port")))
    http.server.ThreadingHTTPServer(address, Handler).serve_forever()

def bench_serve(argv):
    count = int(flag(argv, "--num-prompts"))
    for _ in range(count):
        request = urllib.request.Request(
            flag(argv, "--base-url") + "/v1/completions", data=b"{{}}", method="POST")
        urllib.request.urlopen(request, timeout=10).read()
    with open(os.environ["FAKE_VLLM_CLIENTS"], "a") as log:
        log.write(json.dumps({{"prompts": count, "dir": flag(argv, "--result-dir")}}) + "\\n")
    directory = flag(argv, "--result-dir")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, flag(argv, "--result-filename")), "w") as out:
        json.dump({{"completed": count, "failed": 0}}, out)

if sys.argv[1] == "serve":
    serve(sys.argv[2:])
elif sys.argv[1:3] == ["bench", "serve"]:
    bench_serve(sys.argv[3:])
else:
    sys.exit(2)
"""

FAKE_AMD_SMI = """#!/bin/sh
[ "$1" = static ] || exit 1
cat <<'EOF'
{static}
EOF
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def rocm_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A ROCm host as the agent sees it: two MI300X (a stand-in amd-smi), the image's
    PYTORCH_TUNABLEOP_ENABLED, and a stand-in `vllm`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "amd-smi", FAKE_AMD_SMI.format(static=AMD_SMI_STATIC))
    vllm = _executable(bin_dir / "vllm", FAKE_VLLM.format(python=sys.executable))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTORCH_TUNABLEOP_ENABLED", "1")
    monkeypatch.setenv("FAKE_VLLM_STARTS", str(tmp_path / "starts.jsonl"))
    monkeypatch.setenv("FAKE_VLLM_CLIENTS", str(tmp_path / "clients.jsonl"))
    monkeypatch.setenv("FAKE_TUNABLEOP_WRITE", "1")
    return {"vllm": vllm, "root": tmp_path / "tunableop", "out": tmp_path / "runs", "tmp": tmp_path}


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_agent(host: dict[str, Path], run_id: str) -> dict[str, Any]:
    """Run one serving job through the real agent; what it wrote and what the stand-ins saw."""
    for name in ("starts.jsonl", "clients.jsonl"):
        (host["tmp"] / name).unlink(missing_ok=True)
    job = make_job(
        make_run(run_id=run_id), host["root"], port=free_port("127.0.0.1"), vllm=str(host["vllm"])
    )
    stream = io.StringIO()
    code = run_job(json.loads(json.dumps(job.to_dict())), host["out"], Events(stream))
    run_dir = host["out"] / run_id
    return {
        "code": code,
        "dir": run_dir,
        "status": json.loads((run_dir / STATUS_FILE).read_text()),
        "provenance": json.loads((run_dir / PROVENANCE_FILE).read_text()),
        "events": [json.loads(line) for line in stream.getvalue().splitlines()],
        "starts": _lines(host["tmp"] / "starts.jsonl"),
        "clients": _lines(host["tmp"] / "clients.jsonl"),
    }


RESULTS = "AMD-Instinct-MI300X/org--tiny-model/tp1-bfloat16/tunableop_results%d.csv"


def test_agent_tunes_in_a_warm_up_pass_then_reuses(rocm_host: dict[str, Path]) -> None:
    results = str(rocm_host["root"] / RESULTS)
    first = run_agent(rocm_host, "r-first")
    assert first["code"] == 0 and first["status"]["status"] == OK
    # Two servers: the tuning one, then the measured one with tuning off.
    assert first["starts"] == [
        {"TUNING": "1", "FILENAME": results},
        {"TUNING": "0", "FILENAME": results},
    ]
    # The warm-up load is 4 prompts into a scratch file; then the two points, into raw/.
    assert [c["prompts"] for c in first["clients"]] == [4, 4, 4]
    assert [c["dir"] for c in first["clients"]][1:] == [RAW_DIR, RAW_DIR]
    raw = sorted(path.name for path in (first["dir"] / RAW_DIR).iterdir())
    assert raw == sorted(Path(point["result"]).name for point in first["status"]["points"])
    assert not (first["dir"] / ".tunableop-warmup").exists()
    assert (first["dir"] / tunableop.TUNING_SERVER_LOG).exists()
    assert [p["verdict"] for p in first["status"]["points"]] == [OK, OK]
    for point in first["status"]["points"]:
        assert point["tunableop"] == {"results": results, "in_use": True}
    record = first["provenance"]["tunableop"]
    assert record["managed"] is True and record["results"] == results
    assert record["pass"]["ran"] is True
    assert record["pass"]["written"] == [results.replace("%d", "0")]
    assert record["pass"]["warmup"]["prompts"] == 4 and record["pass"]["seconds"] >= 0
    assert "warning" not in record["pass"]
    assert first["provenance"]["env"]["PYTORCH_TUNABLEOP_TUNING"] == "0"
    assert first["provenance"]["env"]["PYTORCH_TUNABLEOP_FILENAME"] == results
    assert not [e for e in first["events"] if e["event"] == "warning" and "TunableOp" in e["text"]]

    again = run_agent(rocm_host, "r-again")
    assert again["code"] == 0
    assert again["starts"] == [{"TUNING": "0", "FILENAME": results}]  # only the measured one
    assert [c["prompts"] for c in again["clients"]] == [4, 4]
    assert all(p["tunableop"]["in_use"] for p in again["status"]["points"])
    assert again["provenance"]["tunableop"]["pass"] == {
        "ran": False,
        "reason": "results exist for this configuration",
    }


def test_a_pass_that_writes_nothing_warns_and_measures_untuned(
    rocm_host: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TUNABLEOP_WRITE", "0")
    results = str(rocm_host["root"] / RESULTS)
    out = run_agent(rocm_host, "r-unsaved")
    assert out["code"] == 0 and out["status"]["status"] == OK  # measured, not failed
    assert [s["TUNING"] for s in out["starts"]] == ["1", "0"]
    warnings = [e["text"] for e in out["events"] if e["event"] == "warning"]
    tunable = [w for w in warnings if w.startswith("TunableOp:")]
    assert len(tunable) == 1 and "wrote results for 0 of 1 GPU(s)" in tunable[0]
    assert "measured untuned" in tunable[0]
    record = out["provenance"]["tunableop"]
    assert record["pass"]["written"] == [] and record["pass"]["warning"] == tunable[0]
    for point in out["status"]["points"]:
        assert point["tunableop"] == {"results": results, "in_use": False}


def test_disabled_tunableop_starts_one_server_as_before(
    rocm_host: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTORCH_TUNABLEOP_ENABLED")
    out = run_agent(rocm_host, "r-off")
    assert out["code"] == 0
    assert out["starts"] == [{"TUNING": None, "FILENAME": None}]
    assert out["provenance"]["tunableop"] == {"enabled": False}
    assert all("tunableop" not in p for p in out["status"]["points"])


def test_a_tuning_server_that_fails_warns_and_the_points_still_run(
    rocm_host: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TUNING_CRASH", "1")
    out = run_agent(rocm_host, "r-crash")
    assert out["code"] == 0 and [s["TUNING"] for s in out["starts"]] == ["1", "0"]
    warning = out["provenance"]["tunableop"]["pass"]["warning"]
    assert warning.startswith(
        "TunableOp: the tuning server failed (vllm serve exited with status 1"
    )
    assert "HIP out of memory" in warning and warning.endswith("the points are measured untuned")
    assert [c["prompts"] for c in out["clients"]] == [4, 4]  # no warm-up load was sent
    assert all(p["tunableop"]["in_use"] is False for p in out["status"]["points"])
