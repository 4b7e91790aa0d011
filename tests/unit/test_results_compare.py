"""bench-results compare: statistics against reference values, matching, wording, the gate."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from results.analysis.compare import compare, parse_metrics
from results.analysis.comparison import MetricComparison, Side
from results.analysis.query import load_records
from results.analysis.sides import load_sides
from results.analysis.stats import Summary, incomplete_beta, t_cdf, t_quantile, welch_test
from results.cli import main
from results.errors import ResultsError
from results.model.schema import HEADLINE_METRICS
from tests.unit.synthetic_runs import make_run

BENCH_RESULTS = Path(sys.executable).parent / "bench-results"


def run_id(n: int, vendor: str = "cpu") -> str:
    return f"20261122-0{n:05d}-tiny-llama-{vendor}-{n:06x}"


def invoke(*args: str | Path) -> Result:
    # catch_exceptions=False: a traceback must fail the test, not hide in result.exception
    return CliRunner().invoke(main, ["compare", *map(str, args)], catch_exceptions=False)


def side(name: str, *run_dirs: Path) -> Side:
    return Side(name, name, tuple(load_records(list(run_dirs))))


# --- statistics, against scipy 1.17 (computed once, outside the test environment) and tables


@pytest.mark.parametrize(
    ("t", "df", "expected"),
    [
        (0.5, 1, 0.6475836176504333),
        (2.0, 5, 0.9490302605850708),
        (1.0, 2.5, 0.7979694863608632),
        (-1.7, 12.3, 0.057128745175606496),
        (3.0, 30, 0.9973050179671741),
        (2.5, 200, 0.9933884136791497),
        (10.0, 3, 0.9989358004707929),
        (0.0, 4, 0.5),
    ],
)
def test_t_cdf_matches_scipy(t: float, df: float, expected: float) -> None:
    assert t_cdf(t, df) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        # the two-sided 5% column of every t table, and scipy.stats.t.ppf
        (0.975, 1, 12.706204736174694),
        (0.975, 2, 4.302652729749462),
        (0.975, 4, 2.7764451051977934),
        (0.975, 9, 2.262157162798205),
        (0.975, 29, 2.045229642132703),
        (0.975, 1000, 1.9623390808264083),
        (0.995, 3, 5.840909309733355),
        (0.025, 4, -2.7764451051977934),
    ],
)
def test_t_quantile_matches_tables(p: float, df: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-10)


def test_incomplete_beta_known_values() -> None:
    # I_0.5(2, 3) = P(Binomial(4, 0.5) >= 2) = 11/16 exactly
    assert incomplete_beta(2, 3, 0.5) == pytest.approx(0.6875, rel=1e-14)
    assert incomplete_beta(0.5, 0.5, 0.3) == pytest.approx(0.36901011956554536, rel=1e-12)
    assert incomplete_beta(10, 0.5, 0.99) == pytest.approx(0.6579281751567845, rel=1e-12)
    assert (incomplete_beta(3, 4, 0.0), incomplete_beta(3, 4, 1.0)) == (0.0, 1.0)


def test_welch_wikipedia_example() -> None:
    # Welch's t-test, Wikipedia, example 1: t = -2.46, df = 24.99, p = 0.021 (scipy: below)
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    result = welch_test(b, a)  # mean(a) - mean(b), as the example reports it
    assert result.t == pytest.approx(-2.455356398286006, rel=1e-12)
    assert result.df == pytest.approx(24.988529290231416, rel=1e-12)
    assert result.p_value == pytest.approx(0.021378001462866992, rel=1e-10)


def test_welch_constant_samples_and_too_few() -> None:
    assert welch_test([2.0, 2.0], [2.0, 2.0]).p_value == 1.0
    assert welch_test([2.0, 2.0], [3.0, 3.0]).p_value == 0.0
    with pytest.raises(ResultsError, match="at least 2 values"):
        welch_test([1.0], [1.0, 2.0])


def test_summary_confidence_interval() -> None:
    summary = Summary((1.0, 1.1, 1.2))
    assert summary.mean == pytest.approx(1.1)
    assert summary.std == pytest.approx(0.1)
    assert summary.interval == pytest.approx((0.8515862288249669, 1.3484137711750328), rel=1e-12)
    single = Summary((5.0,))
    assert (single.std, single.interval) == (None, None)


# --- comparisons of synthetic runs (the real CPU sweep, rescaled)


def test_single_runs_ratio_and_direction(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1))
    cand = make_run(tmp_path / "b", run_id(2), latency=1 / 3.5, throughput=1.12)
    comparison = compare(side("baseline", base), side("candidate", cand))
    assert [p.label for p in comparison.points] == [
        "serve @ 2 QPS, 128/32 tokens",
        "serve @ 4 QPS, 128/32 tokens",
        "serve @ 8 QPS, 128/32 tokens",
        "latency batch 4, 128/32 tokens",
        "throughput, 128/32 tokens",
    ]
    serve = {m.name: m for m in comparison.points[0].metrics}
    assert list(serve) == list(HEADLINE_METRICS)
    tpot = serve["tpot_median_ms"]
    assert tpot.ratio == pytest.approx(1 / 3.5)
    assert (tpot.change_text, tpot.verdict, tpot.p_value) == ("3.5x lower", "better", None)
    assert tpot.reading == "3.5x lower (better)"
    out = serve["output_throughput"]
    assert out.change_pct == pytest.approx(12.0)
    assert (out.reading, out.verdict) == ("12% higher (better)", "better")
    # the rate the load generator sent is the same on both sides
    assert serve["request_throughput"].reading == "12% higher (better)"
    assert comparison.points[0].repeats == "1 run each: no significance test"


def test_cli_table_says_what_changed(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1))
    cand = make_run(tmp_path / "b", run_id(2), latency=1.2, scenarios=("serve",), qps=(4,))
    result = invoke(base, cand)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "serve @ 4 QPS, 128/32 tokens: 1 run each: no significance test" in lines
    row = next(line for line in lines if line.startswith("TPOT median (ms)"))
    assert row.split()[3:] == ["6.34", "7.61", "1.200", "20%", "higher", "(worse)"]
    assert "only in baseline: serve @ 2 QPS, 128/32 tokens" in lines
    assert "only in baseline: throughput, 128/32 tokens" in lines
    assert lines[-1] == (
        "summary: 1 point(s) compared, 14 metric comparison(s): 0 better, 12 worse, "
        "2 same; 4 point(s) unmatched"
    )


def test_repeats_mean_ci_and_welch(tmp_path: Path) -> None:
    # a latency factor per run; Welch's t and a CI scale with the data, so the references are
    # those of the factors themselves
    base = [make_run(tmp_path / "a", run_id(i), latency=f) for i, f in enumerate((1.0, 1.1, 1.2))]
    cand = [
        make_run(tmp_path / "b", run_id(10 + i), latency=f) for i, f in enumerate((1.3, 1.4, 1.6))
    ]
    comparison = compare(side("baseline", *base), side("candidate", *cand))
    point = comparison.points[1]
    assert point.label == "serve @ 4 QPS, 128/32 tokens"
    assert point.repeats == "3 vs 3 runs: mean ± 95% CI, Welch's t-test"
    metrics = {m.name: m for m in point.metrics}
    tpot = metrics["tpot_median_ms"]
    value = load_records([base[0]])[1].metric("tpot_median_ms")
    assert value is not None
    assert tpot.baseline.mean == pytest.approx(1.1 * value)
    assert tpot.baseline.interval == pytest.approx(
        (0.8515862288249669 * value, 1.3484137711750328 * value), rel=1e-9
    )
    assert tpot.p_value == pytest.approx(0.041914517471454, rel=1e-9)
    assert (tpot.significant, tpot.verdict) == (True, "worse")
    # serve rates do not move with the latency factor: constant, equal samples
    rps = metrics["request_throughput"]
    assert (rps.p_value, rps.verdict, rps.reading) == (1.0, "same", "unchanged")
    # the latency scenario's tokens/s is tokens over the batch latency: 1/factor
    latency_point = comparison.points[3]
    out = {m.name: m for m in latency_point.metrics}["output_throughput"]
    assert out.p_value == pytest.approx(0.03061425868424168, rel=1e-9)
    assert out.verdict == "worse"


def test_repeats_not_significant_pass_the_gate(tmp_path: Path) -> None:
    for i, f in enumerate((1.0, 1.1, 1.2)):
        make_run(tmp_path / "a", run_id(i), latency=f, scenarios=("serve",), qps=(2,))
    for i, f in enumerate((0.9, 1.3, 1.5)):
        make_run(tmp_path / "b", run_id(10 + i), latency=f, scenarios=("serve",), qps=(2,))
    result = invoke(tmp_path / "a", tmp_path / "b", "--fail-if-worse", "5", "--metrics", "tpot")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("TPOT mean (ms)"))
    # +12% on average, but p = 0.535 (scipy): noise, not a regression
    assert row.endswith("12% higher (not significant)  0.535")
    assert "±" in row
    assert result.stderr.splitlines() == [
        "gate --fail-if-worse 5%: passed; checked 3 comparison(s) of 3 metric(s) at 1 point(s) "
        "(tpot_mean_ms, tpot_median_ms, tpot_p99_ms) and the candidate's failed points"
    ]


def test_gate_fails_on_each_worse_metric(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1), scenarios=("serve",))
    cand = make_run(tmp_path / "b", run_id(2), latency=1.2, throughput=0.97, scenarios=("serve",))
    result = invoke(base, cand, "--fail-if-worse", "10")
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    worse = [line for line in errors if line.startswith("worse: ")]
    # 12 latencies at each of 3 points are 20% worse; 3% less throughput is within 10%
    assert len(worse) == 36
    assert worse[0].startswith(
        "worse: serve @ 2 QPS, 128/32 tokens: TTFT mean 20% higher (worse): 23.60 -> 28.32 ms"
    )
    assert errors[-2].startswith("gate --fail-if-worse 10%: 36 regression(s); checked 42 ")
    assert errors[-1] == (
        "error: the candidate fails the gate --fail-if-worse 10%: 36 regression(s), "
        "one per 'worse:' line above"
    )
    # the table still reaches stdout: a CI log shows what failed
    assert "summary: 3 point(s) compared" in result.stdout

    assert invoke(base, cand, "--fail-if-worse", "25").exit_code == 0
    assert invoke(base, cand, "--fail-if-worse", "2").exit_code == 1  # now throughput too


def test_gate_exit_status_from_the_installed_script(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1), scenarios=("throughput",))
    cand = make_run(tmp_path / "b", run_id(2), throughput=0.5, scenarios=("throughput",))
    argv = [str(BENCH_RESULTS), "compare", str(base), str(cand), "--fail-if-worse", "5"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "worse: throughput, 128/32 tokens: output tokens/s 2x lower (worse)" in proc.stderr
    proc = subprocess.run(
        [*argv[:-2], "--fail-if-worse", "60"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_failed_candidate_point_is_skipped_and_fails_the_gate(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1), scenarios=("serve",))
    cand = make_run(tmp_path / "b", run_id(2), scenarios=("serve",), failed=("serve-qps8",))
    result = invoke(base, cand, "--fail-if-worse", "5")
    assert result.exit_code == 1
    assert (
        "skipped: candidate serve @ 8 QPS, 128/32 tokens (cpu-000002/serve-qps8): failed: "
        "20 of 20 requests failed"
    ) in result.stdout.splitlines()
    assert "only in baseline: serve @ 8 QPS, 128/32 tokens" in result.stdout
    assert (
        "worse: serve @ 8 QPS, 128/32 tokens: the candidate's point "
        f"{run_id(2)}/serve-qps8 failed, the baseline's passed: 20 of 20 requests failed"
    ) in result.stderr.splitlines()
    # without the gate the comparison of the other points stands
    assert invoke(base, cand).exit_code == 0


def test_no_point_in_common_says_why(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1), scenarios=("serve",))
    cand = make_run(tmp_path / "b", run_id(2), scenarios=("serve",), qps=(1, 16))
    result = invoke(base, cand)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: no point in common: baseline has serve @ 2,4,8 QPS with 128/32 tokens; "
        "candidate has serve @ 1,16 QPS with 128/32 tokens; they differ in qps (2,4,8 vs 1,16): "
        "compare runs of the same load (scenario, QPS, concurrency, input/output lengths, "
        "batch size, dataset)\n"
    )


def test_no_point_in_common_other_lengths(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1), scenarios=("latency",))
    cand = make_run(tmp_path / "b", run_id(2), scenarios=("latency",), input_len=256)
    with pytest.raises(ResultsError, match=r"they differ in input_len \(128 vs 256\):"):
        compare(side("baseline", base), side("candidate", cand))


def test_side_without_ok_point(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1), scenarios=("serve",), qps=(2,))
    cand = make_run(
        tmp_path / "b", run_id(2), scenarios=("serve",), qps=(2,), failed=("serve-qps2",)
    )
    result = invoke(base, cand)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: candidate ")
    assert "has no ok point (1 point(s), e.g. " in result.stderr
    assert "failed: 20 of 20 requests failed): nothing to compare; re-run it" in result.stderr


def fp8_root(root: Path) -> None:
    make_run(root, run_id(1), scenarios=("serve",))
    make_run(root, run_id(2), scenarios=("serve",), quantization="fp8", latency=0.5)
    make_run(root, run_id(3), scenarios=("serve",), quantization="fp8", latency=0.6)


def test_filters_over_a_root(tmp_path: Path) -> None:
    fp8_root(tmp_path)
    result = invoke(
        "--root", tmp_path, "precision=bfloat16", "precision=fp8", "--where", "model=tiny-llama"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"baseline: tiny-llama bfloat16 @ cpu (precision=bfloat16 under {tmp_path}, "
        "where model=tiny-llama: 1 run(s))"
    )
    assert lines[1].startswith("candidate: tiny-llama fp8 @ cpu (precision=fp8 under")
    assert (
        "serve @ 2 QPS, 128/32 tokens: 1 vs 2 runs: no significance test (baseline has 1 run) "
        "(baseline cpu-000001; candidate cpu-000002, cpu-000003)"
    ) in lines
    row = next(line for line in lines if line.startswith("TPOT median (ms)"))
    assert "45% lower (better)" in row  # mean of 0.5 and 0.6


def test_filter_matching_nothing_names_what_is_there(tmp_path: Path) -> None:
    fp8_root(tmp_path)
    result = invoke("--root", tmp_path, "precision=fp16", "precision=fp8")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: baseline filter precision=fp16 matched no record under {tmp_path}; "
        "precision values present: bfloat16, fp8\n"
    )
    result = invoke("--root", tmp_path, "precision=fp8", "precision=bfloat16", "--where", "qps=3")
    assert result.stderr.startswith("error: --where qps=3 leaves the baseline ")
    assert "qps values present: 2, 4, 8" in result.stderr


def test_side_mixing_configurations_is_refused(tmp_path: Path) -> None:
    fp8_root(tmp_path / "all")
    base = make_run(tmp_path / "one", run_id(9), scenarios=("serve",))
    result = invoke(tmp_path / "all", base)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: baseline {tmp_path / 'all'} mixes 2 configurations that differ in "
        "quantization (-, fp8): narrow it to one"
    )


def test_bad_sides_and_metrics(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1), scenarios=("latency",))
    result = invoke(base, tmp_path / "nowhere")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: candidate '{tmp_path / 'nowhere'}' is neither an existing path nor a filter: "
        "give a run directory, a folder of them, or key=value (e.g. precision=fp8)\n"
    )
    result = invoke(base, base, "--metrics", "tpot_fastest")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown metric 'tpot_fastest': use one of ")
    # a latency run reports no TPOT: a gate on it would check nothing, so it is an error
    result = invoke(base, base, "--metrics", "tpot_median_ms", "--fail-if-worse", "5")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: metric(s) tpot_median_ms reported by both sides at no shared point"
    )
    result = invoke("--root", tmp_path / "none", "precision=fp8", base)
    assert result.stderr.startswith("error: baseline precision=fp8 is a filter over --root ")
    assert invoke(base, base, "--fail-if-worse", "-1").exit_code == 2


def test_metric_selection(tmp_path: Path) -> None:
    assert parse_metrics(None) == HEADLINE_METRICS
    assert parse_metrics("all") is None
    assert parse_metrics("tpot,output_throughput") == (
        "tpot_mean_ms",
        "tpot_median_ms",
        "tpot_p99_ms",
        "output_throughput",
    )
    base = make_run(tmp_path / "a", run_id(1), scenarios=("serve",), qps=(2,))
    cand = make_run(tmp_path / "b", run_id(2), scenarios=("serve",), qps=(2,), latency=0.9)
    every = compare(side("baseline", base), side("candidate", cand), metrics=None)
    names = [m.name for m in every.points[0].metrics]
    assert names[: len(HEADLINE_METRICS)] == list(HEADLINE_METRICS)
    assert {"ttft_p90_ms", "tpot_std_ms", "duration_s", "total_input_tokens"} <= set(names)


def test_json_and_markdown(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", run_id(1), scenarios=("serve",), qps=(2,))
    cand = make_run(tmp_path / "b", run_id(2), scenarios=("serve",), qps=(2,), latency=2.0)
    result = invoke(base, cand, "--format", "json", "--fail-if-worse", "50")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    point = data["points"][0]
    assert point["key"]["qps"] == 2.0
    tpot = next(m for m in point["metrics"] if m["metric"] == "tpot_median_ms")
    assert tpot["ratio"] == pytest.approx(2.0)
    assert (tpot["change"], tpot["verdict"], tpot["better"]) == ("2x higher", "worse", "lower")
    assert (tpot["baseline"]["n"], tpot["baseline"]["ci_low"], tpot["p_value"]) == (1, None, None)
    assert data["gate"]["passed"] is False
    assert len(data["gate"]["offenders"]) == 12
    assert data["summary"]["worse"] == 12

    result = invoke(base, cand, "--format", "markdown")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "### serve @ 2 QPS, 128/32 tokens: 1 run each: no significance test" in lines
    assert any(
        line.startswith("| TPOT median (ms)") and "2x higher (worse)" in line for line in lines
    )


def test_load_sides_reads_the_root_once_and_keeps_paths_first(tmp_path: Path) -> None:
    fp8_root(tmp_path)
    # a directory whose name looks like a filter is still a path
    odd = tmp_path / "x=1"
    make_run(odd, run_id(7), scenarios=("serve",))
    baseline, candidate = load_sides(str(odd), "precision=fp8", root=tmp_path)
    assert baseline.run_ids == (run_id(7),)
    assert candidate.run_ids == (run_id(2), run_id(3))
    assert not math.isnan(compare(baseline, candidate).points[0].metrics[0].ratio or 0.0)


@pytest.mark.parametrize(
    ("name", "base", "cand", "reading"),
    [
        ("tpot_median_ms", 10.0, 10.0, "unchanged"),
        ("tpot_median_ms", 10.0, 10.005, "<0.1% higher (same)"),
        ("tpot_median_ms", 10.0, 10.5, "5% higher (worse)"),
        ("tpot_median_ms", 10.0, 8.5, "15% lower (better)"),
        ("output_throughput", 100.0, 40.0, "2.5x lower (worse)"),
        ("output_throughput", 0.0, 40.0, "higher (from 0) (better)"),
        ("ttft_p99_ms", 5.0, 0.0, "lower (to 0) (better)"),
    ],
)
def test_readings(name: str, base: float, cand: float, reading: str) -> None:
    metric = MetricComparison(name, Summary((base,)), Summary((cand,)), None)
    assert metric.reading == reading
    if reading.endswith("(worse)"):
        assert metric.worse_pct > 0
    elif reading.endswith("(better)"):
        assert metric.worse_pct < 0


def test_unreadable_run_warns_or_fails_with_strict(tmp_path: Path) -> None:
    fp8_root(tmp_path)
    broken = tmp_path / run_id(8)
    broken.mkdir()
    (broken / "run.json").write_text('{"run_id": "cut off')
    (broken / "status.json").write_text("{}")
    result = invoke("--root", tmp_path, "precision=bfloat16", "precision=fp8")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"warning: skipped {broken}: {broken / 'run.json'} is not ")
    result = invoke("--root", tmp_path, "precision=bfloat16", "precision=fp8", "--strict")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {broken}")
    assert f"{broken / 'run.json'} is not valid JSON" in result.stderr
    assert len(result.stderr.splitlines()) == 1
