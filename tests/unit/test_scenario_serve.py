"""The serving sweep (runner/scenarios/serve.py): its flags, parameters, points, argv and judge."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from runner.agent.judge import Verdict, judge_result
from runner.errors import PlanError
from runner.jobs import PathMap
from runner.plan import ModelRef, Point
from runner.rundir import FAILED, OK
from runner.scenarios.serve import (
    SERVE,
    ServeParams,
    parse_percentiles,
    parse_qps_list,
    serve_point_argv,
)
from tests.unit.job_runs import HOST, PORT, VLLM, local_model, make_run

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "vllm-0.32.0-cpu"
REPO = ModelRef(source="meta-llama/Llama-3.1-8B")
FLAGS: dict[str, object] = {
    "qps": "1,3,5,7,9",
    "seconds_per_point": 120.0,
    "num_prompts": None,
    "max_concurrency": None,
    "dataset": "random",
    "dataset_path": None,
    "endpoint": "completions",
    "prefix_len": None,
    "skip_chat_template": False,
    "input_len": 1024,
    "output_len": None,
    "percentiles": "50,90,99",
}


@pytest.fixture
def model(tmp_path: Path) -> ModelRef:
    return local_model(tmp_path)


def judge_serve(path: Path, expected: int) -> Verdict:
    return judge_result("serve", path, expected)


# -- params_from: bench-run's flags ---------------------------------------------------------------


def test_params_from_default_flags_are_the_defaults() -> None:
    assert SERVE.params_from(FLAGS) == ServeParams()


def test_params_from_num_prompts_replaces_seconds_per_point() -> None:
    params = SERVE.params_from({**FLAGS, "qps": "2,inf", "num_prompts": 8, "percentiles": "99"})
    assert params == ServeParams(
        qps=(2.0, math.inf), seconds_per_point=None, num_prompts=8, percentiles=(99.0,)
    )


def test_params_from_resolves_the_dataset_file(tmp_path: Path) -> None:
    data = tmp_path / "sharegpt.json"
    data.write_text("[]")
    flags = {**FLAGS, "dataset": "sharegpt", "dataset_path": str(data)}
    assert SERVE.params_from(flags).dataset_path == str(data.resolve())
    with pytest.raises(PlanError, match=r"--dataset-path .*: no such file"):
        SERVE.params_from({**flags, "dataset_path": str(tmp_path / "nope.json")})


# -- parse_qps_list ------------------------------------------------------------------------------


def test_qps_list_parses_rates_in_order() -> None:
    assert parse_qps_list("1,3,5") == (1.0, 3.0, 5.0)
    assert parse_qps_list(" 0.5 , 2 ") == (0.5, 2.0)


def test_qps_inf_in_any_case() -> None:
    assert parse_qps_list("inf") == (math.inf,)
    assert parse_qps_list("1,INF") == (1.0, math.inf)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("0", "'0'"),
        ("-1", "'-1'"),
        ("abc", "'abc'"),
        ("1,abc,3", "'abc'"),
        ("", "''"),
        ("1,1", "'1,1'"),
        ("1,1.0", "'1,1.0'"),
        ("nan", "'nan'"),
        ("inf,inf", "'inf,inf'"),
    ],
)
def test_qps_rejects_bad_items_naming_them(text: str, named: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_qps_list(text)
    message = str(info.value)
    assert message.startswith("--qps: ")
    assert named in message


def test_qps_duplicate_message_says_twice() -> None:
    with pytest.raises(PlanError, match="names a rate twice"):
        parse_qps_list("2,3,2")


def test_qps_rates_that_collapse_to_one_point_id_are_rejected_or_kept_apart() -> None:
    try:
        rates = parse_qps_list("1,1.0000001")
    except PlanError:
        return  # rejecting them is a fine answer
    run = make_run(REPO, serve=ServeParams(qps=rates, num_prompts=5))
    ids = [p.id for p in run.points()]
    assert len(set(ids)) == len(ids), ids


# -- parse_percentiles ---------------------------------------------------------------------------


def test_percentiles_parse() -> None:
    assert parse_percentiles("50,90,99") == (50.0, 90.0, 99.0)
    assert parse_percentiles("99.9") == (99.9,)
    assert parse_percentiles("50,,90") == (50.0, 90.0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0", "0"),
        ("100", "100"),
        ("-5", "-5"),
        ("abc", "'abc'"),
        ("", "at least one"),
        ("50,nan", "nan"),
    ],
)
def test_percentiles_reject(text: str, fragment: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_percentiles(text)
    assert str(info.value).startswith("--percentiles: ")
    assert fragment in str(info.value)


# -- ServeParams ---------------------------------------------------------------------------------


def test_serve_inf_needs_num_prompts() -> None:
    with pytest.raises(PlanError, match="--qps inf"):
        ServeParams(qps=(1.0, math.inf))
    assert ServeParams(qps=(math.inf,), num_prompts=10).prompts_for(math.inf) == 10


def test_serve_prompts_for() -> None:
    serve = ServeParams(qps=(1.0, 2.5), seconds_per_point=10.0)
    assert serve.prompts_for(1.0) == 10
    assert serve.prompts_for(2.5) == 25
    assert serve.prompts_for(0.33) == 3  # round(3.3)
    assert serve.prompts_for(0.36) == 4  # round(3.6)
    assert ServeParams(seconds_per_point=1.0).prompts_for(0.1) == 1  # never 0
    assert ServeParams(seconds_per_point=10.0, num_prompts=7).prompts_for(9.0) == 7


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"dataset": "bogus"}, "--dataset 'bogus'"),
        ({"dataset": "sharegpt"}, "needs --dataset-path"),
        ({"dataset": "sonnet"}, "needs --dataset-path"),
        ({"num_prompts": 0}, "--num-prompts 0"),
        ({"seconds_per_point": 0.0}, "--seconds-per-point 0.0"),
        ({"seconds_per_point": None}, "give --seconds-per-point or --num-prompts"),
        ({"max_concurrency": 0}, "--max-concurrency 0"),
        ({"endpoint": "responses"}, "--endpoint 'responses': choose one of completions, chat"),
        ({"prefix_len": 10}, "--prefix-len is for --dataset sonnet"),
        ({"prefix_len": -1}, "--prefix-len -1"),
        ({"skip_chat_template": True}, "--skip-chat-template is for --dataset sonnet"),
        (
            {
                "dataset": "sonnet",
                "dataset_path": "/s",
                "endpoint": "chat",
                "skip_chat_template": True,
            },
            "the chat endpoint applies the model's chat template",
        ),
        ({"dataset": "sharegpt", "dataset_path": "/d", "sharegpt_output_len": 0}, "--output-len 0"),
        ({"sharegpt_output_len": 8}, "for --dataset sharegpt"),
    ],
)
def test_serve_bad_values(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(PlanError) as info:
        ServeParams(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


@pytest.mark.parametrize("seconds", [math.inf, math.nan])
def test_serve_non_finite_seconds_rejected(seconds: float) -> None:
    with pytest.raises(PlanError, match="--seconds-per-point"):
        ServeParams(qps=(1.0,), seconds_per_point=seconds)


# -- argv ----------------------------------------------------------------------------------------


def serve_common_head(path: str | None) -> list[str]:
    assert path is not None
    return [
        VLLM, "bench", "serve",
        "--backend", "openai",
        "--base-url", "http://127.0.0.1:8123",
        "--endpoint", "/v1/completions",
        "--model", path,
        "--tokenizer", path,
    ]  # fmt: skip


def serve_common_tail(point_id: str) -> list[str]:
    return [
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,90,99",
        "--seed", "0",
        "--disable-tqdm",
        "--save-result", "--save-detailed",
        "--result-dir", "raw",
        "--result-filename", f"{point_id}.json",
        "--metadata", "run_id=r1", f"point={point_id}",
    ]  # fmt: skip


def test_serve_point_argv_random(model: ModelRef) -> None:
    run = make_run(model)
    point = run.points()[0]
    assert point == Point("serve-qps1", "serve", 1.0, 20)
    assert serve_point_argv(run, point, VLLM, HOST, PORT) == [
        *serve_common_head(model.local_path),
        "--dataset-name", "random",
        "--random-input-len", "64",
        "--random-output-len", "32",
        "--ignore-eos",
        "--num-prompts", "20",
        "--request-rate", "1",
        *serve_common_tail("serve-qps1"),
    ]  # fmt: skip


def test_serve_point_argv_inf_with_concurrency_and_percentiles(model: ModelRef) -> None:
    run = make_run(
        model,
        serve=ServeParams(
            qps=(2.5, math.inf), num_prompts=8, max_concurrency=4, percentiles=(50.0, 99.9)
        ),
    )
    points = run.points()
    argv = serve_point_argv(run, points[1], VLLM, HOST, PORT)
    tail = serve_common_tail("serve-qpsinf")
    tail[3] = "50,99.9"
    assert argv == [
        *serve_common_head(model.local_path),
        "--dataset-name", "random",
        "--random-input-len", "64",
        "--random-output-len", "32",
        "--ignore-eos",
        "--num-prompts", "8",
        "--request-rate", "inf",
        "--max-concurrency", "4",
        *tail,
    ]  # fmt: skip
    first = serve_point_argv(run, points[0], VLLM, HOST, PORT)
    assert first[first.index("--request-rate") + 1] == "2.5"
    assert first[first.index("--result-filename") + 1] == "serve-qps2.5.json"


def test_serve_point_argv_sharegpt(model: ModelRef) -> None:
    run = make_run(
        model,
        serve=ServeParams(
            qps=(3.0,), num_prompts=12, dataset="sharegpt", dataset_path="/data/sharegpt.json"
        ),
    )
    point = run.points()[0]
    assert serve_point_argv(run, point, VLLM, HOST, PORT) == [
        *serve_common_head(model.local_path),
        "--dataset-name", "sharegpt",
        "--dataset-path", "/data/sharegpt.json",
        "--num-prompts", "12",
        "--request-rate", "3",
        *serve_common_tail("serve-qps3"),
    ]  # fmt: skip


def test_serve_point_argv_sharegpt_with_output_len_on_chat(model: ModelRef) -> None:
    run = make_run(
        model,
        serve=ServeParams(
            qps=(3.0,), num_prompts=12, dataset="sharegpt", dataset_path="/data/sharegpt.json",
            sharegpt_output_len=50, endpoint="chat",
        ),
    )  # fmt: skip
    head = serve_common_head(model.local_path)
    head[4], head[8] = "openai-chat", "/v1/chat/completions"
    assert serve_point_argv(run, run.points()[0], VLLM, HOST, PORT) == [
        *head,
        "--dataset-name", "sharegpt",
        "--dataset-path", "/data/sharegpt.json",
        "--sharegpt-output-len", "50",
        "--num-prompts", "12",
        "--request-rate", "3",
        *serve_common_tail("serve-qps3"),
    ]  # fmt: skip


def test_serve_point_argv_random_on_chat(model: ModelRef) -> None:
    run = make_run(model, serve=ServeParams(qps=(1.0,), num_prompts=4, endpoint="chat"))
    argv = serve_point_argv(run, run.points()[0], VLLM, HOST, PORT)
    assert argv[3:5] == ["--backend", "openai-chat"]
    assert argv[7:9] == ["--endpoint", "/v1/chat/completions"]
    assert argv[argv.index("--dataset-name") + 1] == "random"


def test_serve_point_argv_sonnet(model: ModelRef) -> None:
    run = make_run(
        model,
        serve=ServeParams(qps=(1.0,), num_prompts=6, dataset="sonnet", dataset_path="/s.txt"),
    )
    point = run.points()[0]
    assert serve_point_argv(run, point, VLLM, HOST, PORT) == [
        *serve_common_head(model.local_path),
        "--dataset-name", "custom",
        "--dataset-path", "data/serve-qps1.sonnet.jsonl",
        "--custom-output-len", "32",
        "--num-prompts", "6",
        "--request-rate", "1",
        *serve_common_tail("serve-qps1"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("given", "skips"),
    [
        ({}, False),  # the client applies the chat template, as the old recipe did
        ({"skip_chat_template": True}, True),  # a base model: the text as it is
        ({"endpoint": "chat"}, True),  # the server applies it: never twice
    ],
)
def test_serve_point_argv_sonnet_chat_template(
    model: ModelRef, given: dict[str, object], skips: bool
) -> None:
    serve = ServeParams(
        qps=(1.0,), num_prompts=6, dataset="sonnet", dataset_path="/s.txt", prefix_len=16,
        **given,  # type: ignore[arg-type]
    )  # fmt: skip
    run = make_run(model, serve=serve)
    argv = serve_point_argv(run, run.points()[0], VLLM, HOST, PORT)
    assert ("--skip-chat-template" in argv) is skips
    backend = "openai-chat" if given.get("endpoint") == "chat" else "openai"
    assert argv[argv.index("--backend") + 1] == backend
    job = SERVE.sonnet(run, run.points()[0], PathMap.host(run))
    assert job is not None and (job.input_len, job.prefix_len) == (64, 16)


# -- judge ---------------------------------------------------------------------------------------


def test_judge_serve_ok() -> None:
    verdict = judge_serve(FIXTURES / "serve-ok.json", 20)
    assert verdict.verdict == OK
    assert verdict.ok
    assert verdict.reasons == []
    assert verdict.to_dict() == {"verdict": "ok", "reasons": []}


def test_judge_serve_all_failed() -> None:
    verdict = judge_serve(FIXTURES / "serve-all-failed.json", 4)
    assert verdict.verdict == FAILED
    assert not verdict.ok
    assert verdict.reasons == [
        "no request completed (0 of 4)",
        "4 of 4 requests failed",
        "first error: Not Found",
    ]


def test_judge_serve_count_mismatch() -> None:
    verdict = judge_serve(FIXTURES / "serve-ok.json", 25)
    assert verdict.verdict == FAILED
    assert verdict.reasons == ["completed 20 of 25 prompts"]


def test_judge_serve_missing_file(tmp_path: Path) -> None:
    verdict = judge_serve(tmp_path / "serve-qps1.json", 5)
    assert verdict.verdict == FAILED
    assert verdict.reasons == ["serve-qps1.json was not written"]


def test_judge_serve_truncated_json(tmp_path: Path) -> None:
    path = tmp_path / "serve-qps1.json"
    path.write_text((FIXTURES / "serve-ok.json").read_text()[:200])
    verdict = judge_serve(path, 20)
    assert verdict.verdict == FAILED
    assert len(verdict.reasons) == 1
    assert verdict.reasons[0].startswith("serve-qps1.json is not valid JSON (")


def test_judge_serve_not_an_object_and_no_count(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("[1, 2]")
    assert judge_serve(path, 1).reasons == ["r.json does not hold a JSON object"]
    path.write_text(json.dumps({"failed": 0}))
    assert judge_serve(path, 1).reasons == ["the result has no 'completed' count"]


def test_judge_serve_partial_failure_reports_last_line_of_first_error(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    errors = ["", "Traceback (most recent call last):\n  ...\nTimeoutError: read timed out", "x"]
    path.write_text(json.dumps({"completed": 8, "failed": 2, "errors": errors}))
    assert judge_serve(path, 10).reasons == [
        "completed 8 of 10 prompts",
        "2 of 10 requests failed",
        "first error: TimeoutError: read timed out",
    ]
