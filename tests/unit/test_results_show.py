"""`bench-results show`: filters, the four formats (the exports), the default root, bad input."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from results.analysis.query import load_records
from results.cli import main
from results.model.schema import SCHEMA_VERSION, Record
from results.render.formats import (
    CSV_FIELDS,
    metric_sort_key,
    metrics_present,
    render_markdown,
    render_table,
)
from tests.unit.synthetic_runs import make_run
from tests.unit.table_oracle import format_table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CPU = "20261122-054648-tiny-llama-cpu-0a0001"
FP8 = "20261122-060000-tiny-llama-cpu-0a0002"
OLD = "20261122-070000-llama-3-8b-nvidia-0a0003"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    results_root = tmp_path / "runs"
    results_root.mkdir()
    make_run(results_root, CPU)
    make_run(
        results_root,
        FP8,
        quantization="fp8",
        latency=0.5,
        throughput=2.0,
        qps=(2.0, math.inf),
        failed=("serve-qpsinf",),
    )
    # a serving point in vLLM 0.5.4's output keys: its keys, normalised
    old = make_run(results_root, OLD, qps=(math.inf,), scenarios=("serve",))
    (old / "raw" / "serve-qpsinf.json").write_text(
        (FIXTURES / "vllm-older-releases" / "serve-v0.5.4-qpsinf.json").read_text()
    )
    return results_root


def show(*args: str, env: dict[str, str] | None = None) -> Result:
    # catch_exceptions=False: a traceback must fail the test, not hide in result.exception
    return CliRunner().invoke(
        main, ["show", *args], env=env, catch_exceptions=False, prog_name="bench-results"
    )


def test_table_is_format_tables_look(root: Path) -> None:
    records = load_records([root])
    assert render_table(records) == format_table(records)
    assert render_table(records[:5]) == format_table(records[:5])  # one run: no run column
    assert render_table([]) == format_table([]) == "no points to show"
    result = show(str(root))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout == format_table(records) + "\n"
    assert "cpu-0a0002/serve-qpsinf: failed: 20 of 20 requests failed" in result.stdout


def test_json_is_the_record_schema(root: Path) -> None:
    result = show(str(root), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, list)
    assert len(data) == 10
    assert {item["schema"] for item in data} == {SCHEMA_VERSION}
    assert [Record.from_dict(item) for item in data] == load_records([root])
    inf = [item for item in data if item["point_id"] == "serve-qpsinf"]
    assert {item["qps"] for item in inf} == {"inf"}


def test_csv_export(root: Path) -> None:
    result = show(str(root), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    records = load_records([root])
    assert len(rows) == len(records)
    header = result.stdout.splitlines()[0].split(",")
    # every field, then the union of every metric present in a stable order, then run_dir
    metrics = metrics_present(records)
    assert header == [*CSV_FIELDS, *metrics, "run_dir"]
    assert metrics == sorted(metrics, key=metric_sort_key)
    assert metrics[:3] == ["request_throughput", "output_throughput", "input_throughput"]
    assert "e2el_p10_ms" in metrics  # latency's only
    assert "input_throughput" in metrics  # vLLM 0.5.4's only
    for row, record in zip(rows, records, strict=True):
        assert row["run_id"] == record.run_id
        assert row["precision"] == record.precision
        for name in metrics:
            value = record.metric(name)
            assert row[name] == ("" if value is None else repr(value))
    old = rows[-1]
    assert (old["run_id"], old["qps"], old["failed"]) == (OLD, "inf", "0")
    assert float(old["total_token_throughput"]) == pytest.approx(3853.32004 + 523.71313, 1e-6)
    failed = next(r for r in rows if r["run_id"] == FP8 and r["point_id"] == "serve-qpsinf")
    assert failed["verdict"] == "failed"
    assert failed["reasons"] == "20 of 20 requests failed"


def test_markdown(root: Path) -> None:
    result = show(str(root), "--format", "markdown", "--scenario", "serve")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "_TTFT, TPOT, ITL and E2EL columns are latencies in milliseconds (ms)._"
    assert lines[2].startswith("| run ")
    assert lines[3].startswith("|--")
    assert len([line for line in lines if line.startswith(("| cpu-", "| nvidia-"))]) == 6
    assert lines[-1] == "- cpu-0a0002/serve-qpsinf: failed: 20 of 20 requests failed"
    assert render_markdown([]) == "_no points to show_"


def test_filters(root: Path) -> None:
    def points(*args: str) -> list[tuple[str, str]]:
        result = show(str(root), "--format", "json", *args)
        assert result.exit_code == 0, result.output
        return [(item["run_id"][-6:], item["point_id"]) for item in json.loads(result.stdout)]

    assert points("--precision", "fp8", "--scenario", "serve") == [
        ("0a0002", "serve-qps2"),
        ("0a0002", "serve-qpsinf"),
    ]
    assert points("--where", "qps=inf", "--where", "verdict=ok") == [("0a0003", "serve-qpsinf")]
    assert points("--run", "20261122-06", "--scenario", "latency,throughput") == [
        ("0a0002", "latency"),
        ("0a0002", "throughput"),
    ]
    assert len(points("--model", "tiny-llama")) == 10  # .cache/tiny-llama, by its last part
    assert len(points("--vendor", "CPU")) == 10  # values compare case-insensitively
    nothing = show(str(root), "--model", "llama-70b", "--vendor", "amd")
    assert nothing.exit_code == 1
    assert nothing.stderr == (
        f"error: no point under {root} matches model=llama-70b,vendor=amd: loosen the filter "
        "(bench-results show without filters lists every point)\n"
    )


def test_metrics_columns(root: Path) -> None:
    result = show(
        str(root), "--scenario", "serve", "--metrics", "tpot_p99_ms,total_token_throughput"
    )
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[1].split()
    assert header == [
        "run",
        "scenario",
        "QPS",
        "done/failed",
        "TPOT",
        "p99",
        "total",
        "tok/s",
        "verdict",
    ]
    csv_out = show(str(root), "--format", "csv", "--metrics", "ttft_p99_ms")
    assert csv_out.stdout.splitlines()[0].endswith(",achieved_rate,slo_met,ttft_p99_ms,run_dir")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--where", "model"],
            "error: Invalid value for '--where': filter 'model' is not key=value",
        ),
        (["--where", "colour=red"], "error: Invalid value for '--where': unknown filter key"),
        (["--metrics", "speed"], "error: Invalid value for '--metrics': unknown metric 'speed'"),
        (["--format", "yaml"], "error: Invalid value for '--format': 'yaml' is not one of"),
    ],
)
def test_usage_errors(root: Path, args: list[str], message: str) -> None:
    result = show(str(root), *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(message)
    assert result.stderr.endswith("(see bench-results show --help)\n")


def test_default_root(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_env = show(env={"BENCH_RESULTS_ROOT": str(root)})
    assert from_env.exit_code == 0, from_env.output
    assert from_env.stdout == show(str(root)).stdout
    monkeypatch.chdir(root.parent)  # ./runs
    assert show(env={"BENCH_RESULTS_ROOT": ""}).stdout == from_env.stdout
    missing = show(env={"BENCH_RESULTS_ROOT": str(tmp_path / "nowhere")})
    assert missing.exit_code == 1
    assert missing.stderr == (
        f"error: no results root {tmp_path / 'nowhere'}: give run directories or a folder of "
        "them, or set BENCH_RESULTS_ROOT\n"
    )


def test_not_a_run_directory(root: Path) -> None:
    (root / "plots").mkdir()
    lenient = show(str(root))
    assert lenient.exit_code == 0
    assert lenient.stderr == (
        f"warning: skipped {root / 'plots'}: not a run directory (no run.json)\n"
    )
    assert lenient.stdout == show(str(root / CPU), str(root / FP8), str(root / OLD)).stdout
    strict = show(str(root), "--strict")
    assert strict.exit_code == 1
    assert strict.stdout == ""
    assert strict.stderr == (
        f"error: {root / 'plots'}: not a run directory (no run.json); "
        "strict reading skips nothing\n"
    )


def test_truncated_raw_file_is_named(root: Path) -> None:
    raw = root / CPU / "raw" / "serve-qps4.json"
    raw.write_text(raw.read_text()[:300])
    result = show(str(root / CPU))
    assert result.exit_code == 0
    assert "serve-qps4: failed: raw/serve-qps4.json is not valid JSON" in result.stdout


def test_console_script(root: Path) -> None:
    script = Path(sys.executable).parent / "bench-results"
    proc = subprocess.run(
        [str(script), "show", str(root), "--format", "csv", "--where", "point=latency"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3  # header and the two runs with a latency point
