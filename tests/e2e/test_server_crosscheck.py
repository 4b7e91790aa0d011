"""The cross-check of the client's tokens against the server's counters, on a real server.

One `vllm serve` on the CPU, two serving points in `--client-mode process`, through bench-run.
`--vllm` is a small wrapper this test writes: `vllm serve` (and anything else) is the real vllm,
exec'd; `vllm bench serve` runs the real client and then, for one point only, rewrites the JSON
it saved so that it reports fewer output tokens than it received: the second half of the
requests' `output_lens` halved, `total_output_tokens` and the throughputs made to match. The
agent's probe then reads that file as it reads any other, after the point: the real cross-check
(runner/agent/server_metrics.py) must catch the lie, naming both numbers, while the honest point
of the same run has no warning.
"""

from __future__ import annotations

import json
import re
import stat
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from results.cli import main as results_main
from results.model.records import records_from_run
from results.model.rundir import load_run
from runner.cli import main as run_main
from tests.e2e.test_cpu_sweep import COMMON

PROMPTS, OUTPUT_LEN = 8, 16  # COMMON's --output-len
LYING, HONEST = "serve-qps4", "serve-qpsinf"

WRAPPER = """#!{python}
import json, os, subprocess, sys
from pathlib import Path

REAL, LIE_FOR, KEEP = {real!r}, {lie_for!r}, Path({keep!r})
args = sys.argv[1:]
if args[:2] != ["bench", "serve"]:
    os.execv(REAL, [REAL, *args])
code = subprocess.call([REAL, *args])
name = args[args.index("--result-filename") + 1]
saved = Path(args[args.index("--result-dir") + 1]) / name
if code == 0 and name == LIE_FOR and saved.is_file():
    text = saved.read_text(encoding="utf-8")
    (KEEP / name).write_text(text, encoding="utf-8")  # what the client really received
    data = json.loads(text)
    lens = data["output_lens"]
    half = len(lens) // 2
    lens = lens[:half] + [n // 2 for n in lens[half:]]  # the first request's length is kept
    data["output_lens"] = lens
    data["total_output_tokens"] = sum(lens)
    data["output_throughput"] = sum(lens) / data["duration"]
    data["total_token_throughput"] = (data["total_input_tokens"] + sum(lens)) / data["duration"]
    saved.with_suffix(".tmp").write_text(json.dumps(data), encoding="utf-8")
    os.replace(saved.with_suffix(".tmp"), saved)
sys.exit(code)
"""


def _wrapper(where: Path, real: str, keep: Path) -> Path:
    path = where / "vllm"
    text = WRAPPER.format(python=sys.executable, real=real, lie_for=f"{LYING}.json", keep=str(keep))
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_cross_check_catches_a_client_that_hides_tokens(
    tmp_path: Path, tiny_model: Path, vllm_exe: str
) -> None:
    keep = tmp_path / "honest"
    keep.mkdir()
    wrapper = _wrapper(tmp_path, vllm_exe, keep)
    out = tmp_path / "runs"
    args = [
        "--model", str(tiny_model), *COMMON, "--qps", "4,inf", "--num-prompts", str(PROMPTS),
        "--client-mode", "process", "--vllm", str(wrapper), "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    status = _json(run_dir / "status.json")
    assert status["client"] == {"mode": "process"}
    assert _json(run_dir / "provenance.json")["commands"]["server"][0] == str(wrapper)
    entries = {p["id"]: p for p in status["points"]}
    assert [entries[p]["verdict"] for p in (LYING, HONEST)] == ["ok", "ok"]

    # What the client really received (kept by the wrapper) and what it then reported.
    truth = _json(keep / f"{LYING}.json")
    lied = _json(run_dir / "raw" / f"{LYING}.json")
    assert truth["completed"] == PROMPTS and truth["total_output_tokens"] == PROMPTS * OUTPUT_LEN
    assert lied["total_output_tokens"] == PROMPTS * OUTPUT_LEN * 3 // 4
    for point, client in ((LYING, truth), (HONEST, _json(run_dir / "raw" / f"{HONEST}.json"))):
        seen = entries[point]["probe"]["metrics"]
        # The server's counters are what it generated, whatever the client says: every request
        # (--ignore-eos; a test or warm-up request too, where the client sends one: vLLM 0.32's
        # `bench serve` skips its test request by default) got OUTPUT_LEN tokens.
        warmups = seen["server_warmup_requests"]
        assert seen["server_requests"] == PROMPTS + warmups, (point, seen)
        assert seen["server_generation_tokens"] == (PROMPTS + warmups) * OUTPUT_LEN, seen
        assert seen["server_generation_tokens"] - warmups * OUTPUT_LEN == sum(client["output_lens"])
        server_rate = client["total_output_tokens"] / client["duration"]
        assert abs(seen["server_output_throughput"] - server_rate) <= 1e-3 * server_rate, seen

    said = entries[LYING]["probe"]["warnings"]
    measured = PROMPTS * OUTPUT_LEN
    tokens = [w for w in said if w.startswith("output tokens:")]
    assert len(tokens) == 1, said
    assert f"the client counted {lied['total_output_tokens']}, " in tokens[0], tokens
    assert re.search(rf"the server generated {measured}\b", tokens[0]), tokens
    rate = [w for w in said if w.startswith("output throughput:")]
    server_rate = entries[LYING]["probe"]["metrics"]["server_output_throughput"]
    assert len(rate) == 1, said
    assert f"the client reported {lied['output_throughput']:.1f} tok/s" in rate[0], rate
    assert f"the server's counters give {server_rate:.1f} tok/s" in rate[0], rate
    assert entries[HONEST]["probe"]["warnings"] == [], entries[HONEST]["probe"]["warnings"]

    # The records carry it (and only the lying point's): bench-results lists it under the table.
    records = {r.point_id: r for r in records_from_run(load_run(run_dir))}
    assert tokens[0] in records[LYING].warnings and rate[0] in records[LYING].warnings
    assert records[HONEST].warnings == ()
    lying_seen = entries[LYING]["probe"]["metrics"]
    assert (
        records[LYING].metrics["server_generation_tokens"] == lying_seen["server_generation_tokens"]
    )
    shown = CliRunner().invoke(results_main, ["show", str(run_dir)], catch_exceptions=False)
    assert shown.exit_code == 0
    assert f"{LYING}: warning: {tokens[0]}" in shown.stdout, shown.stdout
    assert f"{HONEST}: warning" not in shown.stdout, shown.stdout
