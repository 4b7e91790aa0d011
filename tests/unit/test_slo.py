"""--slo: parsing and validation, vLLM's --goodput, judging a point against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.agent.slo import (
    SloError,
    goodput_args,
    judge_slo,
    parse_slo,
    percentiles_needed,
    vllm_key,
)
from runner.errors import PlanError
from runner.plan import ModelRef
from runner.scenarios.serve import SERVE, ServeParams, parse_tolerance, serve_point_argv
from tests.unit.job_runs import HOST, PORT, VLLM, local_model, make_run
from tests.unit.test_scenario_serve import FLAGS


def test_parse_keeps_the_order_and_reads_every_family_and_stat() -> None:
    slo = parse_slo("ttft_p99_ms=500, TPOT_median_ms=50,itl_mean_ms=20.5,e2el_p99.9_ms=9000")
    assert slo == (
        ("ttft_p99_ms", 500.0),
        ("tpot_median_ms", 50.0),
        ("itl_mean_ms", 20.5),
        ("e2el_p99.9_ms", 9000.0),
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ttft_p99=500", "is not METRIC=MS"),
        ("goodput_p99_ms=1", "is not METRIC=MS"),
        ("ttft_std_ms=1", "is not METRIC=MS"),  # std is spread, not a latency to meet
        ("ttft_p99_ms", "is not METRIC=MS"),
        ("ttft_p100_ms=1", "between 0 and 100"),
        ("ttft_p99_ms=fast", "must be milliseconds"),
        ("ttft_p99_ms=0", "positive"),
        ("ttft_p99_ms=inf", "positive"),
        ("ttft_p99_ms=1,ttft_p99_ms=2", "given twice"),
        (" , ", "at least one"),
    ],
)
def test_parse_refuses(text: str, fragment: str) -> None:
    with pytest.raises(SloError, match=fragment):
        parse_slo(text)


def test_vllm_spells_the_keys_stat_first() -> None:
    assert vllm_key("ttft_p99_ms") == "p99_ttft_ms"
    assert vllm_key("e2el_p99.9_ms") == "p99.9_e2el_ms"
    assert vllm_key("tpot_p50.0_ms") == "p50_tpot_ms"
    assert vllm_key("itl_mean_ms") == "mean_itl_ms"
    assert vllm_key("tpot_median_ms") == "median_tpot_ms"


def test_goodput_takes_the_tightest_limit_per_family_and_leaves_itl_out() -> None:
    slo = parse_slo("e2el_p99_ms=9000,ttft_p99_ms=500,ttft_median_ms=200,itl_p99_ms=30")
    assert goodput_args(slo) == ["--goodput", "ttft:200", "e2el:9000"]
    assert goodput_args(parse_slo("itl_p99_ms=30")) == []
    assert goodput_args(()) == []


def test_the_slo_percentiles_are_asked_of_vllm() -> None:
    assert percentiles_needed(parse_slo("ttft_p99.9_ms=1,tpot_mean_ms=1,itl_p99.9_ms=1")) == (99.9,)
    params = SERVE.params_from({**FLAGS, "slo": "ttft_p99.9_ms=500,tpot_p75_ms=40"})
    assert isinstance(params, ServeParams)
    assert params.percentiles == (50.0, 75.0, 90.0, 99.0, 99.9)
    assert SERVE.params_from({**FLAGS, "slo": "ttft_p99_ms=5"}).percentiles == (50.0, 90.0, 99.0)


def test_params_from_refuses_a_bad_slo_as_a_plan_error() -> None:
    with pytest.raises(PlanError, match="ttft_p99"):
        SERVE.params_from({**FLAGS, "slo": "ttft_p99=5"})


def test_argv_passes_goodput(tmp_path: Path) -> None:
    model: ModelRef = local_model(tmp_path)
    run = make_run(
        model, serve=ServeParams(qps=(1.0,), num_prompts=4, slo=parse_slo("tpot_p99_ms=50"))
    )
    argv = serve_point_argv(run, run.points()[0], VLLM, HOST, PORT)
    at = argv.index("--goodput")
    assert argv[at : at + 2] == ["--goodput", "tpot:50"]
    assert run.to_dict()["serve"]["slo"] == [["tpot_p99_ms", 50.0]]
    plain = make_run(model, serve=ServeParams(qps=(1.0,), num_prompts=4))
    assert "--goodput" not in serve_point_argv(plain, plain.points()[0], VLLM, HOST, PORT)


def test_judge_met_missed_and_missing() -> None:
    slo = [["ttft_p99_ms", 500.0], ["tpot_p99_ms", 50.0]]
    met = judge_slo({"p99_ttft_ms": 420.0, "p99_tpot_ms": 50}, slo)
    assert met == {
        "met": True,
        "checks": [
            {"metric": "ttft_p99_ms", "limit": 500.0, "value": 420.0, "met": True},
            {"metric": "tpot_p99_ms", "limit": 50.0, "value": 50.0, "met": True},
        ],
    }
    missed = judge_slo({"p99_ttft_ms": 501.0, "p99_tpot_ms": 10.0}, slo)
    assert missed["met"] is False
    assert [c["met"] for c in missed["checks"]] == [False, True]
    missing = judge_slo({"p99_ttft_ms": 1.0}, slo)
    assert missing["met"] is False
    assert missing["checks"][1] == {
        "metric": "tpot_p99_ms",
        "limit": 50.0,
        "value": None,
        "met": False,
        "reason": "not in vLLM's result",
    }
    assert judge_slo(None, slo)["met"] is False  # no result at all
    assert judge_slo({"p99_ttft_ms": float("nan"), "p99_tpot_ms": 1}, slo)["met"] is False


def test_tolerance_is_a_percentage_or_req_per_s() -> None:
    assert parse_tolerance("5%") == (0.05, True)
    assert parse_tolerance("0.25") == (0.25, False)
    for bad in ("0", "-1%", "100%", "fast", "nan"):
        with pytest.raises(PlanError, match="--qps-tolerance"):
            parse_tolerance(bad)


def test_find_max_qps_needs_an_slo_and_a_range() -> None:
    with pytest.raises(PlanError, match="give --slo"):
        SERVE.params_from({**FLAGS, "find_max_qps": True})
    with pytest.raises(PlanError, match="two finite rates"):
        SERVE.params_from(
            {
                **FLAGS,
                "find_max_qps": True,
                "slo": "ttft_p99_ms=5",
                "qps": "4,inf",
                "num_prompts": 8,
            }
        )


def test_find_max_qps_plans_the_first_probe_at_the_lowest_rate(tmp_path: Path) -> None:
    model = local_model(tmp_path)
    params = SERVE.params_from(
        {**FLAGS, "find_max_qps": True, "slo": "ttft_p99_ms=5", "qps": "8,2", "num_prompts": 8}
    )
    run = make_run(model, serve=params, scenarios=("serve",))
    [point] = run.points()
    assert (point.id, point.qps, point.num_prompts) == ("search-1-qps2", 2.0, 8)
    serve = run.to_dict()["serve"]
    assert (serve["find_max_qps"], serve["qps_tolerance"], serve["qps_tolerance_relative"]) == (
        True,
        0.05,
        True,
    )
