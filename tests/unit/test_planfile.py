"""Plan files (runner/planfile.py, bench-run --plan): expansion, excludes, overrides, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result

from runner.cli import main
from runner.errors import PlanError
from runner.planfile import expand, parse_plan, read_plan
from tests.unit.test_cli_input import PLAN_ERROR, cli_runner

ISSUE_PLAN = """vendor: amd
model: meta-llama/Llama-3.1-8B-Instruct
qps: [1, 3, 5, 7, 9]
seconds_per_point: 120
matrix:
  quantization: [none, fp8]
  kv_cache_dtype: [auto, fp8]
  tp: [1, 2]
exclude:
  - {quantization: none, kv_cache_dtype: fp8}
"""


def parse(text: str) -> list[dict[str, object]]:
    return [dict(c.varying) for c in expand(parse_plan(Path("p.yaml"), text), {})]


def refused(text: str) -> str:
    with pytest.raises(PlanError) as caught:
        expand(parse_plan(Path("p.yaml"), text), {})
    assert caught.value.exit_code == PLAN_ERROR
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_issue_example_expands_to_six_configurations() -> None:
    plan = parse_plan(Path("p.yaml"), ISSUE_PLAN)
    configurations = expand(plan, {})
    assert len(configurations) == 6  # 2 x 2 x 2, less the two of quantization none + fp8 KV
    assert all(c.options["qps"] == "1,3,5,7,9" for c in configurations)
    assert configurations[0].varying == {"quantization": None, "kv_cache_dtype": "auto", "tp": 1}
    assert configurations[0].label() == "quantization=none kv_cache_dtype=auto tp=1"
    assert {"quantization": None, "kv_cache_dtype": "fp8", "tp": 2} not in [
        c.varying for c in configurations
    ]
    assert plan.base["seconds_per_point"] == 120.0  # an int where a float is wanted


def test_flags_given_override_the_file_and_collapse_a_matrix_key() -> None:
    plan = parse_plan(Path("p.yaml"), ISSUE_PLAN)
    configurations = expand(plan, {"tp": 4, "qps": "2"}, under={"executor": "local"})
    assert len(configurations) == 3
    assert {c.options["tp"] for c in configurations} == {4}
    assert all(c.options["qps"] == "2" and c.options["executor"] == "local" for c in configurations)
    # the file wins over an environment variable's option
    file = parse_plan(Path("p.yaml"), "model: a/b\nexecutor: docker\n")
    over = expand(file, {}, {"executor": "x"})
    assert over[0].options["executor"] == "docker"


def test_no_matrix_is_one_configuration_and_lists_become_tuples() -> None:
    text = "model: a/b\nscenario: [serve, latency]\nengine_arg: enforce-eager\n"
    (only,) = expand(parse_plan(Path("p.yaml"), text), {})
    assert only.options["scenario"] == ("serve", "latency")
    assert only.options["engine_arg"] == ("enforce-eager",)
    assert only.label() == "(the only one)"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("model: a/b\n\ntpp: 2\n", ["p.yaml:3", "unknown key 'tpp'"]),
        ("model: a/b\nmatrix:\n  tpz: [1]\n", ["p.yaml:3", "unknown key 'tpz'"]),
        ("model: a/b\ntp: two\n", ["p.yaml:2", "tp", "not a int"]),
        ("model: a/b\nchunked_prefill: 1\n", ["chunked_prefill", "not a bool"]),
        ("model: a/b\nmatrix:\n  tp: [1, x]\n", ["p.yaml:3", "not a int"]),
        ("model: a/b\nmatrix: {}\n", ["matrix is empty"]),
        ("model: a/b\nmatrix:\n", ["matrix is empty"]),
        ("model: a/b\nmatrix:\n  tp: []\n", ["p.yaml:3", "non-empty list"]),
        ("model: a/b\nmatrix:\n  tp: 1\n", ["non-empty list"]),
        ("model: a/b\nmatrix:\n  out_dir: [a, b]\n", ["same for every configuration"]),
        ("model: a/b\nmatrix:\n  tp: [1]\nexclude:\n  - {tp: 1}\n", ["removes every"]),
        ("model: a/b\nmatrix:\n  tp: [1]\nexclude:\n  - {dtype: x}\n", ["p.yaml:5", "matrix"]),
        ("model: a/b\nmatrix:\n  tp: [1]\nexclude: {tp: 1}\n", ["exclude must be a list"]),
        ("- a\n- b\n", ["a mapping"]),
        ("model: [a\n", ["not YAML"]),
        ("", ["a mapping"]),
        ("model: a/b\ntp: none\n", ["not a int"]),
        ("model: a/b\ntp:\n", ["tp cannot be none"]),
    ],
)
def test_bad_input_is_one_line_naming_the_place(text: str, words: list[str]) -> None:
    message = refused(text)
    for word in words:
        assert word in message


def test_a_missing_or_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read the plan file"):
        read_plan(tmp_path / "nope.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PlanError, match="cannot read the plan file"):
        read_plan(tmp_path / "bin.yaml")


def bench_run(*args: str) -> Result:
    return cli_runner().invoke(main, list(args), catch_exceptions=False)


def test_dry_run_lists_configurations_points_and_servers(tmp_path: Path, model_dir: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"vendor: cpu\nexecutor: local\nmodel: {model_dir}\nqps: [1, 3]\ninput_len: 32\n"
        "output_len: 8\nmatrix:\n  dtype: [bfloat16, float32]\n  max_num_seqs: [4, 8]\n"
        "exclude:\n  - {dtype: float32, max_num_seqs: 8}\n"
    )
    result = bench_run("--plan", str(plan), "--dry-run", "--out", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "   1. dtype=bfloat16 max_num_seqs=4: 2 points (serve-qps1, serve-qps3)"
    assert lines[-1] == "3 configurations, 6 points, 3 server starts, executor local"
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    # a flag given wins over the file: one value of max_num_seqs left
    result = bench_run("--plan", str(plan), "--dry-run", "--max-num-seqs", "2", "--qps", "5")
    assert result.stdout.splitlines()[-1].startswith("2 configurations, 2 points")
    # latency and throughput load their own engine: no server starts
    result = bench_run("--plan", str(plan), "--dry-run", "--scenario", "latency")
    assert (
        result.stdout.splitlines()[-1]
        == "3 configurations, 3 points, 0 server starts, executor local"
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("model: {model}\ntp_size: 2\n", "unknown key 'tp_size'"),
        ("model: {model}\nmatrix:\n  tp: [1]\nexclude:\n  - {{tp: 1}}\n", "removes every"),
        ("model: {model}\ninput_len: 4000\nmatrix:\n  tp: [1, 2]\n", "exceeds"),
        ("qps: [1]\n", "gives no model"),
    ],
)
def test_bad_plans_exit_2_with_one_line_and_start_nothing(
    tmp_path: Path, model_dir: Path, body: str, words: str
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("vendor: cpu\nexecutor: local\n" + body.format(model=model_dir))
    result = bench_run("--plan", str(plan), "--out", str(tmp_path / "runs"))
    assert result.exit_code == PLAN_ERROR
    assert words in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_plan_and_resume_and_model_are_one_way_of_saying_what_to_run(tmp_path: Path) -> None:
    result = bench_run("--vendor", "cpu")
    assert result.exit_code == PLAN_ERROR and "give --model" in result.stderr
    result = bench_run("--plan", "a.yaml", "--resume", str(tmp_path))
    assert result.exit_code == PLAN_ERROR and "give one of them" in result.stderr
    result = bench_run("--plan", str(tmp_path / "missing.yaml"))
    assert result.exit_code == PLAN_ERROR and "cannot read the plan file" in result.stderr
