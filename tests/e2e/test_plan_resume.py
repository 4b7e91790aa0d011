"""A plan file's sweep on the CPU: interrupted after its first configuration, then resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.test_cpu_sweep import BENCH_RUN, _json, _wait_for_event

PLAN = """vendor: cpu
executor: local
model: {model}
max_model_len: 2048
env: [VLLM_CPU_KVCACHE_SPACE=1]
input_len: 64
output_len: 16
qps: [2, inf]
num_prompts: 4
matrix:
  dtype: [bfloat16, float32]
"""


def _states(sweep_dir: Path) -> list[str]:
    try:
        record = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [c["state"] for c in record["configurations"]]


def _wait_for_state(out: Path, first: str, deadline_s: float) -> Path:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for sweep_dir in out.glob("sweep-*"):
            if _states(sweep_dir)[:1] == [first]:
                return sweep_dir
        time.sleep(0.5)
    raise AssertionError(f"the first configuration was not {first} within {deadline_s} s")


def test_ctrl_c_after_the_first_configuration_then_resume(tmp_path: Path, tiny_model: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(model=tiny_model), encoding="utf-8")
    out = tmp_path / "runs"
    argv = [BENCH_RUN, "--plan", str(plan), "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sweep_dir = _wait_for_state(out, "ok", 400)
        _wait_for_event(sweep_dir, "server_starting", 120)  # the second configuration's
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert f"bench-run --resume {sweep_dir}" in stderr
    assert _states(sweep_dir) == ["ok", "interrupted"]
    first_runs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert [name[:5] for name in first_runs] == ["c0001", "c0002"], first_runs

    done = subprocess.run(
        [BENCH_RUN, "--resume", str(sweep_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert _states(sweep_dir) == ["ok", "ok"]
    runs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert len(runs) == 3 and runs[:2] == first_runs and runs[2].startswith("c0002")
    assert runs[2].endswith("-r2"), "the second configuration ran again, in its own directory"
    assert not any(name.startswith("c0001") for name in runs[2:]), "the first was not repeated"
    status = _json(sweep_dir / runs[2] / "status.json")
    assert [(p["id"], p["verdict"]) for p in status["points"]] == [
        ("serve-qps2", "ok"),
        ("serve-qpsinf", "ok"),
    ]
    assert _json(sweep_dir / runs[2] / "run.json")["engine"]["dtype"] == "float32"
